import socket

import psycopg
import pytest

from backend.db.cluster import LocalCluster, choose_port, port_is_free


def test_choose_port_moves_off_a_taken_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        taken = s.getsockname()[1]
        assert not port_is_free(taken)
        assert choose_port(taken) == taken  # an explicit setting is respected
        port = choose_port(None)
        assert port != taken and port_is_free(port)


@pytest.mark.slow
def test_local_cluster_lifecycle(tmp_path):
    """A second, throw-away cluster: init, start on a free port, PostGIS, restart, stop."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cluster = LocalCluster(root=tmp_path / "pg", preferred_port=port)
    try:
        assert cluster.start() == port
        assert cluster.running()
        dsn = f"host=127.0.0.1 port={port} user=m3 dbname=m3"
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT extname FROM pg_extension WHERE extname='postgis'").fetchone()
        assert cluster.start() == port  # idempotent
        assert cluster.stop() is True
        assert not cluster.running()
        assert cluster.start() == port  # restart keeps the data
        with psycopg.connect(dsn) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        cluster.stop()
