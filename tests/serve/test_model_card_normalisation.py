"""A model.json's normalisation block is informative: the service loads a card with or without extra_radii."""

import json
import shutil
from pathlib import Path

import pytest

from backend.inference.contract import load_model_card

DEMO = Path(__file__).resolve().parents[2] / "runs" / "demo"


@pytest.mark.parametrize("extra", [{"extra_radii": []}, {}])
def test_a_card_loads_with_or_without_extra_radii(tmp_path, extra):
    raw = json.loads((DEMO / "model.json").read_text(encoding="utf-8"))
    raw["normalisation"] = {k: v for k, v in raw["normalisation"].items() if k != "extra_radii"} | extra
    (tmp_path / "model.json").write_text(json.dumps(raw), encoding="utf-8")
    for onnx in DEMO.glob("model*.onnx"):  # every member of the model
        shutil.copy(onnx, tmp_path / onnx.name)
    card = load_model_card(tmp_path)
    assert card.species == tuple(raw["species"])
    assert card.raw["normalisation"].get("extra_radii", []) == []
