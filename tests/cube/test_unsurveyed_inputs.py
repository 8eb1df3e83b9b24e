"""Unsurveyed cells as unknown: hidden for every species without a record there, and a surveyed channel."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from backend.cube.contract import (
    SURVEYED_CHANNEL,
    CubeArrays,
    InputLayout,
    assemble_inputs,
    channel_names,
    fill_species_channels,
    unknown_cells,
)

SPECIES = ["gold", "zinc", "copper"]
COVARIATES = ["elevation"]


def _cube(seed: int = 0) -> CubeArrays:
    rng = np.random.default_rng(seed)
    labels = (rng.random((3, 12, 16)) < 0.2).astype(np.uint8)
    coverage = np.zeros((12, 16), dtype=bool)
    coverage[:, :8] = True  # the left half is surveyed
    cov = rng.normal(size=(1, 12, 16)).astype(np.float32)
    return CubeArrays(SPECIES, COVARIATES, labels, coverage, cov, np.ones((1, 12, 16), dtype=np.uint8))


def test_channel_names_add_the_surveyed_channel_last_only_for_unknown() -> None:
    assert channel_names(SPECIES, COVARIATES) == channel_names(SPECIES, COVARIATES, "absent")
    names = channel_names(SPECIES, COVARIATES, "unknown")
    assert names[:-1] == channel_names(SPECIES, COVARIATES) and names[-1] == SURVEYED_CHANNEL
    with pytest.raises(ValueError, match="unsurveyed mode 'maybe' unknown"):
        channel_names(SPECIES, COVARIATES, "maybe")


def test_unknown_mode_hides_unsurveyed_cells_without_a_record_and_keeps_records_visible() -> None:
    cube = _cube()
    hidden = np.zeros((3, 12, 16), dtype=bool)
    hidden[:, 2:5, 2:5] = True  # a hidden square inside coverage
    x = assemble_inputs(InputLayout.of(SPECIES, COVARIATES, "unknown"), cube, hidden)
    old = assemble_inputs(InputLayout.of(SPECIES, COVARIATES), cube, hidden)
    assert x.shape[0] == old.shape[0] + 1
    np.testing.assert_array_equal(x[-1], cube.coverage.astype(np.float32))
    for s, name in enumerate(SPECIES):
        outside_empty = ~cube.coverage & (cube.labels[s] == 0)
        np.testing.assert_array_equal(unknown_cells(cube, name), outside_empty)
        np.testing.assert_array_equal(x[3 + s], (hidden[s] | outside_empty).astype(np.float32))
        # a record outside coverage stays visible; visible channels are the old ones
        np.testing.assert_array_equal(x[s], old[s])
        assert x[s][~cube.coverage].sum() == cube.labels[s][~cube.coverage].sum()
    # inside coverage nothing changes
    np.testing.assert_array_equal(x[3:6][:, cube.coverage], old[3:6][:, cube.coverage])


def test_unknown_mode_refill_matches_a_fresh_assembly() -> None:
    cube = _cube(1)
    layout = InputLayout.of(SPECIES, COVARIATES, "unknown")
    first = np.zeros((3, 12, 16), dtype=bool)
    second = np.random.default_rng(3).random((3, 12, 16)) < 0.5
    x = assemble_inputs(layout, cube, first)
    with ThreadPoolExecutor(2) as pool:
        fill_species_channels(layout, cube, second, x, pool)
    np.testing.assert_array_equal(x, assemble_inputs(layout, cube, second))
