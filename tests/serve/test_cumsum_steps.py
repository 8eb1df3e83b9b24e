"""The steps of block_cumsums: which CumSum nodes are rewritten, and the blocked running sum of one node."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from backend.inference.device_map import _blocked_cumsum, _plain_cumsum_axis


def _graph() -> onnx.GraphProto:
    """A graph holding the axis constants 2 (a Constant node) and 3 (an initializer)."""
    nodes = [helper.make_node("Constant", [], ["a2"], value=numpy_helper.from_array(np.array(2, dtype=np.int64)))]
    return helper.make_graph(nodes, "g", [], [], initializer=[numpy_helper.from_array(np.array(3, np.int64), "a3")])


def test_only_inclusive_forward_cumsums_with_a_constant_axis_are_rewritten() -> None:
    graph = _graph()
    assert _plain_cumsum_axis(graph, helper.make_node("CumSum", ["x", "a2"], ["y"])) == 2
    assert _plain_cumsum_axis(graph, helper.make_node("CumSum", ["x", "a3"], ["y"])) == 3
    assert _plain_cumsum_axis(graph, helper.make_node("CumSum", ["x", "a3"], ["y"], exclusive=1)) is None
    assert _plain_cumsum_axis(graph, helper.make_node("CumSum", ["x", "a3"], ["y"], reverse=1)) is None
    assert _plain_cumsum_axis(graph, helper.make_node("CumSum", ["x", "unknown"], ["y"])) is None
    assert _plain_cumsum_axis(graph, helper.make_node("Add", ["x", "a3"], ["y"])) is None


@pytest.mark.parametrize("axis", [2, 3])
def test_blocked_cumsum_nodes_give_the_running_sum(axis: int) -> None:
    dims = ["N", "C", "H", "W"]
    graph = helper.make_graph([], "blocked", [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, dims)])
    nodes = _blocked_cumsum(graph, "x", "y", axis, 5, "t_")
    graph.node.extend(nodes)
    assert all(i.name.startswith("t_") for i in graph.initializer)
    assert [n.op_type for n in nodes].count("CumSum") == 2 and nodes[-1].output == ["y"]
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(axis).random((2, 3, 12, 7)).astype(np.float32)
    (y,) = session.run(None, {"x": x})
    np.testing.assert_allclose(y, np.cumsum(x, axis=axis), rtol=1e-6, atol=1e-5)
