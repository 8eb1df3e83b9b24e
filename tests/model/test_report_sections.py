"""The sections of the protocol report: each table has a row per method and the figures of the results."""

from __future__ import annotations

from types import SimpleNamespace

from model.report import (
    _calibration_section,
    _cv_section,
    _loso_section,
    _test_section,
    _unsurveyed_section,
    protocol_markdown,
)

COMPARE = {"diff": 0.05, "lo": 0.012, "hi": 0.0904, "verdict": "ahead"}
SEEDS = {"unet": {"mean": 0.041, "std": 0.002, "n": 3}}
SUCCESS = {"0.01": 0.2, "0.05": 0.3, "0.1": 0.5, "0.2": 0.7}


def cv_results() -> dict:
    """Cross-validation results of two methods in one regime, with calibration."""
    return {"folds": ["cv-0", "cv-1"], "regimes": {"region": {
        "units": 5, "positives": 12, "success": {"unet": SUCCESS, "roughness": SUCCESS},
        "auprc": {"unet": 0.31, "roughness": 0.12}, "dice": {"unet": 0.25}, "compare": {"roughness": COMPARE},
        "seeds": SEEDS}}, "calibration": {"region": {"ece": 0.0123, "mean_predicted": 0.02, "observed": 0.03}}}


def loso_results() -> dict:
    """Leave-one-state-out results of two methods over two states."""
    return {"states": ["AA", "BB"], "per_state": {"AA": {"unet": 0.2, "kriging": 0.1},
                                                   "BB": {"unet": 0.4, "kriging": 0.3}},
            "mean": {"unet": 0.3, "kriging": 0.2}, "compare": {"kriging": COMPARE}, "states_ahead": {"kriging": 2},
            "seeds": SEEDS}


def unsurveyed_results() -> dict:
    """Unsurveyed-states results of two methods."""
    return {"cells": 400, "positives": 9, "auprc": {"unet": 0.05, "roughness": 0.02},
            "success": {"unet": SUCCESS, "roughness": SUCCESS}, "compare": {"roughness": COMPARE},
            "compare_top10": {"roughness": COMPARE}, "seeds": SEEDS}


def test_cv_section_has_a_row_per_method_and_the_calibration() -> None:
    lines = _cv_section(cv_results(), 3)
    assert lines[0] == "## Spatial cross-validation" and "Folds scored: 2 of 3." in lines[2]
    assert "| method | AUPRC | Dice | top 1% | top 5% | top 10% | top 20% |" in "\n".join(lines)
    assert "| ResNet-UNet (ours) | 0.310 | 0.250 | 0.200 | 0.300 | 0.500 | 0.700 | — |" in lines
    row = next(line for line in lines if line.startswith("| Terrain roughness"))
    assert "| 0.120 | n/a |" in row and row.endswith("+0.050 [+0.012, +0.090] ahead |")
    assert "### Calibration on validation" in lines
    assert _cv_section({**cv_results(), "calibration": {}}, 3).count("### Calibration on validation") == 0


def test_calibration_section_has_a_row_per_regime() -> None:
    lines = _calibration_section({"region": {"ece": 0.0123, "mean_predicted": 0.02, "observed": 0.03},
                                  "species": {"ece": 0.5, "mean_predicted": 0.1, "observed": 0.2}})
    assert "| region | 0.0123 | 0.0200 | 0.0300 |" in lines and "| species | 0.5000 | 0.1000 | 0.2000 |" in lines
    assert lines[-1] == ""


def test_loso_section_has_a_column_per_state() -> None:
    lines = _loso_section(loso_results())
    assert "| method | AA | BB | mean |" in lines[4] and lines[5] == "|---|" + "---|" * 5
    assert "| ResNet-UNet (ours) | 0.200 | 0.400 | 0.300 | — | — |" in lines
    assert "| Ordinary kriging | 0.100 | 0.300 | 0.200 | +0.050 [+0.012, +0.090] ahead | 2 of 2 |" in lines


def test_unsurveyed_section_has_the_top_shares() -> None:
    lines = _unsurveyed_section(unsurveyed_results())
    assert "(400 cells)" in lines[2] and "9 held-out" in lines[2]
    assert "| ResNet-UNet (ours) | 0.050 | 0.200 | 0.300 | 0.500 | 0.700 | — | — |" in lines


def test_test_section_has_a_table_per_regime() -> None:
    lines = _test_section({"scorings": 2, "regimes": {
        "region": {"auprc": {"unet": 0.3, "kriging": 0.1}, "compare": {"kriging": COMPARE}},
        "species": {"auprc": {"unet": 0.2}, "compare": {}}}})
    assert "Scored 2 time(s); the last scoring:" in lines
    assert lines.count("| method | AUPRC | UNet − method [95% CI] |") == 2
    assert "| Ordinary kriging | 0.100 | +0.050 [+0.012, +0.090] ahead |" in lines


def test_protocol_markdown_puts_the_sections_in_order() -> None:
    cfg = SimpleNamespace(protocol=SimpleNamespace(folds=3, test_seed=7, bootstrap=50),
                          data=SimpleNamespace(block_cells=16, buffer_cells=1))
    scorings = [{"time": "2026-01-01T00:00:00", "config_sha256": "a" * 64, "commit": "b" * 40}]
    results = {"run": "demo", "folds": {"sealed_blocks": 4}, "cv": cv_results(), "loso": loso_results(),
               "unsurveyed": unsurveyed_results(), "test_scorings": scorings,
               "test": {"scorings": 1, "regimes": {"region": {"auprc": {"unet": 0.3}, "compare": {}}}}}
    text = protocol_markdown(results, cfg, SimpleNamespace(covered_states=["AA", "BB"]), ["plot.png"])
    heads = ["# Evaluation of run `demo`", "## Model card", "**Sealed test scorings of this run: 1.**",
             "## Spatial cross-validation", "## Leave one state out", "## Unsurveyed states", "## Sealed test",
             f"- 2026-01-01T00:00:00 {'a' * 12} {'b' * 12}", "## Plots", "![plot.png](plot.png)"]
    assert [text.index(h) for h in heads] == sorted(text.index(h) for h in heads)
    assert "Systematic survey records exist for AA, BB" in text and "4 blocks (drawn with seed 7)" in text
    bare = protocol_markdown({"run": "r"}, cfg, SimpleNamespace(), [])
    assert "## Spatial cross-validation" not in bare and "## Sealed test" not in bare
    assert "the states of the coverage rule" in bare and bare.endswith("## Plots\n\n")
