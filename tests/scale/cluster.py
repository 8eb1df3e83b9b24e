"""A real Ray cluster of separate nodes on this machine, started and stopped by the tests.

Each node is a ``ray start --block`` process in a process group of its own, on free ports, under a temporary
directory of its own: stopping a node ends that group and every process that names the directory, and no other
Ray cluster on the machine.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

RAY = Path(sys.executable).with_name("ray")
#: Node failures are noticed within about a second (Ray's default is about 30 s).
FAST_FAILURE = {"RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "500",
                "RAY_health_check_failure_threshold": "2", "RAY_health_check_initial_delay_ms": "0"}


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports that were free a moment ago."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class Node:
    """One ``ray start --block`` process and the temporary directory its processes name."""

    name: str
    proc: subprocess.Popen
    temp_dir: Path

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """End the node's process group, then any process left that names its directory."""
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        _kill_naming(str(self.temp_dir))


def _kill_naming(text: str) -> None:
    """SIGKILL every process of this user whose command line contains ``text`` (a unique temp path)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


@dataclass
class LocalCluster:
    """A head node and worker nodes of 1 CPU each, on this machine."""

    root: Path
    address: str = ""
    nodes: list[Node] = field(default_factory=list)

    def _start(self, name: str, args: list[str]) -> Node:
        temp = self.root / name
        temp.mkdir(parents=True, exist_ok=True)
        log = (self.root / f"{name}.log").open("w")
        env = os.environ | FAST_FAILURE | {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
        ports = free_ports(8)
        cmd = [str(RAY), "start", "--block", "--num-cpus", "1", "--num-gpus", "0", "--disable-usage-stats",
               "--object-store-memory", str(200 * 2**20), "--temp-dir", str(temp),
               "--node-manager-port", str(ports[0]), "--object-manager-port", str(ports[1]),
               "--dashboard-agent-listen-port", str(ports[2]), "--dashboard-agent-grpc-port", str(ports[3]),
               "--metrics-export-port", str(ports[4]), "--runtime-env-agent-port", str(ports[5]),
               "--min-worker-port", "0", "--max-worker-port", "0", *args]
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        node = Node(name, proc, temp)
        self.nodes.append(node)
        return node

    def start_head(self) -> None:
        """The head node (GCS, no dashboard), 1 CPU."""
        port, client = free_ports(2)
        self.address = f"127.0.0.1:{port}"
        self._start("head", ["--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                             "--ray-client-server-port", str(client), "--include-dashboard", "false"])

    def add_worker(self, name: str = "worker") -> Node:
        """A worker node of 1 CPU joined to the head."""
        return self._start(name, ["--address", self.address, "--node-ip-address", "127.0.0.1"])

    def wait_for_alive(self, n: int, timeout: float = 90) -> None:
        """Block until ``n`` nodes are alive (this process is connected to the cluster as a driver)."""
        import ray

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sum(1 for node in ray.nodes() if node["Alive"]) == n:
                return
            time.sleep(0.2)
        raise TimeoutError(f"{n} Ray nodes not alive after {timeout} s\n{self.logs()}")

    def logs(self) -> str:
        """The tail of every node's log."""
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in self.root.glob("*.log"))

    def stop(self) -> None:
        """Stop every node (workers first) and remove the temporary directory."""
        for node in reversed(self.nodes):
            node.kill()
        self.nodes = []
        shutil.rmtree(self.root, ignore_errors=True)
