"""Evaluating the model over cube arrays: one hide mask in, blended probabilities out."""

from __future__ import annotations

import numpy as np

from backend.inference.cube_inputs import CubeArrays, assemble_inputs, fill_species_channels
from backend.inference.engine import InferenceEngine
from backend.inference.windows import sliding_predict


class MapEvaluator:
    """Callable: hide mask [S, H, W] -> probabilities [S, H, W] over the arrays, in sliding windows.

    With ``needed`` [H, W] only windows over needed cells run; cells no window reached are NaN.
    """

    def __init__(self, engine: InferenceEngine, arrays: CubeArrays, window: int = 512, overlap: int = 64,
                 batch: int = 4, needed: np.ndarray | None = None, band_rows: int = 256) -> None:
        self.engine = engine
        self.needed = needed
        self.band_rows = band_rows
        self.arrays = arrays
        self.window = window
        self.overlap = overlap
        self.batch = batch
        self._inputs: np.ndarray | None = None

    def __call__(self, hidden: np.ndarray) -> np.ndarray:
        """Probabilities of every species of the model for one hide mask.

        The covariate channels are assembled once; later calls rewrite only the species channels.
        """
        card = self.engine.card
        if self._inputs is None:
            self._inputs = assemble_inputs(card, self.arrays, hidden)
        else:
            fill_species_channels(card, self.arrays, hidden, self._inputs)
        x = self._inputs
        return sliding_predict(self.engine.predict, x, len(card.species), self.window, self.overlap,
                               card.multiple, self.batch, self.needed, self.band_rows)
