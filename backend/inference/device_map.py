"""Whole-grid evaluations with the constant inputs resident on the GPU.

A whole-map pass feeds the model [1, C, H, W] float32: over CONUS 30 channels of 1848 x 2912 cells,
650 MB per evaluation, of which only the hide mask changes between the evaluations of an ensemble.
:class:`DeviceMapRunner` wraps the exported graph (without changing it) in a few leading nodes:

    hidden (uint8 [1, S, H, W], per evaluation)  ->  Cast                   -> hidden channels
    labels (uint8 [1, S, H, W], constant)        ->  Cast * (1 - hidden)     -> visible channels
    rest   (float32 [1, C - 2S, H, W], constant) ->  Concat(visible, hidden, rest) -> x -> the model

``labels`` and ``rest`` are copied to the device once (onnxruntime I/O binding); each evaluation
sends 54 MB of hide mask instead of 650 MB. This needs the card's channel order to be the export's
``visible:<species>...``, ``hidden:<species>...``, then covariates and validity; other orders fall
back to the plain padded-buffer pass. It runs on the CPU provider too (the tests compare both).
"""

from __future__ import annotations

import logging

import numpy as np

from backend.inference.contract import ModelCard
from backend.inference.cube_inputs import CubeArrays, assemble_inputs
from backend.inference.engine import InferenceEngine
from backend.inference.windows import round_up

log = logging.getLogger(__name__)

_PREFIX = "m3_device_map_"


def supported(card: ModelCard) -> bool:
    """Whether the card's channels are ``visible:*``, then ``hidden:*`` (both in species order), then the rest."""
    n = len(card.species)
    kinds = [(c.kind, c.name) for c in card.channels]
    return (kinds[:n] == [("visible", s) for s in card.species]
            and kinds[n:2 * n] == [("hidden", s) for s in card.species]
            and all(k in ("cov", "valid") for k, _ in kinds[2 * n:]))


def wrap_model(model_bytes: bytes, card: ModelCard) -> bytes:
    """The exported graph with inputs (hidden uint8, labels uint8, rest float32) in place of ``x``."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    x_name = card.input_name
    n_sp, n_rest = len(card.species), len(card.channels) - 2 * len(card.species)
    names = {k: _PREFIX + k for k in ("hidden", "labels", "rest", "hidden_f", "labels_f", "shown", "visible",
                                      "one")}
    inputs = [helper.make_tensor_value_info(names["hidden"], TensorProto.UINT8, [1, n_sp, "H", "W"]),
              helper.make_tensor_value_info(names["labels"], TensorProto.UINT8, [1, n_sp, "H", "W"]),
              helper.make_tensor_value_info(names["rest"], TensorProto.FLOAT, [1, n_rest, "H", "W"])]
    nodes = [
        helper.make_node("Cast", [names["hidden"]], [names["hidden_f"]], to=TensorProto.FLOAT),
        helper.make_node("Cast", [names["labels"]], [names["labels_f"]], to=TensorProto.FLOAT),
        helper.make_node("Sub", [names["one"], names["hidden_f"]], [names["shown"]]),
        helper.make_node("Mul", [names["labels_f"], names["shown"]], [names["visible"]]),
        helper.make_node("Concat", [names["visible"], names["hidden_f"], names["rest"]], [x_name], axis=1),
    ]
    kept = [i for i in graph.input if i.name != x_name]
    del graph.input[:]
    graph.input.extend(inputs + kept)
    old = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + old)
    graph.initializer.append(onnx.numpy_helper.from_array(np.ones((), dtype=np.float32), names["one"]))
    return model.SerializeToString()


class DeviceMapRunner:
    """Callable: hide mask [S, H, W] (bool) -> probabilities [S, H, W], one model call over the whole grid."""

    def __init__(self, engine: InferenceEngine, arrays: CubeArrays) -> None:
        import onnxruntime as ort

        card = engine.card
        if not supported(card):
            raise ValueError(f"model {card.name}: channel order not supported by the device-resident pass")
        self.card = card
        h, w = self.shape = arrays.shape
        self.padded = hp, wp = round_up(h, card.multiple), round_up(w, card.multiple)
        n_sp = len(card.species)
        cube_index = [arrays.species.index(s) for s in card.species]
        labels = np.zeros((1, n_sp, hp, wp), dtype=np.uint8)
        labels[0, :, :h, :w] = arrays.labels[cube_index] > 0
        full = np.zeros((len(card.channels), h, w), dtype=np.float32)
        assemble_inputs(card, arrays, np.zeros((n_sp, h, w), dtype=bool), out=full)
        rest = np.zeros((1, len(card.channels) - 2 * n_sp, hp, wp), dtype=np.float32)
        rest[0, :, :h, :w] = full[2 * n_sp:]
        del full
        session = engine.session
        wrapped = wrap_model(card.onnx_path.read_bytes(), card)
        self.session = ort.InferenceSession(wrapped, sess_options=engine.options, providers=session.get_providers(),
                                            provider_options=[session.get_provider_options()[p]
                                                              for p in session.get_providers()])
        self.device = "cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        # constant inputs: copied to the device once, bound for every run
        self._labels = ort.OrtValue.ortvalue_from_numpy(labels, self.device, 0)
        self._rest = ort.OrtValue.ortvalue_from_numpy(rest, self.device, 0)
        self._hidden = np.zeros((1, n_sp, hp, wp), dtype=np.uint8)
        self._binding = self.session.io_binding()
        self._binding.bind_ortvalue_input(_PREFIX + "labels", self._labels)
        self._binding.bind_ortvalue_input(_PREFIX + "rest", self._rest)
        self._binding.bind_output(card.output_name, "cpu")
        log.info("device-resident whole-grid pass on %s: %d x %d cells, %.0f MB of constant inputs",
                 self.device, hp, wp, (labels.nbytes + rest.nbytes) / 1e6)

    def __call__(self, hidden: np.ndarray) -> np.ndarray:
        """Probabilities of every species of the model for one hide mask (cells of the grid, unpadded)."""
        h, w = self.shape
        np.copyto(self._hidden[0, :, :h, :w], hidden, casting="unsafe")
        self._binding.bind_cpu_input(_PREFIX + "hidden", self._hidden)  # copies to the device now
        self.session.run_with_iobinding(self._binding)
        out = self._binding.copy_outputs_to_cpu()[0]
        return np.asarray(out, dtype=np.float32)[0, :, :h, :w]
