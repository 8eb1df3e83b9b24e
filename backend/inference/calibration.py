"""Calibrated probabilities: the per-species monotone map that ``model.json``'s ``calibration`` holds.

``m3 evaluate`` fits it on a protocol run's cross-validated held-out predictions (``model/calibration.py``)
and ``m3 export`` copies it into ``model.json``. Each species has ``a``, ``b``, ``c`` with a, b >= 0:

    q = sigmoid(a * ln(p) - b * ln(1 - p) + c)

Platt scaling is the case a = b (a linear map of the logit); beta calibration lets them differ. Both are
strictly increasing for a + b > 0, so a calibrated map ranks cells exactly as the raw one does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

#: Probabilities are clipped to [EPS, 1 - EPS] before the logarithms.
EPS = 1e-6


class CalibrationError(ValueError):
    """model.json's calibration is malformed; the message says how."""


@dataclass(frozen=True)
class SpeciesMap:
    """One species' map: q = sigmoid(a ln p - b ln(1 - p) + c)."""

    a: float
    b: float
    c: float

    def apply(self, p: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """Calibrated probabilities of ``p`` (float32; written into ``out`` when given, which may be ``p``)."""
        p = np.asarray(p, dtype=np.float32)
        nan = np.isnan(p)
        clipped = np.clip(p, EPS, 1.0 - EPS)
        z = np.log(clipped)
        z *= np.float32(self.a)
        tail = np.log1p(-clipped)
        tail *= np.float32(self.b)
        z -= tail
        z += np.float32(self.c)
        np.negative(z, out=z)
        np.exp(z, out=z)
        z += np.float32(1.0)
        target = z if out is None else out
        np.reciprocal(z, out=target)
        if nan.any():  # no prediction stays no prediction
            target[nan] = np.nan
        return target


@dataclass(frozen=True)
class Calibration:
    """The calibration of every species a model predicts, in the model's species order.

    ``unsurveyed``, when present, is the map of the cells outside the surveyed states (fitted on the
    leave-one-state-out predictions); the surveyed cells, and every cell without it, take ``maps``.
    """

    method: str
    maps: tuple[SpeciesMap, ...]
    info: dict[str, Any]
    unsurveyed: Calibration | None = None

    @classmethod
    def parse(cls, raw: dict[str, Any] | None, species: tuple[str, ...]) -> Calibration | None:
        """The calibration of a model.json (None when it has none), or CalibrationError."""
        if not raw:
            return None
        table = raw.get("species")
        if not isinstance(table, dict) or set(table) != set(species):
            have = sorted(table) if isinstance(table, dict) else table
            raise CalibrationError(f"calibration.species must map every species {list(species)}; got {have}")
        maps = []
        for name in species:
            entry = table[name]
            try:
                m = SpeciesMap(float(entry["a"]), float(entry["b"]), float(entry["c"]))
            except (KeyError, TypeError, ValueError):
                raise CalibrationError(f"calibration.species.{name} needs numbers a, b, c; got {entry!r}") from None
            if not (np.isfinite([m.a, m.b, m.c]).all() and m.a >= 0 and m.b >= 0 and m.a + m.b > 0):
                raise CalibrationError(f"calibration.species.{name}: a, b must be >= 0 with a + b > 0 (increasing) "
                                       f"and every value finite; got {entry!r}")
            maps.append(m)
        outside = cls.parse(raw["unsurveyed"], species) if raw.get("unsurveyed") else None
        info = {k: v for k, v in raw.items() if k not in ("species", "unsurveyed")}
        return cls(str(raw.get("method", "")), tuple(maps), info, outside)

    def apply(self, prob: np.ndarray, surveyed: np.ndarray | None = None) -> np.ndarray:
        """Calibrate probabilities [S, H, W] species by species, in place; returns ``prob``.

        With ``surveyed`` ([H, W] bool) and an unsurveyed map, cells outside the surveyed states take that map.
        """
        if prob.dtype != np.float32 or not prob.flags.writeable:
            prob = np.array(prob, dtype=np.float32)
        split = self.unsurveyed is not None and surveyed is not None and not surveyed.all()
        outside = ~np.asarray(surveyed, dtype=bool) if split else None
        for s, m in enumerate(self.maps):
            away = self.unsurveyed.maps[s].apply(prob[s][outside]) if self.unsurveyed and split else None
            m.apply(prob[s], out=prob[s])
            if away is not None:
                prob[s][outside] = away
        return prob
