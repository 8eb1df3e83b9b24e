"""Evaluating the model over cube arrays: one hide mask in, blended probabilities out."""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from backend.inference import device_map
from backend.inference.cube_inputs import CubeArrays, assemble_inputs, fill_species_channels
from backend.inference.device_map import DeviceMapRunner
from backend.inference.engine import InferenceEngine
from backend.inference.windows import round_up, sliding_predict

log = logging.getLogger(__name__)


def _out_of_memory(exc: BaseException) -> bool:
    """Whether an exception from onnxruntime (or numpy) says an allocation failed."""
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or "failed to allocate memory" in text or "out of memory" in text


class MapEvaluator:
    """Callable: hide mask [S, H, W] -> probabilities [S, H, W] over the arrays.

    Two ways to evaluate:

    - sliding windows (the CPU default): with ``needed`` [H, W] only windows over needed cells run and
      cells no window reached are NaN; ``margin`` cells at a window's edge are left out of the blend where
      another window reaches them (:func:`sliding_predict`);
    - ``whole=True``: the whole grid in one model call (on a GPU, where memory allows: no seams, no
      window copies; ``needed`` is not used and every cell gets a value). On a GPU the constant
      inputs stay on the device and only the hide mask travels (:class:`DeviceMapRunner`, where the
      model's channel order allows; ``resident`` forces it on or off); otherwise the input is
      written into a buffer padded to the model's multiple and kept between calls.

    The covariate channels are assembled once; each call rewrites only the species channels, with a
    small thread pool.

    ``all_hidden``: the caller uses only cells where every species is hidden (the whole-map ensemble), so
    the members' all-hidden graphs run where the model has them (``InferenceEngine.hidden_members``: a gated
    model's blind expert, the same probabilities there at half the cost); other cells get that graph's values.
    """

    def __init__(self, engine: InferenceEngine, arrays: CubeArrays, window: int = 512, overlap: int = 64,
                 batch: int = 4, needed: np.ndarray | None = None, band_rows: int = 256,
                 whole: bool = False, threads: int | None = None, resident: bool | None = None,
                 margin: int = 0, all_hidden: bool = False) -> None:
        self.engine = engine
        #: the networks the calls run, one per member (training seed)
        self.nets = engine.hidden_members if all_hidden else engine.members
        self.needed = needed
        self.band_rows = band_rows
        self.arrays = arrays
        self.window = window
        self.overlap = overlap
        self.batch = batch
        self.whole = whole
        self.margin = margin
        self.residents: list[DeviceMapRunner] = []  # one device-resident runner per member, when used
        if whole and (engine.on_gpu if resident is None else resident) and device_map.supported(engine.card):
            self.residents = [DeviceMapRunner(m, arrays) for m in self.nets]
        self.pool = ThreadPoolExecutor(max_workers=threads or min(8, os.cpu_count() or 1),
                                       thread_name_prefix="m3-inputs")
        self._inputs: np.ndarray | None = None   # [C, H, W], a view into _padded when whole
        self._padded: np.ndarray | None = None   # [1, C, Hp, Wp] for whole-map calls

    @property
    def resident(self) -> DeviceMapRunner | None:
        """The first member's device-resident runner (None: inputs are assembled on the host)."""
        return self.residents[0] if self.residents else None

    def _allocate(self, hidden: np.ndarray) -> np.ndarray:
        card = self.engine.card
        h, w = self.arrays.shape
        if self.whole:
            hp, wp = round_up(h, card.multiple), round_up(w, card.multiple)
            self._padded = np.zeros((1, len(card.channels), hp, wp), dtype=np.float32)
            return assemble_inputs(card, self.arrays, hidden, out=self._padded[0, :, :h, :w], pool=self.pool)
        return assemble_inputs(card, self.arrays, hidden, pool=self.pool)

    def __call__(self, hidden: np.ndarray, shift: int = 0, member: int = 0) -> np.ndarray:
        """Probabilities of every species of the model for one hide mask, from one of its members.

        ``member`` picks the trained network (training seed) of a model with several (modulo their number).

        ``shift`` moves the inner edges of the sliding windows (see :func:`sliding_predict`'s ``offset``);
        an ensemble passes a different one to each evaluation. The whole-grid pass has no inner edges.

        If the whole-grid pass runs out of (GPU) memory, the evaluator falls back to sliding windows
        for this and every later call, with a warning, instead of failing the job. A model with a calibration
        (model.json) returns calibrated probabilities.
        """
        calibration = self.engine.card.calibration
        prob = self._raw(hidden, shift, member % len(self.nets))
        return calibration.apply(prob, self.arrays.coverage) if calibration is not None else prob

    def _raw(self, hidden: np.ndarray, shift: int, member: int) -> np.ndarray:
        """One member's own probabilities for one hide mask (before calibration)."""
        if self.whole:
            try:
                return self._whole(hidden, member)
            except Exception as exc:  # onnxruntime raises its own Fail/RuntimeException types
                if not _out_of_memory(exc):
                    raise
                log.warning("the whole-grid pass ran out of memory (%s); falling back to sliding windows of %d "
                            "cells (set M3_GPU_WHOLE_MAP=false to start there)", str(exc).splitlines()[0][:200],
                            self.window)
                for runner in self.residents:
                    runner.close()  # give their GPU memory back before the windows need some
                self.whole, self.residents, self._inputs, self._padded = False, [], None, None
        card = self.engine.card
        inputs = self._fill(hidden)
        return sliding_predict(self.nets[member].predict, inputs, len(card.species), self.window,
                               self.overlap, card.multiple, self.batch, self.needed, self.band_rows, shift,
                               self.margin)

    def _fill(self, hidden: np.ndarray) -> np.ndarray:
        """The input [C, H, W] for this hide mask: assembled on the first call, species channels after."""
        if self._inputs is None:
            self._inputs = self._allocate(hidden)
        else:
            fill_species_channels(self.engine.card, self.arrays, hidden, self._inputs, self.pool)
        return self._inputs

    def _whole(self, hidden: np.ndarray, member: int) -> np.ndarray:
        """One model call over the whole (padded) grid."""
        if self.residents:
            return self.residents[member](hidden)
        self._fill(hidden)
        assert self._padded is not None
        h, w = self.arrays.shape
        return self.nets[member].predict(self._padded)[0, :, :h, :w]

    def close(self) -> None:
        """Stop the input threads and drop the buffers."""
        self.pool.shutdown(wait=False)
        self._inputs = self._padded = None
        for runner in self.residents:
            runner.close()
        self.residents = []
