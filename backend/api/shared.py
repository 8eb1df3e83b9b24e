"""What several routers use: the deepest tile zoom, a layer kind's default rendering query, box statistics."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import numpy as np

from backend.layers.cog import LAYER_KINDS

#: The deepest zoom of every tile endpoint (the tile grids' own limit).
MAX_ZOOM = 30


def render_query(kind: str) -> str:
    """The query string that draws a layer kind with its default colormap and range."""
    style = LAYER_KINDS[kind]
    lo, hi = style.rescale
    return urlencode({"colormap_name": style.colormap, "rescale": f"{lo},{hi}"})


def array_stats(values: np.ndarray, cell_km2: float) -> dict[str, Any]:
    """Count, mean, std, min, percentiles, max and the area above 0.5 of the finite cells."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return {"cells": 0}
    p10, p50, p90 = np.percentile(finite, [10, 50, 90])
    return {"cells": int(finite.size), "mean": float(finite.mean()), "std": float(finite.std()),
            "min": float(finite.min()), "p10": float(p10), "p50": float(p50), "p90": float(p90),
            "max": float(finite.max()), "area_km2_above_0_5": float((finite > 0.5).sum() * cell_km2)}
