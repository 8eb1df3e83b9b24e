"""block_cumsums: the blocked running sums that replace CumSum in the GPU whole-grid graph give the same sums."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from backend.inference.contract import load_model_card
from backend.inference.device_map import _PREFIX, block_cumsums, wrap_model

ROOT = Path(__file__).resolve().parents[2]


def cumsum_model() -> onnx.ModelProto:
    """y2 = cumsum(x, axis 2), y3 = cumsum(x, axis 3), y3x = exclusive cumsum(x, axis 3) (left alone)."""
    nodes = [
        helper.make_node("Constant", [], ["a2"], value=numpy_helper.from_array(np.array(2, dtype=np.int64))),
        helper.make_node("CumSum", ["x", "a2"], ["y2"]),
        helper.make_node("CumSum", ["x", "a3"], ["y3"]),
        helper.make_node("CumSum", ["x", "a3"], ["y3x"], exclusive=1),
    ]
    dims = ["N", "C", "H", "W"]
    graph = helper.make_graph(
        nodes, "cumsums", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info(n, TensorProto.FLOAT, dims) for n in ("y2", "y3", "y3x")],
        initializer=[numpy_helper.from_array(np.array(3, dtype=np.int64), "a3")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


@pytest.mark.parametrize("shape", [(1, 2, 13, 29), (2, 3, 4, 4), (1, 1, 3, 2), (1, 2, 32, 17)])
def test_blocked_cumsum_equals_cumsum(shape: tuple[int, ...]) -> None:
    model = cumsum_model()
    assert block_cumsums(model.graph, block=4) == 2  # the exclusive one is left as it is
    onnx.checker.check_model(model)
    assert sum(n.op_type == "CumSum" for n in model.graph.node) == 2 * 2 + 1
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).random(shape).astype(np.float32)
    y2, y3, y3x = session.run(None, {"x": x})
    np.testing.assert_allclose(y2, np.cumsum(x, axis=2), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(y3, np.cumsum(x, axis=3), rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(y3x, np.cumsum(x, axis=3) - x, rtol=1e-6, atol=1e-5)
    ones = np.ones(shape, dtype=np.float32)  # integer sums stay exact
    y2, y3, _ = session.run(None, {"x": ones})
    assert np.array_equal(y3, np.cumsum(ones, axis=3)) and np.array_equal(y2, np.cumsum(ones, axis=2))


def test_wrapped_demo_model_matches_the_export() -> None:
    """The demo model with the device inputs and blocked CumSums gives the exported model's probabilities."""
    card = load_model_card(ROOT / "runs" / "demo")
    n_sp, n_ch = len(card.species), len(card.channels)
    rng = np.random.default_rng(1)
    h, w = 48, 64
    labels = (rng.random((1, n_sp, h, w)) < 0.1).astype(np.uint8)
    hidden = (rng.random((1, n_sp, h, w)) < 0.5).astype(np.uint8)
    rest = rng.standard_normal((1, n_ch - 2 * n_sp, h, w)).astype(np.float32)
    rest[:, :, :5, :7] = np.nan
    x = np.concatenate([labels * (1 - hidden), hidden, rest], axis=1).astype(np.float32)
    plain = ort.InferenceSession(str(card.onnx_path), providers=["CPUExecutionProvider"])
    wrapped_bytes = wrap_model(card.onnx_path.read_bytes(), card, cumsum_block=16)
    sums = [n for n in onnx.load_from_string(wrapped_bytes).graph.node if n.op_type == "CumSum"]
    assert sums and all(n.output[0].startswith(_PREFIX) for n in sums)  # every export CumSum was replaced
    wrapped = ort.InferenceSession(wrapped_bytes, providers=["CPUExecutionProvider"])
    expected = plain.run([card.output_name], {card.input_name: x})[0]
    got = wrapped.run([card.output_name], {_PREFIX + "hidden": hidden, _PREFIX + "labels": labels,
                                           _PREFIX + "rest": rest})[0]
    assert got.shape == expected.shape == (1, n_sp, h, w)
    np.testing.assert_allclose(got, expected, atol=1e-5)
