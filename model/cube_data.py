"""The data cube as training and evaluation read it (the cube contract lives in ``backend.cube.contract``)."""

from __future__ import annotations

from backend.cube.contract import CubeArrays, load_cube

__all__ = ["CubeArrays", "load_cube"]
