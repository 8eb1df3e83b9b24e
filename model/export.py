"""ONNX export of the trained UNet (sigmoid and input handling inside the graph) and its model.json."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import torch

from backend.cube.contract import channel_names, sha256_file
from model.config import EXPORTED_MODEL
from model.metrics_file import Metrics, method_runs, read_metrics, seed_name, val_auprc
from model.networks import GatedExperts, M3Network, ProbabilityModel
from model.report import _clean, headline
from model.train import Experiment, load_trained, model_dir

log = logging.getLogger(__name__)

OPSET = 17
CELL_SIZE_M = 1609.344
CRS = "EPSG:5070"
#: A member's graph for cells where every species is hidden: model.onnx -> model.hidden.onnx.
HIDDEN_SUFFIX = ".hidden.onnx"


def export_onnx(net: M3Network | GatedExperts, path: Path, n_channels: int, size: int = 64) -> None:
    """Write raw inputs x [N, C, H, W] -> prob [N, S, H, W] with dynamic N, H, W (atomic rename)."""
    model = ProbabilityModel(net).eval()
    dummy = torch.zeros(1, n_channels, size, size)
    tmp = path.with_name(path.name + ".tmp")
    with torch.no_grad():
        torch.onnx.export(model, (dummy,), str(tmp), input_names=["x"], output_names=["prob"], opset_version=OPSET,
                          dynamic_axes={"x": {0: "n", 2: "h", 3: "w"}, "prob": {0: "n", 2: "h", 3: "w"}},
                          dynamo=False, do_constant_folding=True)
    os.replace(tmp, path)


def trained_seeds(exp: Experiment, run_dir: Path) -> list[int]:
    """The seeds of the exported model trained in the run: the configured ones first, then others on disk.

    Others are those trained with ``m3 train --seed``.
    """
    on_disk = sorted(int(d.name.removeprefix("seed-")) for d in (run_dir / EXPORTED_MODEL).glob("seed-*")
                     if d.name.removeprefix("seed-").isdigit() and (d / "final.pt").exists())
    return [s for s in exp.cfg.train.seeds if s in on_disk] + [s for s in on_disk if s not in exp.cfg.train.seeds]


def select_seed(exp: Experiment, run_dir: Path, metrics: Metrics | None) -> int:
    """The UNet seed to ship: best validation mean AUPRC (mixed regime) when evaluated, else the first trained."""
    trained = trained_seeds(exp, run_dir)
    if not trained:
        raise FileNotFoundError(f"no trained UNet in {run_dir}; run `m3 train --config ... --out {run_dir}` first")
    if metrics:
        runs = method_runs(metrics, "mixed", EXPORTED_MODEL)
        scored = [(val_auprc(runs[seed_name(s)]) or -1.0, -s) for s in trained if seed_name(s) in runs]
        if scored:
            return -max(scored)[1]
    return trained[0]


def _headline(metrics: Metrics | None) -> dict:
    """What model.json says of the model's scores: cross-validated for a protocol run, else the test means."""
    if not metrics:
        return {}
    if "protocol" in metrics:
        from model.report import protocol_headline

        return {"cross_validated": protocol_headline(metrics["protocol"])}
    return headline(metrics)


def _calibration(run_dir: Path, species: list[str]) -> dict | None:
    """The run's calibration.json (written by ``m3 evaluate`` of a protocol run) as model.json carries it."""
    path = run_dir / "calibration.json"
    if not path.is_file():
        return None
    from model.calibration import check_roundtrip

    fit = json.loads(path.read_text(encoding="utf-8"))
    check_roundtrip(fit, species)

    def part(f: dict) -> dict:
        rel = f.get("reliability", {})
        return {"method": f["method"], "regime": f["regime"], "folds": f["folds"], "species": f["species"],
                "cross_fitted_log_loss": f.get("cross_fitted_log_loss"),
                "ece": {k: v.get("ece") for k, v in rel.items()}}

    out = part(fit)
    if fit.get("unsurveyed"):
        out["unsurveyed"] = part(fit["unsurveyed"])
    return out


def export_run(exp: Experiment, run_dir: Path, out: Path | None = None) -> dict:
    """Export the selected UNet of a run to model.onnx and write model.json; return model.json's content.

    The files go to ``out`` (default: the run folder); model.json names the run (``run``) whose report judged it.
    """
    dest = run_dir if out is None else out
    dest.mkdir(parents=True, exist_ok=True)
    metrics = read_metrics(run_dir / "metrics.json")
    seed = select_seed(exp, run_dir, metrics)
    channels = channel_names(exp.cube.species, exp.cube.covariates, exp.cfg.data.unsurveyed)
    members = []
    for s in [seed] + [s for s in trained_seeds(exp, run_dir) if s != seed]:
        member = load_trained(exp, EXPORTED_MODEL, model_dir(run_dir, EXPORTED_MODEL, s) / "final.pt")
        path = dest / ("model.onnx" if s == seed else f"model-seed-{s}.onnx")
        export_onnx(member, path, len(channels), size=4 * member.multiple)
        entry: dict = {"onnx": path.name, "sha256": sha256_file(path), "seed": s}
        if isinstance(member, GatedExperts):
            # where every species is hidden the gate picks the blind expert: its graph alone gives those
            # cells the same probabilities at half the cost (the whole-map ensemble hides every species)
            hidden = path.with_name(path.stem + HIDDEN_SUFFIX)
            export_onnx(member.blind, hidden, len(channels), size=4 * member.multiple)
            entry |= {"hidden_onnx": hidden.name, "hidden_sha256": sha256_file(hidden)}
        members.append(entry)
        if s == seed:
            net = member
    onnx_path = dest / "model.onnx"
    written = {m["onnx"] for m in members} | {m["hidden_onnx"] for m in members if "hidden_onnx" in m}
    for stale in [*dest.glob("model-seed-*.onnx"), *dest.glob(f"model{HIDDEN_SUFFIX}")]:
        if stale.name not in written:  # files of an earlier export that this one does not write
            stale.unlink()
    stem = net.stem
    payload = {
        "format": "m3-model/1", "onnx": "model.onnx", "input": "x", "output": "prob",
        "channels": channels, "species": list(exp.cube.species), "covariates": list(exp.cube.covariates),
        "multiple": int(net.multiple), "cell_size_m": CELL_SIZE_M, "crs": CRS,
        "normalisation": {
            "inside_graph": True,
            "per_channel_scale": stem.scale.flatten().tolist(), "per_channel_shift": stem.shift.flatten().tolist(),
            "nan_to": 0.0,
            "order": "x * scale + shift (skipped when the identity), then NaN -> 0 in the cov: and valid: "
                     "channels (visible: and hidden: channels are 0/1); covariates are fed as stored in covariates.tif "
                     "(already normalised with the cube's stored mean/std); derived channels (neighbourhood "
                     "density of visible layers, co-occurrence prior) are computed inside the graph",
            "blur_radius": int(stem.radius),
        },
        "opset": OPSET, "sha256": sha256_file(onnx_path), "config": exp.cfg.to_dict(),
        "metrics": _headline(metrics), "cube": exp.cube.cube_sha256,
        "seed": seed, "arch": EXPORTED_MODEL, "unsurveyed": exp.cfg.data.unsurveyed,
        "calibration": _calibration(run_dir, list(exp.cube.species)), "members": members,
        "run": run_dir.as_posix(),
    }
    tmp = dest / "model.json.tmp"
    tmp.write_text(json.dumps(_clean(payload), indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, dest / "model.json")
    log.info("exported UNet seeds %s to %s (%.1f MB each)", [m["seed"] for m in members], dest,
             onnx_path.stat().st_size / 1e6)
    return payload


def onnx_parity(net: M3Network | GatedExperts, onnx_path: Path, x: np.ndarray) -> float:
    """Max abs difference between torch and onnxruntime probabilities for one input batch."""
    import onnxruntime as ort

    with torch.no_grad():
        ref = ProbabilityModel(net).eval()(torch.from_numpy(x)).numpy()
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(["prob"], {"x": x})[0]
    return float(np.max(np.abs(ref - got)))
