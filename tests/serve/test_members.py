"""A model of several trained networks (training seeds): model.json's members, cycled by the ensemble."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from backend.inference.contract import ModelContractError, load_model_card
from backend.inference.cube_inputs import CubeSource
from backend.inference.engine import InferenceEngine
from backend.inference.ensemble import run_ensemble
from backend.inference.masks import DEMO_CONFIG, MaskSchedule
from backend.inference.runner import MapEvaluator
from model.config import load_config

from .synthetic import small_grid, write_synthetic_cube, write_tiny_model

MASKING = load_config(DEMO_CONFIG).masking


def _two_member_model(root: Path) -> Path:
    """The tiny model (seed 0) with a second member: the tiny model of seed 1, as model-seed-1.onnx."""
    folder = write_tiny_model(root / "model", seed=0)
    other = write_tiny_model(root / "other", seed=1)
    shutil.copy(other / "model.onnx", folder / "model-seed-1.onnx")
    card = json.loads((folder / "model.json").read_text())
    second = json.loads((other / "model.json").read_text())["sha256"]
    card["members"] = [{"onnx": "model.onnx", "sha256": card["sha256"], "seed": 0},
                       {"onnx": "model-seed-1.onnx", "sha256": second, "seed": 1}]
    (folder / "model.json").write_text(json.dumps(card))
    return folder


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("members")
    write_synthetic_cube(root / "cube", small_grid(rows=48, cols=64))
    engine = InferenceEngine(load_model_card(_two_member_model(root)))
    return engine, CubeSource.open(root / "cube").read(), root


def test_each_member_is_its_own_network(setup) -> None:
    engine, arrays, root = setup
    assert [m.seed for m in engine.card.members] == [0, 1] and len(engine.members) == 2
    assert engine.members[0] is engine and engine.members[1].path.name == "model-seed-1.onnx"
    alone = InferenceEngine(load_model_card(root / "other"))
    evaluate = MapEvaluator(engine, arrays, whole=True)
    single = MapEvaluator(alone, arrays, whole=True)
    mask = np.zeros((2, *arrays.shape), dtype=bool)
    mask[:, 5:20, 5:30] = True
    try:
        np.testing.assert_allclose(evaluate(mask, member=1), single(mask), atol=1e-6)
        np.testing.assert_allclose(evaluate(mask, member=3), single(mask), atol=1e-6)  # modulo the members
        assert not np.allclose(evaluate(mask, member=0), single(mask))
    finally:
        evaluate.close()
        single.close()


def test_the_ensemble_gives_round_r_to_member_r_mod_m(setup) -> None:
    engine, arrays, _ = setup
    used: list[int] = []
    schedule = MaskSchedule(arrays.shape, MASKING, rounds=4, seed=2)
    evaluate = MapEvaluator(engine, arrays, whole=True)

    def spy(hidden: np.ndarray, shift: int, member: int) -> np.ndarray:
        used.append(member)
        return evaluate(hidden, shift, member)

    try:
        result = run_ensemble(spy, engine.card.species, schedule, members=2)
    finally:
        evaluate.close()
    parts = [schedule.round(r).parts for r in range(4)]
    assert used == [r % 2 for r in range(4) for _ in range(parts[r])]
    assert result.count.min() == 4 and np.isfinite(result.mean).all()


def test_members_are_checked(tmp_path: Path) -> None:
    folder = _two_member_model(tmp_path)
    card = json.loads((folder / "model.json").read_text())
    bad = [(dict(card, members=[card["members"][1], card["members"][0]]), "the first member must be"),
           (dict(card, members=[card["members"][0], {"onnx": "../x.onnx", "sha256": "0"}]), "a file name"),
           (dict(card, members=[card["members"][0], {"onnx": "gone.onnx", "sha256": "0"}]), "does not exist"),
           (dict(card, members=[card["members"][0], dict(card["members"][1], sha256="0" * 64)]), "has sha256")]
    for raw, message in bad:
        (folder / "model.json").write_text(json.dumps(raw))
        with pytest.raises(ModelContractError, match=message):
            load_model_card(folder)


def _with_hidden_graph(root: Path) -> Path:
    """The tiny model whose one member has an all-hidden graph: the tiny model of seed 3, as model.hidden.onnx."""
    folder = write_tiny_model(root / "hidden-model", seed=0)
    other = write_tiny_model(root / "hidden-other", seed=3)
    shutil.copy(other / "model.onnx", folder / "model.hidden.onnx")
    card = json.loads((folder / "model.json").read_text())
    card["members"] = [{"onnx": "model.onnx", "sha256": card["sha256"], "seed": 0, "hidden_onnx": "model.hidden.onnx",
                        "hidden_sha256": json.loads((other / "model.json").read_text())["sha256"]}]
    (folder / "model.json").write_text(json.dumps(card))
    return folder


def test_the_whole_map_evaluator_runs_the_all_hidden_graphs(setup) -> None:
    _, arrays, root = setup
    folder = _with_hidden_graph(root)
    engine = InferenceEngine(load_model_card(folder))
    assert engine.card.has_hidden_graphs and [e.path.name for e in engine.hidden_members] == ["model.hidden.onnx"]
    alone = InferenceEngine(load_model_card(root / "hidden-other"))
    mask = np.zeros((2, *arrays.shape), dtype=bool)
    mask[:, 5:20, 5:30] = True
    ensemble, full, reference = (MapEvaluator(engine, arrays, whole=True, all_hidden=True),
                                 MapEvaluator(engine, arrays, whole=True),
                                 MapEvaluator(alone, arrays, whole=True))
    try:
        np.testing.assert_allclose(ensemble(mask), reference(mask), atol=1e-6)
        assert not np.allclose(full(mask), reference(mask))
    finally:
        for e in (ensemble, full, reference):
            e.close()
    # a model without them runs its full graphs either way
    plain = InferenceEngine(load_model_card(root / "other"))
    assert not plain.card.has_hidden_graphs and plain.hidden_members == plain.members


@pytest.mark.parametrize("change,message", [
    (lambda m: m.update(hidden_onnx="../model.hidden.onnx"), "a file name"),
    (lambda m: m.pop("hidden_sha256"), "needs hidden_sha256"),
    (lambda m: m.update(hidden_sha256="0" * 64), "model.json says"),
    (lambda m: m.update(hidden_onnx="gone.onnx"), "does not exist"),
])
def test_a_bad_all_hidden_graph_is_refused(tmp_path, change, message) -> None:
    folder = _with_hidden_graph(tmp_path)
    card = json.loads((folder / "model.json").read_text())
    change(card["members"][0])
    (folder / "model.json").write_text(json.dumps(card))
    with pytest.raises(ModelContractError, match=message):
        load_model_card(folder)
