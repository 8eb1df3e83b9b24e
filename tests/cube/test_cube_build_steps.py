"""The steps of a cube build: step list and timing, label counts split by source kind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from backend.cube.build import BuildSteps, CubeRequest, count_labels, step_names
from backend.cube.grid import Grid
from backend.cube.labels import ALL_SITES
from backend.cube.sites import SiteTable


def test_step_names_follow_the_request() -> None:
    request = CubeRequest(("gold",), (ALL_SITES,), (("magnetics", Path("m.tif")),), quicklooks=False)
    assert step_names(request) == ["labels", "coverage", "covariates", "covariate magnetics", "write"]
    assert step_names(CubeRequest(("gold",), (), ()))[-1] == "quick-looks"


def test_a_step_is_timed_only_when_it_completes() -> None:
    timings: dict[str, float] = {}
    steps = BuildSteps(["a", "b"], progress=False, timings=timings)
    with steps.step("a"):
        pass
    with pytest.raises(RuntimeError), steps.step("b"):
        raise RuntimeError("failed")
    steps.close()
    assert list(timings) == ["a"] and timings["a"] >= 0


def test_label_counts_split_by_source_kind(synthetic_sites: SiteTable, west_grid: Grid) -> None:
    request = CubeRequest(("gold", "copper"), (ALL_SITES, "sand_and_gravel"), ())
    labels = count_labels(west_grid, synthetic_sites, request)
    assert labels.n_inside == len(synthetic_sites) - 1  # Honolulu is outside the grid
    assert labels.counts.shape == labels.survey.shape == labels.national.shape == (2, *west_grid.shape)
    np.testing.assert_array_equal(labels.counts, labels.survey + labels.national)
    assert int(labels.national[0].sum()) == 0 and int(labels.national[1].sum()) == 1  # the Reno record
    assert int(labels.crossref[0].sum()) == labels.n_inside and int(labels.crossref[1].sum()) == 1
