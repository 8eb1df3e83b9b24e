"""Locust users for bench/load.py: a mix of tiles, sites, clusters and prospectivity requests."""

from __future__ import annotations

import random

import morecantile
from locust import FastHttpUser, between, task

WEB_MERCATOR = morecantile.tms.get("WebMercatorQuad")
SPECIES = ("gold", "silver", "copper", "zinc", "lead", "iron")
#: Boxes where the data is (lon/lat), to draw viewports from. The first starts at -123: off central
#: California the ocean west of it lies outside the grid, and /api/prospectivity rightly answers 422.
BOXES = ((-123.0, 34.0, -118.0, 41.5), (-124.0, 42.0, -117.0, 46.0), (-114.0, 37.0, -109.5, 41.9),
         (-83.0, 35.0, -76.0, 39.0), (-88.0, 31.0, -85.0, 35.0))


def _viewport(rng: random.Random, span: float) -> tuple[float, float, float, float]:
    """A random box of about ``span`` degrees inside one of the data boxes."""
    minx, miny, maxx, maxy = rng.choice(BOXES)
    x = rng.uniform(minx, maxx - span)
    y = rng.uniform(miny, maxy - span / 2)
    return x, y, x + span, y + span / 2


class MapUser(FastHttpUser):
    """Someone panning the map: tiles mostly, then sites, clusters and box statistics."""

    wait_time = between(0.0, 0.05)

    def on_start(self) -> None:
        """Seed per user, so runs are repeatable."""
        self.rng = random.Random(id(self) % 1000)

    @task(10)
    def tile(self) -> None:
        """One tile of a model layer at zoom 4-9."""
        z = self.rng.randint(4, 9)
        x0, y0, x1, y1 = _viewport(self.rng, 1.0)
        t = WEB_MERCATOR.tile(self.rng.uniform(x0, x1), self.rng.uniform(y0, y1), z)
        sp = self.rng.choice(SPECIES)
        self.client.get(f"/tiles/{sp}.prospectivity/tiles/WebMercatorQuad/{z}/{t.x}/{t.y}.png",
                        name="/tiles/[layer]/tiles/WebMercatorQuad/[z]/[x]/[y].png")

    @task(4)
    def sites(self) -> None:
        """A page of known sites in a viewport."""
        box = ",".join(f"{v:.3f}" for v in _viewport(self.rng, 2.0))
        self.client.get(f"/api/sites?bbox={box}&species={self.rng.choice(SPECIES)}&limit=1000", name="/api/sites")

    @task(2)
    def clusters(self) -> None:
        """Flagged clusters of a species in a viewport."""
        box = ",".join(f"{v:.3f}" for v in _viewport(self.rng, 4.0))
        self.client.get(f"/api/clusters?bbox={box}&species={self.rng.choice(SPECIES)}", name="/api/clusters")

    @task(1)
    def prospectivity(self) -> None:
        """Statistics of a box."""
        box = ",".join(f"{v:.3f}" for v in _viewport(self.rng, 1.0))
        self.client.get(f"/api/prospectivity?bbox={box}&species={self.rng.choice(SPECIES)}",
                        name="/api/prospectivity")
