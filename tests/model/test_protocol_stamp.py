"""A protocol folder is stamped with its configuration and cube; another run's folder is refused."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from model.config import config_from_dict
from model.protocol import _stamp_run
from model.splits import protocol_folds


def test_stamp_writes_the_digest_and_the_folds_and_refuses_another_run(tmp_path: Path, tiny_raw: dict) -> None:
    tiny_raw["protocol"] = {"folds": 3, "test_fraction": 0.2, "test_seed": 7}
    cfg = config_from_dict(tiny_raw)
    coverage = np.ones((64, 64), dtype=bool)
    folds = protocol_folds(coverage, 16, 1, 0.05, 0.2, 7, 3)
    out = tmp_path / "protocol"
    _stamp_run(cfg, SimpleNamespace(cube_sha256="1" * 64), folds, out)
    digest = (out / "config.sha256").read_text()
    written = json.loads((out / "folds.json").read_text())
    assert written["n_folds"] == 3 and written["test_seed"] == 7 and written["block_fold"] == folds.fold.tolist()
    assert written["sealed_blocks"] + sum(written["fold_blocks"]) == int((folds.fold >= folds.SEALED).sum())
    _stamp_run(cfg, SimpleNamespace(cube_sha256="1" * 64), folds, out)  # the same run again: accepted
    assert (out / "config.sha256").read_text() == digest
    with pytest.raises(ValueError, match="another configuration or cube"):
        _stamp_run(cfg, SimpleNamespace(cube_sha256="2" * 64), folds, out)
