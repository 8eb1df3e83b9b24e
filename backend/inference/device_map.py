"""Whole-grid evaluations with the constant inputs resident on the GPU.

A whole-map pass feeds the model [1, C, H, W] float32: over CONUS 30 channels of 1848 x 2912 cells,
650 MB per evaluation, of which only the hide mask changes between the evaluations of an ensemble.
:class:`DeviceMapRunner` wraps the exported graph in a few leading nodes:

    hidden (uint8 [1, S, H, W], per evaluation)  ->  Cast                   -> hidden channels
    labels (uint8 [1, S, H, W], constant)        ->  Cast * (1 - hidden)     -> visible channels
    rest   (float32 [1, C - 2S, H, W], constant) ->  Concat(visible, hidden, rest) -> x -> the model

``labels`` and ``rest`` are copied to the device once (onnxruntime I/O binding); each evaluation
sends 54 MB of hide mask instead of 650 MB. The graph's CumSum nodes are also rewritten as blocked
running sums (:func:`block_cumsums`), since onnxruntime's CUDA CumSum is quadratic along a line; the
wrapped graph lives in memory only (``model.onnx`` is not touched). This needs the card's channel
order to be the export's ``visible:<species>...``, ``hidden:<species>...``, then covariates and
validity; other orders fall back to the plain padded-buffer pass. It runs on the CPU provider too
(the tests compare both).
"""

from __future__ import annotations

import logging

import numpy as np

from backend.cube.contract import unknown_cells, unsurveyed_mode
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
            and all(k in ("cov", "valid", "surveyed") for k, _ in kinds[2 * n:]))


def _constant_int(graph, name: str) -> int | None:
    """The scalar integer value of ``name`` if a Constant node or an initializer holds it."""
    from onnx import numpy_helper

    for init in graph.initializer:
        if init.name == name:
            return int(numpy_helper.to_array(init).reshape(-1)[0])
    for node in graph.node:
        if node.op_type == "Constant" and node.output[0] == name:
            for attr in node.attribute:
                if attr.name == "value":
                    return int(numpy_helper.to_array(attr.t).reshape(-1)[0])
    return None


def block_cumsums(graph, block: int = 16) -> int:
    """Rewrite every CumSum along axis 2 or 3 of a 4-D tensor as a two-level (blocked) running sum.

    onnxruntime's CUDA CumSum kernel sums, for each output element, every input element before it
    (O(L) work per element, O(L^2) per line): over the whole grid the stem's summed-area box filters
    (lines of 1,900 to 3,000 cells) dominate a GPU evaluation. Here each line is zero-padded to a
    multiple of ``block``, reshaped into blocks, summed within blocks (length ``block``), and the
    block totals are summed with an exclusive CumSum over L / ``block`` blocks and added back: about
    block / 2 + L / (2 block²) additions per element instead of L / 2. The result is the same running
    sum (exactly so for the integer-valued sums of 0/1 layers). Returns how many nodes were rewritten.
    """
    rewritten = 0
    new_nodes = []
    for node in graph.node:
        axis = _plain_cumsum_axis(graph, node)
        if axis not in (2, 3):
            new_nodes.append(node)
            continue
        new_nodes += _blocked_cumsum(graph, node.input[0], node.output[0], axis, block,
                                     f"{_PREFIX}cumsum{rewritten}_")
        rewritten += 1
    used = {i for n in new_nodes for i in n.input} | {o.name for o in graph.output}
    del graph.node[:]
    graph.node.extend(n for n in new_nodes if n.op_type != "Constant" or n.output[0] in used)
    return rewritten


def _plain_cumsum_axis(graph, node) -> int | None:
    """The constant axis of an inclusive, forward CumSum node (None for any other node)."""
    from onnx import helper

    if node.op_type != "CumSum":
        return None
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    if attrs.get("exclusive", 0) or attrs.get("reverse", 0):
        return None
    return _constant_int(graph, node.input[1])


def _blocked_cumsum(graph, x: str, y: str, axis: int, block: int, p: str) -> list:
    """Nodes computing ``y`` = CumSum(``x``, ``axis``) by blocks of ``block``; names and constants prefixed ``p``."""
    from onnx import helper, numpy_helper

    def const(name: str, values: list[int]) -> str:
        graph.initializer.append(numpy_helper.from_array(np.asarray(values, dtype=np.int64), p + name))
        return p + name

    b = const("block", [block])
    nodes = [
        helper.make_node("Shape", [x], [p + "shape"]),
        helper.make_node("Gather", [p + "shape", const("axis_index", [axis])], [p + "length"], axis=0),
        helper.make_node("Mod", [p + "length", b], [p + "rem"]),
        helper.make_node("Sub", [b, p + "rem"], [p + "missing"]),
        helper.make_node("Mod", [p + "missing", b], [p + "padlen"]),
        helper.make_node("Concat", [const("zeros_before", [0] * (4 + axis)), p + "padlen",
                                    const("zeros_after", [0] * (3 - axis))], [p + "pads"], axis=0),
        helper.make_node("Pad", [x, p + "pads"], [p + "padded"], mode="constant"),
        helper.make_node("Add", [p + "length", p + "padlen"], [p + "padded_length"]),
        helper.make_node("Div", [p + "padded_length", b], [p + "blocks"]),
        helper.make_node("Gather", [p + "shape", const("lead_index", [0, 1, 2, 3][:axis])], [p + "lead"], axis=0),
    ]
    tail = [] if axis == 3 else [p + "tail"]
    if tail:
        nodes.append(helper.make_node("Gather", [p + "shape", const("tail_index", [3])], tail, axis=0))
    nodes += [
        helper.make_node("Concat", [p + "lead", p + "blocks", b, *tail], [p + "shape5"], axis=0),
        helper.make_node("Concat", [p + "lead", p + "padded_length", *tail], [p + "shape4"], axis=0),
        helper.make_node("Reshape", [p + "padded", p + "shape5"], [p + "blocked"]),
        helper.make_node("CumSum", [p + "blocked", const("inner_axis", [axis + 1])], [p + "inner"]),
        helper.make_node("Slice", [p + "inner", const("last_start", [block - 1]), b, const("inner_axes", [axis + 1])],
                         [p + "totals"]),
        helper.make_node("CumSum", [p + "totals", const("outer_axis", [axis])], [p + "offsets"], exclusive=1),
        helper.make_node("Add", [p + "inner", p + "offsets"], [p + "summed"]),
        helper.make_node("Reshape", [p + "summed", p + "shape4"], [p + "unblocked"]),
        helper.make_node("Slice", [p + "unblocked", const("start", [0]), p + "length", const("axes", [axis])], [y]),
    ]
    return nodes


def wrap_model(model_bytes: bytes, card: ModelCard, cumsum_block: int = 16) -> bytes:
    """The exported graph with inputs (hidden uint8, labels uint8, rest float32) in place of ``x``.

    With ``cumsum_block`` > 0 its CumSum nodes are also rewritten by :func:`block_cumsums`.
    """
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load_from_string(model_bytes)
    graph = model.graph
    if cumsum_block > 0:
        n = block_cumsums(graph, cumsum_block)
        log.info("%d CumSum nodes rewritten as blocked running sums (block %d)", n, cumsum_block)
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
    """Callable: hide mask [S, H, W] (bool) -> probabilities [S, H, W], one model call over the whole grid.

    ``cumsum_block`` is the block length of the CumSum rewrite (0 keeps the export's CumSum nodes).
    """

    def __init__(self, engine: InferenceEngine, arrays: CubeArrays, cumsum_block: int = 16) -> None:
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
        wrapped = wrap_model(engine.path.read_bytes(), card, cumsum_block)
        self.session = ort.InferenceSession(wrapped, sess_options=engine.options, providers=session.get_providers(),
                                            provider_options=[session.get_provider_options()[p]
                                                              for p in session.get_providers()])
        self.device = "cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        # constant inputs: copied to the device once, bound for every run
        self._labels = ort.OrtValue.ortvalue_from_numpy(labels, self.device, 0)
        self._rest = ort.OrtValue.ortvalue_from_numpy(rest, self.device, 0)
        self._hidden = np.zeros((1, n_sp, hp, wp), dtype=np.uint8)
        # a model that reads unsurveyed cells as unknown has them hidden in every evaluation
        self._unknown = np.stack([unknown_cells(arrays, s) for s in card.species]) \
            if unsurveyed_mode(card) == "unknown" else None
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
        if self._unknown is not None:
            self._hidden[0, :, :h, :w] |= self._unknown
        self._binding.bind_cpu_input(_PREFIX + "hidden", self._hidden)  # copies to the device now
        self.session.run_with_iobinding(self._binding)
        out = self._binding.copy_outputs_to_cpu()[0]
        return np.asarray(out, dtype=np.float32)[0, :, :h, :w]

    def close(self) -> None:
        """Release the onnxruntime session and the device copies of the inputs (the GPU memory they hold)."""
        self._binding = self.session = self._labels = self._rest = None
