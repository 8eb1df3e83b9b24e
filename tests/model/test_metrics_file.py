"""metrics.json read through its typed structure."""

from pathlib import Path

from model.config import EXPORTED_MODEL, REGIMES
from model.metrics_file import RunScores, method_runs, read_metrics, seed_name, val_auprc

DEMO = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "run-before-protocol"


def test_the_metrics_of_a_run_before_the_protocol_read_as_typed():
    metrics = read_metrics(DEMO / "metrics.json")
    assert metrics is not None
    assert set(metrics["regimes"]) == set(REGIMES)
    runs = method_runs(metrics, "mixed", EXPORTED_MODEL)
    assert seed_name(0) in runs
    assert all(isinstance(val_auprc(run), float) for run in runs.values())
    assert method_runs(metrics, "mixed", "no-such-method") == {}


def test_a_missing_file_or_an_undefined_score_is_none(tmp_path):
    assert read_metrics(tmp_path / "metrics.json") is None
    run: RunScores = {"mean": {"val_auprc": float("nan")}, "per_species": {}}
    assert val_auprc(run) is None
    assert val_auprc({"mean": {}, "per_species": {}}) is None
