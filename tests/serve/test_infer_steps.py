"""The steps of POST /api/infer: checking a request, the per-species statistics, the temporary layer."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from backend.api.errors import BadQuery
from backend.api.routers.infer import InferCreate, _plan, _publish, _statistics
from backend.api.serve_errors import BoxTooLarge

from .synthetic import small_grid

SPECIES = ["gold", "zinc", "lead"]
BOX = "-121.2,38.8,-120.4,39.4"


def serving(tmp_path: Path | None = None, max_cells: int = 10_000, max_ensemble: int = 4) -> SimpleNamespace:
    """A stand-in for the serving state: the small grid, the size limits and a catalog of temporary layers."""
    added: list = []
    catalog = SimpleNamespace(temporary_dir=tmp_path, added=added, add_temporary=added.append)
    return SimpleNamespace(settings=SimpleNamespace(infer_max_cells=max_cells, infer_max_ensemble=max_ensemble),
                           cube=SimpleNamespace(grid=small_grid()), catalog=catalog)


def test_plan_defaults_report_every_species_and_draw_the_first_hidden() -> None:
    plan = _plan(serving(), InferCreate(bbox=BOX, hide_species=["zinc"]), SPECIES)
    assert plan.report == SPECIES and plan.hide == ["zinc"] and plan.render == "zinc" and plan.regions == ()
    assert plan.cells == int(plan.window.width * plan.window.height) > 0
    assert (plan.box.minx, plan.box.maxy) == (-121.2, 39.4)
    plan = _plan(serving(), InferCreate(bbox=[-121.2, 38.8, -120.4, 39.4], species=["lead", "gold"]), SPECIES)
    assert plan.report == ["lead", "gold"] and plan.hide == [] and plan.render == "lead"
    plan = _plan(serving(), InferCreate(bbox=BOX, hide_species=["zinc"], render="gold",
                                        hide_regions=[(-121.0, 39.0, -120.8, 39.2)]), SPECIES)
    assert plan.render == "gold" and len(plan.regions) == 1
    region = plan.regions[0]
    assert plan.window.col_off <= region.col_off and region.width <= plan.window.width


@pytest.mark.parametrize(("body", "parameter"), [
    ({"bbox": BOX, "ensemble": 5}, "ensemble"),
    ({"bbox": BOX, "render": "gold,zinc"}, "render"),
    ({"bbox": BOX, "hide_species": ["silver"]}, "hide_species"),
    ({"bbox": BOX, "hide_regions": [(-100.0, 39.0, -99.0, 39.2)]}, "hide_regions"),
    ({"bbox": "1,2,3"}, "bbox"),
])
def test_plan_refuses_what_the_model_or_the_limits_do_not_allow(body: dict, parameter: str) -> None:
    with pytest.raises(BadQuery) as caught:
        _plan(serving(), InferCreate(**body), SPECIES)
    assert caught.value.parameter == parameter


def test_plan_refuses_a_box_over_the_cell_limit() -> None:
    with pytest.raises(BoxTooLarge, match="at most 100 cells"):
        _plan(serving(max_cells=100), InferCreate(bbox=BOX), SPECIES)


def test_statistics_of_the_reported_species() -> None:
    mean = np.full((3, 4, 5), 0.25, np.float32)
    std = np.full((3, 4, 5), np.nan, np.float32)
    std[2] = 0.1
    hidden = np.zeros((3, 4, 5), dtype=bool)
    hidden[2, :2] = True
    result = SimpleNamespace(mean=mean, std=std, hidden=hidden)
    stats = _statistics(result, SPECIES, ["lead", "gold"], 2.5)
    assert list(stats) == ["lead", "gold"]
    assert stats["lead"].hidden_cells == 10 and stats["lead"].std_mean == pytest.approx(0.1)
    assert stats["gold"].hidden_cells == 0 and stats["gold"].std_mean is None


def test_publish_writes_and_registers_a_temporary_layer(tmp_path: Path) -> None:
    state = serving(tmp_path / "temporary")
    plan = _plan(state, InferCreate(bbox=BOX), SPECIES)
    values = np.random.default_rng(0).random((int(plan.window.height), int(plan.window.width))).astype(np.float32)
    layer = _publish(state, values, plan.window, "zinc")
    assert state.catalog.added == [layer] and layer.path.exists()
    assert layer.id.startswith("infer-") and layer.id.endswith(".zinc") and layer.path.name == f"{layer.id}.tif"
    minx, miny, maxx, maxy = layer.bounds
    assert minx < -121.1 and miny < 38.9 and maxx > -120.5 and maxy > 39.3  # the box's cells lie inside
