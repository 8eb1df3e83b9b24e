"""Writing an evaluation: metrics.json, report.md (tables for every regime and method) and plots."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np

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
METHOD_NAMES = {"unet": "ResNet-UNet (ours)", "vit": "ViT + patch decoder", "neighbourhood":
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


def headline(metrics: dict) -> dict:
    """The UNet's test means (mean ± std over seeds) per regime: the numbers model.json carries."""
    out = {}
    for regime, methods in metrics["regimes"].items():
        if "unet" in methods:
            s = methods["unet"]["summary"]["mean"]
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
    if "unet" not in methods:
        return ""
    out = []
    for metric in ("dice", "auprc"):
        ours = methods["unet"]["summary"]["mean"][metric]
        rivals = {m: e["summary"]["mean"][metric]["mean"] for m, e in methods.items()
                  if m != "unet" and m not in components}
        best = max(rivals, key=lambda m: rivals[m] if rivals[m] is not None else -1.0)
        delta = (ours["mean"] or 0.0) - (rivals[best] or 0.0)
        word = "beats" if delta > 0 else ("is within seed spread of" if -delta <= (ours["std"] or 0.0) else "trails")
        out.append(f"mean {metric}: UNet {ours['mean']:.3f} ± {ours['std']:.3f} {word} the best other method "
                   f"({METHOD_NAMES.get(best, best)}, {rivals[best]:.3f}; difference {delta:+.3f})")
    return f"**Verdict, {regime} hidden:** " + "; ".join(out) + "."


def markdown_report(metrics: dict, plots: list[str]) -> str:
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


def write_plots(metrics: dict, out_dir: Path) -> list[str]:
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


def write_evaluation(metrics: dict, run_dir: Path) -> None:
    """metrics.json, plots and report.md in the run folder (each written atomically)."""
    plots = write_plots(metrics, run_dir / "plots")
    write_json_atomic(metrics, run_dir / "metrics.json")
    tmp = run_dir / "report.md.tmp"
    tmp.write_text(markdown_report(_clean(metrics), plots), encoding="utf-8")
    os.replace(tmp, run_dir / "report.md")
