"""A seeded ONNX model with spatial context for the scale tests and bench/ray_ensemble.py.

Stacked k x k convolutions (ReLU between, sigmoid at the end) over the channels of the tiny model of
``serve.synthetic``: a cell's output depends on what is hidden around it, and ``width`` and ``layers`` set
the cost of an evaluation.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from serve.synthetic import COVARIATES, SPECIES, tiny_channels, write_tiny_model


def write_context_model(folder: Path, width: int = 8, layers: int = 2, kernel: int = 5, seed: int = 0) -> Path:
    """Write model.onnx (``layers`` convolutions of ``kernel`` cells, ``width`` channels) and its model.json."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    write_tiny_model(folder, SPECIES, COVARIATES, seed=seed)  # the card; its ONNX file is replaced
    rng = np.random.default_rng(seed)
    n_in, n_out = len(tiny_channels()), len(SPECIES)
    sizes = [n_in] + [width] * (layers - 1) + [n_out]
    nodes = [helper.make_node("IsNaN", ["x"], ["isnan"]), helper.make_node("Where", ["isnan", "zero", "x"], ["h0"])]
    init = [numpy_helper.from_array(np.zeros((), dtype=np.float32), "zero")]
    for i in range(layers):
        w = rng.standard_normal((sizes[i + 1], sizes[i], kernel, kernel)) / np.sqrt(sizes[i] * kernel * kernel)
        init += [numpy_helper.from_array((2 * w).astype(np.float32), f"W{i}"),
                 numpy_helper.from_array((0.1 * rng.standard_normal(sizes[i + 1]) - 0.5).astype(np.float32), f"B{i}")]
        out = f"c{i}" if i < layers - 1 else "logit"
        nodes.append(helper.make_node("Conv", [f"h{i}", f"W{i}", f"B{i}"], [out], pads=[kernel // 2] * 4))
        if i < layers - 1:
            nodes.append(helper.make_node("Relu", [out], [f"h{i + 1}"]))
    nodes.append(helper.make_node("Sigmoid", ["logit"], ["prob"]))
    graph = helper.make_graph(
        nodes, "m3_context",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", n_in, "H", "W"])],
        [helper.make_tensor_value_info("prob", TensorProto.FLOAT, ["N", n_out, "H", "W"])], initializer=init)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="m3-tests")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, folder / "model.onnx")
    card = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    card["sha256"] = hashlib.sha256((folder / "model.onnx").read_bytes()).hexdigest()
    (folder / "model.json").write_text(json.dumps(card, indent=2), encoding="utf-8")
    return folder
