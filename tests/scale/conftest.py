"""A two-node Ray cluster (a head and a worker, 1 CPU each) for the scale tests; those tests skip without Ray."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from .cluster import LocalCluster

# The test clusters live on this machine for a minute: no token (Ray would otherwise write one to ~/.ray for the
# first local cluster and ask every later driver for it). The drivers the tests start inherit this.
os.environ["RAY_AUTH_MODE"] = "disabled"


@pytest.fixture(scope="package")
def ray_cluster() -> Iterator[LocalCluster]:
    """A head node and a worker node, started for these tests and stopped after them (and this driver with them)."""
    pytest.importorskip("ray", reason="Ray is not installed (the scale extra: pip install -e '.[scale]')")
    cluster = LocalCluster(Path(tempfile.mkdtemp(prefix="m3-ray-")))
    try:
        cluster.start_head()
        cluster.add_worker()
        yield cluster
    finally:
        import ray

        ray.shutdown()
        cluster.stop()


@pytest.fixture
def two_nodes(ray_cluster: LocalCluster) -> Iterator[LocalCluster]:
    """The cluster with both nodes alive (a worker lost by an earlier test is replaced), and this process its driver."""
    import ray

    if not ray.is_initialized():
        ray.init(address=ray_cluster.address, logging_level="ERROR", log_to_driver=False)
    if not any(n.name.startswith("worker") and n.proc.poll() is None for n in ray_cluster.nodes):
        ray_cluster.add_worker(f"worker{len(ray_cluster.nodes)}")
    ray_cluster.wait_for_alive(2)
    yield ray_cluster


@pytest.fixture(scope="package")
def shared(tmp_path_factory):  # noqa: ANN201 (Settings)
    """A synthetic cube and a model on a path every node reads, and the settings of an ensemble over them."""
    from .ensembles import write_shared

    return write_shared(tmp_path_factory.mktemp("shared"))


@pytest.fixture(scope="package")
def local(shared):  # noqa: ANN001, ANN201 (Settings -> EnsembleResult)
    """The local path's result, computed once."""
    from .ensembles import local_ensemble

    return local_ensemble(shared)
