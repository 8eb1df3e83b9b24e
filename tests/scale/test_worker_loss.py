"""A worker node lost in the middle of the ensemble on Ray: the run completes with the same layers."""

from __future__ import annotations

import pytest

from .ensembles import assert_same_layers, ray_ensemble

pytest.importorskip("ray", reason="Ray is not installed (the scale extra: pip install -e '.[scale]')")


def test_a_worker_node_lost_mid_run_changes_nothing(two_nodes, shared, local):
    worker = next(n for n in two_nodes.nodes if n.name.startswith("worker") and n.proc.poll() is None)
    seen: list[int] = []

    def kill_worker_once(done: int, total: int) -> None:
        """Kill the worker node (every process of it) when the first round is folded."""
        if not seen:
            worker.kill()
        seen.append(done)

    on_ray, stats = ray_ensemble(shared, progress=kill_worker_once)
    assert seen[0] < seen[-1] == on_ray.evaluations, "the node was lost with rounds still to do"
    assert_same_layers(local, on_ray)
    two_nodes.wait_for_alive(1)
