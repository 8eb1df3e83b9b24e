"""Writing an evaluation: metrics.json, report.md (tables for every regime and method) and plots."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

from model.config import EXPORTED_MODEL
from model.metrics_file import Metrics

#: The published figures (test Dice / recall on USGS MRDS) shown beside ours.
PAPER = {
    "arXiv 2511.09722": {"dice": (0.31, 0.01), "recall": (0.22, 0.02)},
    "poster (H=152, K=64, A=0.8, 30K steps)": {"dice": (0.28, 0.02), "recall": (0.14, 0.01)},
}
NOT_COMPARABLE = (
    "The paper's figures are not directly comparable: they come from the full USGS MRDS over CONUS with "
    "random masks at A=0.8 and 30K GPU steps, while ours come from this cube's patchier state surveys "
    "(seven covered states), 1-mile cells, held-out spatial test blocks with buffers, our three masking "
    "regimes, and a short CPU schedule."
)
METHOD_NAMES = {EXPORTED_MODEL: "ResNet-UNet (ours)", "vit": "ViT + patch decoder", "neighbourhood":
                "Neighbourhood + co-occurrence", "kriging": "Ordinary kriging"}


def _fmt(stat: dict) -> str:
    """'mean ± std' with three decimals ('n/a' when NaN)."""
    mean, std = stat["mean"], stat["std"]
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    return f"{mean:.3f} ± {std:.3f}"


def _clean(value):  # noqa: ANN001, ANN202 (JSON tree)
    """NaN and infinities to None, numpy scalars to Python, recursively."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json_atomic(payload: dict, path: Path) -> None:
    """Write JSON (NaN as null) to a temporary name, then rename."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(_clean(payload), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def headline(metrics: Metrics) -> dict:
    """The UNet's test means (mean ± std over seeds) per regime: the numbers model.json carries."""
    out = {}
    for regime, methods in metrics["regimes"].items():
        if EXPORTED_MODEL in methods:
            s = methods[EXPORTED_MODEL]["summary"]["mean"]
            out[regime] = {m: s[m] for m in ("dice", "recall", "precision", "auprc")}
    return out


def _label(name: str, components: tuple[str, ...] | list[str] = ()) -> str:
    """A method's name in tables and plots (a gated UNet's experts are marked as its parts)."""
    if name in components:
        return f"ResNet-UNet expert `{name}` (part of ours)"
    return METHOD_NAMES.get(name, name)


def _winner_sentence(regime: str, methods: dict, components: tuple[str, ...] | list[str] = ()) -> str:
    """Which method wins mean Dice and mean AUPRC in one regime, plainly (a gated UNet's experts left out)."""
    methods = {m: e for m, e in methods.items() if m not in components}
    parts = []
    for metric in ("dice", "auprc"):
        ranked = sorted(methods, key=lambda m: -(methods[m]["summary"]["mean"][metric]["mean"] or -1))
        first = ranked[0]
        parts.append(f"{metric} is won by {METHOD_NAMES.get(first, first)}")
    return f"In the {regime}-hidden regime, mean " + "; mean ".join(parts) + "."


def verdict(regime: str, methods: dict, components: tuple[str, ...] | list[str] = ()) -> str:
    """UNet against the best baseline (ViT, neighbourhood, kriging) on mean Dice and mean AUPRC, in words.

    ``components`` (the experts of a gated UNet) are parts of the UNet, not rivals.
    """
    if EXPORTED_MODEL not in methods:
        return ""
    out = []
    for metric in ("dice", "auprc"):
        ours = methods[EXPORTED_MODEL]["summary"]["mean"][metric]
        rivals = {m: e["summary"]["mean"][metric]["mean"] for m, e in methods.items()
                  if m != EXPORTED_MODEL and m not in components}
        best = max(rivals, key=lambda m: rivals[m] if rivals[m] is not None else -1.0)
        delta = (ours["mean"] or 0.0) - (rivals[best] or 0.0)
        word = "beats" if delta > 0 else ("is within seed spread of" if -delta <= (ours["std"] or 0.0) else "trails")
        out.append(f"mean {metric}: UNet {ours['mean']:.3f} ± {ours['std']:.3f} {word} the best other method "
                   f"({METHOD_NAMES.get(best, best)}, {rivals[best]:.3f}; difference {delta:+.3f})")
    return f"**Verdict, {regime} hidden:** " + "; ".join(out) + "."


def markdown_report(metrics: Metrics, plots: list[str]) -> str:
    """The report.md text: summary tables per regime, per-species Dice, paper figures, plots."""
    lines = [f"# Evaluation of run `{metrics.get('run', '')}`", "",
             "Metrics on hidden, covered cells of held-out test blocks (spatial blocks with buffers); thresholds "
             "for Dice, precision and recall chosen per species on validation blocks. Means are over species "
             "with test positives; ± is the std over seeds (baselines are deterministic: std 0).", ""]
    fractions = None
    parts = metrics.get("components", [])
    for regime, methods in metrics["regimes"].items():
        cases = metrics["cases"][regime]
        lines += [f"## Regime: {regime} hidden", "",
                  f"{cases['test_cases']} test cases, {cases['test_cells']} scored cell-species pairs.", ""]
        any_entry = next(iter(methods.values()))["summary"]["mean"]
        fractions = list(any_entry["success_rate"])
        head = "| method | runs | Dice | recall | precision | AUPRC | " + " | ".join(
            f"top {float(f) * 100:g}%" for f in fractions) + " |"
        lines += [head, "|" + "---|" * (6 + len(fractions))]
        for name, entry in methods.items():
            s = entry["summary"]["mean"]
            lines.append(f"| {_label(name, parts)} | {entry['summary']['n_runs']} | " + " | ".join(
                _fmt(s[m]) for m in ("dice", "recall", "precision", "auprc")) + " | " + " | ".join(
                _fmt(s["success_rate"][f]) for f in fractions) + " |")
        lines += ["", _winner_sentence(regime, methods, parts), "", verdict(regime, methods, parts), "",
                  "Per-species Dice (AUPRC):", ""]
        names = list(methods)
        lines += ["| species | " + " | ".join(_label(n, parts) for n in names) + " |",
                  "|---|" + "---|" * len(names)]
        for sp in metrics["species"]:
            cells = []
            for n in names:
                ps = methods[n]["summary"]["per_species"][sp]
                cells.append(f"{_fmt(ps['dice'])} ({_fmt(ps['auprc'])})")
            lines.append(f"| {sp} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Beside the paper", "", "| source | Dice | recall |", "|---|---|---|"]
    for name, figs in PAPER.items():
        lines.append(f"| {name} | {figs['dice'][0]:.2f} ± {figs['dice'][1]:.2f} | "
                     f"{figs['recall'][0]:.2f} ± {figs['recall'][1]:.2f} |")
    for regime, h in headline(metrics).items():
        lines.append(f"| this run, UNet, {regime} hidden | {_fmt(h['dice'])} | {_fmt(h['recall'])} |")
    lines += ["", NOT_COMPARABLE, "", "## Tuned baselines", "", "```json",
              json.dumps(_clean(metrics.get("tuned", {})), indent=2, sort_keys=True), "```", "", "## Plots", ""]
    lines += [f"![{p}]({p})" for p in plots]
    return "\n".join(lines) + "\n"


def write_plots(metrics: Metrics, out_dir: Path) -> list[str]:
    """Success-rate curves and per-species Dice bars per regime; returns paths relative to the run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for regime, methods in metrics["regimes"].items():
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.2))
        for name, entry in methods.items():
            sr = entry["summary"]["mean"]["success_rate"]
            xs = [0.0] + [float(k) * 100 for k in sr]
            ys = [0.0] + [(sr[k]["mean"] or 0.0) * 100 for k in sr]
            ax1.plot(xs, ys, marker="o", label=METHOD_NAMES.get(name, name))
        ax1.plot([0, 20], [0, 20], "k:", label="random")
        ax1.set(xlabel="top % of hidden area", ylabel="% of hidden known sites captured",
                title=f"Success rate, {regime} hidden")
        ax1.legend(fontsize=8)
        species = metrics["species"]
        width = 0.8 / max(1, len(methods))
        for i, (name, entry) in enumerate(methods.items()):
            vals = [entry["summary"]["per_species"][s]["dice"]["mean"] or 0.0 for s in species]
            errs = [entry["summary"]["per_species"][s]["dice"]["std"] or 0.0 for s in species]
            ax2.bar(np.arange(len(species)) + i * width, vals, width, yerr=errs, label=METHOD_NAMES.get(name, name))
        ax2.set_xticks(np.arange(len(species)) + 0.4 - width / 2, species, rotation=45, ha="right")
        ax2.set(ylabel="Dice (test)", title=f"Per-species Dice, {regime} hidden")
        fig.tight_layout()
        path = out_dir / f"{regime}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        written.append(f"plots/{path.name}")
    return written


def write_evaluation(metrics: Metrics, run_dir: Path) -> None:
    """metrics.json, plots and report.md in the run folder (each written atomically)."""
    plots = write_plots(metrics, run_dir / "plots")
    write_json_atomic(dict(metrics), run_dir / "metrics.json")
    tmp = run_dir / "report.md.tmp"
    tmp.write_text(markdown_report(_clean(metrics), plots), encoding="utf-8")
    os.replace(tmp, run_dir / "report.md")


# ------------------------------------------------------------------------------------ the protocol's report

PROTOCOL_NAMES = METHOD_NAMES | {"boosted": "Gradient-boosted (covariates + neighbourhood)",
                                 "roughness": "Terrain roughness ranking (no learning)"}


def _name(method: str) -> str:
    """A method's name in the protocol's tables."""
    return PROTOCOL_NAMES.get(method, method)


def _places(value: float, digits: int) -> int:
    """Decimal places that keep two significant figures of a small value (at least ``digits``, at most 6)."""
    if value == 0 or abs(value) >= 10 ** -(digits - 1):
        return digits
    return min(6, max(digits, 1 - math.floor(math.log10(abs(value)))))


def _num(value: float | None, digits: int = 3) -> str:
    """A number ('n/a' for None and NaN), with more places when it is small (AUPRC at a base rate of 1e-4)."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{_places(float(value), digits)}f}"


def _interval(comp: dict | None) -> str:
    """'+0.012 [+0.003, +0.020] ahead' for a comparison, '—' for the reference itself."""
    if not comp:
        return "—"
    if not all(math.isfinite(comp[k]) for k in ("diff", "lo", "hi")):
        return "n/a"
    d = max(_places(comp[k], 3) for k in ("diff", "lo", "hi") if comp[k] != 0) if any(
        comp[k] != 0 for k in ("diff", "lo", "hi")) else 3
    return f"{comp['diff']:+.{d}f} [{comp['lo']:+.{d}f}, {comp['hi']:+.{d}f}] {comp['verdict']}"


def _seed_note(seeds: dict) -> str:
    """'ResNet-UNet over 3 seeds: 0.041 ± 0.002' lines for the networks."""
    parts = [f"{_name(m)}: {_num(v['mean'])} ± {_num(v['std'])} over {v['n']} training seed(s)"
             for m, v in seeds.items()]
    if not parts:
        return ""
    return "Mean AUPRC of each training seed alone (mean ± std over seeds): " + "; ".join(parts) + "."


MODEL_CARD = """## Model card

**Intended use.** Screening at 1-mile resolution: ranking ground for follow-up by exploration geologists, and
a benchmark for geospatial ML on sparse mineral records. It is not a resource estimate, and a cell's value is
not the probability that an economic deposit exists there.

**What the layers mean.** *Prospectivity*: the probability that a known site of the species would be recorded
in the cell if the cell were surveyed like the training states, predicted with the cell hidden; the service
serves it calibrated, per species, on the cross-validated predictions (section "Calibrated probability").
*Uncertainty*: the spread of that prediction over training seeds and mask draws. *Discrepancy*: prospectivity
where no record of the species exists, i.e. where the model expects a record that the data lack; a lead to
check, not a discovery.

**Data coverage.** {coverage} Elsewhere, only the sparse national thematic records (USGS mrdata sets, Earth MRI)
exist, so an empty cell there is unknown, not barren. {unsurveyed} The leave-one-state-out and unsurveyed-state
tables below measure how the map does in that situation.

**How it is evaluated.** Every choice (configuration, thresholds, tuning of the baselines) is made on
{folds}-fold spatial cross-validation over {block}-cell blocks with {buffer}-cell buffers; a test set of
{sealed} blocks (drawn with seed {seed}) is sealed: training and tuning never read it, and only
`m3 evaluate --test` scores it. Intervals are paired bootstrap 95% intervals ({boot} resamples of blocks, or
of states for leave-one-state-out and the unsurveyed check) of the difference "ResNet-UNet minus the other
method"; the verdict is *ahead* or *behind* only when the interval excludes 0, else *level*.
"""


#: How the model reads empty unsurveyed cells (``data.unsurveyed``), in the model card's words.
UNSURVEYED_TEXT = {
    "unknown": "The model reads them so: an unsurveyed cell without a record of a species is hidden for it in "
               "every input, like a cell to be predicted, and is never a training target; the records there "
               "stay visible.",
    "absent": "This model still reads an empty unsurveyed cell as a visible zero (a known absence) where it "
              "lies in a training block.",
}


def protocol_markdown(results: dict, cfg, cube, plots: list[str]) -> str:  # noqa: ANN001 (config, cube arrays)
    """The report.md of a protocol run: model card, then the CV, LOSO, unsurveyed and sealed-test tables."""
    p = cfg.protocol
    covered = ", ".join(getattr(cube, "covered_states", []) or []) or "the states of the coverage rule"
    folds = results.get("folds", {})
    lines = [f"# Evaluation of run `{results.get('run', '')}`", "",
             MODEL_CARD.format(coverage=f"Systematic survey records exist for {covered}; the model trains and "
                               "is scored there.", folds=p.folds, block=cfg.data.block_cells,
                               buffer=cfg.data.buffer_cells, sealed=folds.get("sealed_blocks", "?"),
                               seed=p.test_seed, boot=p.bootstrap,
                               unsurveyed=UNSURVEYED_TEXT[getattr(cfg.data, "unsurveyed", "absent")])]
    scorings = results.get("test_scorings", [])
    lines += [f"**Sealed test scorings of this run: {len(scorings)}.**", ""]
    if results.get("cv"):
        lines += _cv_section(results["cv"], p.folds)
    if results.get("loso"):
        lines += _loso_section(results["loso"])
    if results.get("unsurveyed"):
        lines += _unsurveyed_section(results["unsurveyed"])
    if results.get("against"):
        lines += _against_section(results["against"])
    if results.get("test"):
        lines += _test_section(results["test"])
    if scorings:
        lines += ["Sealed test scorings (UTC time, configuration sha256, commit):", ""]
        lines += [f"- {s['time']} {s['config_sha256'][:12]} {s['commit'][:12]}" for s in scorings]
        lines.append("")
    lines += ["## Plots", ""] + [f"![{x}]({x})" for x in plots]
    return "\n".join(lines) + "\n"


def _cv_section(cv: dict, n_folds: int) -> list[str]:
    """The cross-validation tables of the protocol report: one per regime, then the calibration."""
    lines = ["## Spatial cross-validation", "",
             f"Folds scored: {len(cv['folds'])} of {n_folds}. Each fold's networks train on the other folds; "
             "its baselines are tuned on the other folds' cells. Dice uses, in each fold, the per-species "
             "threshold that maximises Dice on the other folds' predictions.", ""]
    for regime, r in cv["regimes"].items():
        fr = list(next(iter(r["success"].values())))
        lines += [f"### {regime} hidden", "", f"{r['units']} blocks, {r['positives']} positive cell-species.", "",
                  "| method | AUPRC | Dice | " + " | ".join(f"top {float(f) * 100:g}%" for f in fr)
                  + " | UNet − method, mean AUPRC [95% CI] |",
                  "|---|---|---|" + "---|" * len(fr) + "---|"]
        for m in r["auprc"]:
            tops = " | ".join(_num(r["success"][m][f]) for f in fr)
            lines.append(f"| {_name(m)} | {_num(r['auprc'][m])} | {_num(r['dice'].get(m))} | {tops} | "
                         f"{_interval(r['compare'].get(m))} |")
        lines += ["", _seed_note(r["seeds"]), ""]
    if cv.get("calibration"):
        lines += _calibration_section(cv["calibration"])
    if cv.get("calibration_fit"):
        lines += _calibration_fit_section(cv["calibration_fit"])
    return lines


def _calibration_fit_section(fit: dict) -> list[str]:
    """How the served probabilities are calibrated, and how well, cross-fitted over the folds."""
    rel = fit["reliability"]
    if fit["regime"] == "held_out":
        title, what = ("### Calibrated probability outside the surveyed states",
                       f"the held-out predictions of the {fit['folds']} states (each state a fold); the service "
                       "applies it to the cells outside the surveyed states")
    else:
        title, what = ("### Calibrated probability",
                       f"the {fit['regime']}-hidden predictions of the {fit['folds']} folds; the service applies "
                       "it to the cells inside the surveyed states")
    lines = [title, "",
             f"Per species, a monotone map of the UNet's probability fitted on {what} (`calibration.json`, copied "
             "into model.json by `m3 export`, applied to every evaluation). Each form is scored by cross-fitting: "
             "every fold's predictions calibrated by the map fitted on the other folds. The form with the lower "
             f"log-loss is kept: **{fit['method']}**.", "",
             "| predictions | log-loss | ECE |", "|---|---|---|"]
    for name, r in rel.items():
        label = "raw" if name == "raw" else f"{name}, cross-fitted"
        lines.append(f"| {label} | {_num(r['log_loss'], 5)} | {_num(r['ece'], 4)} |")
    lines.append("")
    return lines


def _calibration_section(cal: dict) -> list[str]:
    """The calibration table of the cross-validated predictions."""
    lines = ["### Calibration on validation", "",
             "The ResNet-UNet's cross-validated predictions (every fold's held-out blocks), ten bins of "
             "predicted probability. ECE: the count-weighted mean gap between predicted and observed.", "",
             "| regime | ECE | mean predicted | observed rate |", "|---|---|---|---|"]
    for regime, c in cal.items():
        lines.append(f"| {regime} | {_num(c['ece'], 4)} | {_num(c['mean_predicted'], 4)} | "
                     f"{_num(c['observed'], 4)} |")
    lines.append("")
    return lines


def _loso_section(loso: dict) -> list[str]:
    """The leave-one-state-out table: each method's AUPRC per state, its mean and the comparison."""
    states = loso["states"]
    lines = ["## Leave one state out", "",
             "Each state in turn loses its survey records (inputs and labels) and keeps only its national "
             "thematic records, visible; everything else in it is hidden and scored against its survey "
             "records. Mean AUPRC over species with records in the state.", "",
             "| method | " + " | ".join(states) + " | mean | UNet − method [95% CI, states resampled] | "
             "states where UNet is higher |", "|---|" + "---|" * (len(states) + 3)]
    for m in loso["mean"]:
        lines.append(f"| {_name(m)} | " + " | ".join(_num(loso["per_state"][s][m]) for s in states)
                     + f" | {_num(loso['mean'][m])} | {_interval(loso['compare'].get(m))} | "
                     + (f"{loso['states_ahead'][m]} of {len(states)}" if m in loso["states_ahead"] else "—")
                     + " |")
    lines += ["", _seed_note(loso["seeds"]), ""]
    return lines + (_calibration_fit_section(loso["calibration_fit"]) if loso.get("calibration_fit") else [])


def _unsurveyed_section(uns: dict) -> list[str]:
    """The unsurveyed-states table: AUPRC and top-k% success of the held-out national records."""
    lines = ["## Unsurveyed states", "",
             f"Every national thematic record outside the surveyed states is held out of inputs and training; "
             f"the unsurveyed area ({uns['cells']} cells) is hidden and ranked. {uns['positives']} held-out "
             "cell-species records. Top k%: share of the held-out records inside the top k% of the unsurveyed "
             "area (mean over species); a random ranking puts k% of them in the top k%, and its AUPRC is the "
             "records' share of the cells. Intervals resample states.", "",
             "| method | AUPRC | top 1% | top 5% | top 10% | top 20% | UNet − method, AUPRC [95% CI] | "
             "UNet − method, top 10% [95% CI] |", "|---|---|---|---|---|---|---|---|"]
    for m in uns["auprc"]:
        s = uns["success"][m]
        lines.append(f"| {_name(m)} | {_num(uns['auprc'][m])} | "
                     + " | ".join(_num(s[k]) for k in ("0.01", "0.05", "0.1", "0.2"))
                     + f" | {_interval(uns['compare'].get(m))} | {_interval(uns['compare_top10'].get(m))} |")
    return lines + ["", _seed_note(uns["seeds"]), ""]


def _against_section(against: dict) -> list[str]:
    """The exported model against another run's (``m3 evaluate --against``), paired on the same folds."""
    lines = [f"## Against run `{against['run']}` ({against['name']})", "",
             "This run's ResNet-UNet against that run's, on the same folds, sealed blocks and held-out states; "
             "the interval is for this run minus that run (paired 95%).", "",
             "| stage | this run | that run | this − that [95% CI] |", "|---|---|---|---|"]
    for regime, r in against.get("cv", {}).items():
        c = r["compare"]
        lines.append(f"| CV, {regime} hidden, AUPRC | {_num(c['reference'])} | {_num(c['other'])} | {_interval(c)} |")
    if against.get("loso"):
        c = against["loso"]["compare"]
        lines.append(f"| LOSO, mean AUPRC over states | {_num(c['reference'])} | {_num(c['other'])} | "
                     f"{_interval(c)} |")
    if against.get("unsurveyed"):
        u = against["unsurveyed"]
        for label, c in (("unsurveyed, AUPRC", u["compare"]), ("unsurveyed, top 10%", u["compare_top10"])):
            lines.append(f"| {label} | {_num(c['reference'])} | {_num(c['other'])} | {_interval(c)} |")
    lines.append("")
    if against.get("loso"):
        loso = against["loso"]
        lines += [f"Leave one state out, state by state (this run higher in {loso['states_ahead']} of "
                  f"{len(loso['states'])}): " + "; ".join(
                      f"{s} {_num(v['this'])} against {_num(v['other'])}" for s, v in loso["per_state"].items())
                  + ".", ""]
    if against.get("missing"):
        lines += [f"Not compared: {', '.join(against['missing'])} (that run's score files are not on disk).", ""]
    return lines


def _test_section(test: dict) -> list[str]:
    """The sealed-test tables of the last scoring, one per regime."""
    lines = ["## Sealed test", "", f"Scored {test['scorings']} time(s); the last scoring:", ""]
    for regime, r in test["regimes"].items():
        lines += [f"### {regime} hidden", "", "| method | AUPRC | UNet − method [95% CI] |", "|---|---|---|"]
        lines += [f"| {_name(m)} | {_num(r['auprc'][m])} | {_interval(r['compare'].get(m))} |" for m in r["auprc"]]
        lines.append("")
    return lines


def write_protocol_plots(results: dict, out_dir: Path) -> list[str]:
    """Success-rate curves of every table and the reliability diagram; paths relative to the run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    panels: list[tuple[str, dict]] = []
    for regime, r in results.get("cv", {}).get("regimes", {}).items():
        panels.append((f"cross-validation, {regime} hidden", r["success"]))
    if "unsurveyed" in results:
        panels.append(("unsurveyed states", results["unsurveyed"]["success"]))
    written = []
    if panels:
        fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4), squeeze=False)
        for ax, (title, success) in zip(axes[0], panels, strict=True):
            for m, sr in success.items():
                xs = [0.0] + [float(k) * 100 for k in sr]
                ys = [0.0] + [(v if v is not None and math.isfinite(v) else 0.0) * 100 for v in sr.values()]
                ax.plot(xs, ys, marker="o", label=_name(m))
            ax.plot([0, 20], [0, 20], "k:", label="random")
            ax.set(xlabel="top % of scored area", ylabel="% of hidden records captured", title=title)
        axes[0][0].legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / "success_rates.png", dpi=90)
        plt.close(fig)
        written.append("plots/success_rates.png")
    cal = results.get("cv", {}).get("calibration")
    if cal:
        fig, ax = plt.subplots(figsize=(4.5, 4.2))
        for regime, c in cal.items():
            ax.plot(c["bin_predicted"], c["bin_observed"], marker="o", label=f"{regime} (ECE {c['ece']:.4f})")
        fit = results.get("cv", {}).get("calibration_fit")
        if fit:
            chosen = fit["reliability"][fit["method"]]
            ax.plot(chosen["bin_predicted"], chosen["bin_observed"], marker="s", linestyle="--",
                    label=f"{fit['regime']}, calibrated ({fit['method']}, cross-fitted; ECE {chosen['ece']:.4f})")
        ax.plot([0, 1], [0, 1], "k:", label="perfect")
        ax.set(xlabel="predicted probability", ylabel="observed rate", title="Reliability, cross-validated UNet")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out_dir / "reliability.png", dpi=90)
        plt.close(fig)
        written.append("plots/reliability.png")
    return written


def protocol_headline(results: dict) -> dict:
    """The UNet's cross-validated mean AUPRC per regime (and its seed spread): what model.json carries."""
    out = {}
    for regime, r in results.get("cv", {}).get("regimes", {}).items():
        if EXPORTED_MODEL in r["auprc"]:
            out[regime] = {"auprc": r["auprc"][EXPORTED_MODEL], "seeds": r["seeds"].get(EXPORTED_MODEL)}
    return out


def write_protocol_report(results: dict, cfg, cube, run_dir: Path) -> None:  # noqa: ANN001
    """metrics.json (``protocol`` key), plots and report.md of a protocol run, each written atomically."""
    results = dict(results, run=str(run_dir))
    plots = write_protocol_plots(_clean(results), run_dir / "plots")
    write_json_atomic({"protocol": results, "config": cfg.to_dict(), "run": str(run_dir),
                       "cube": getattr(cube, "cube_sha256", "")}, run_dir / "metrics.json")
    tmp = run_dir / "report.md.tmp"
    tmp.write_text(protocol_markdown(_clean(results), cfg, cube, plots), encoding="utf-8")
    os.replace(tmp, run_dir / "report.md")
