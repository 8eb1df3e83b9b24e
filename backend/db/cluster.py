"""The project-local PostgreSQL + PostGIS cluster that `m3 db start` runs.

The cluster lives under ``<state_dir>/pg`` (git-ignored), listens on 127.0.0.1 only, trusts local
connections, and has the superuser ``m3`` and the database ``m3``. Started as root, every server
command runs as the ``postgres`` user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import hashlib
import logging
import os
import pwd
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from backend.settings import Settings

log = logging.getLogger(__name__)

DB_NAME = "m3"
DB_USER = "m3"
FIRST_ALTERNATIVE_PORT = 54320
APT_HINT = "apt-get install -y postgresql postgresql-15-postgis-3"


class ClusterError(RuntimeError):
    """The local cluster could not be set up, started or reached."""


def _postgres_versions() -> list[Path]:
    """Binary folders of the installed PostgreSQL server versions, newest first."""
    found = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()]
    found.sort(key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        found.append(Path(initdb).parent)
    return found


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """True when nothing listens on host:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def choose_port(preferred: int | None) -> int:
    """The preferred port, else 5432 when free, else the first free port from 54320."""
    if preferred is not None:
        return preferred
    if port_is_free(5432):
        return 5432
    for port in range(FIRST_ALTERNATIVE_PORT, FIRST_ALTERNATIVE_PORT + 100):
        if port_is_free(port):
            return port
    raise ClusterError("no free port in 54320-54419 for the local PostgreSQL cluster; set M3_DB_PORT")


@dataclass
class LocalCluster:
    """A PostgreSQL cluster in a project folder."""

    root: Path
    preferred_port: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> LocalCluster:
        """The cluster configured by the settings."""
        return cls(root=settings.local_cluster_dir, preferred_port=settings.db_port)

    # -- paths and facts -------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        """PGDATA (possibly through a link when the project folder is closed to the postgres user)."""
        return self.root / "data"

    @property
    def port_file(self) -> Path:
        """Where the chosen port is remembered."""
        return self.root / "port"

    @property
    def log_file(self) -> Path:
        """The server log (inside PGDATA, so the postgres user can always write it)."""
        return self.data_dir / "server.log"

    @property
    def port(self) -> int:
        """The port the cluster uses (remembered, else chosen now)."""
        if self.preferred_port is not None:
            return self.preferred_port
        if self.port_file.exists():
            return int(self.port_file.read_text().strip())
        return choose_port(None)

    def url(self) -> str:
        """SQLAlchemy URL of the cluster's database."""
        return f"postgresql+psycopg://{DB_USER}@127.0.0.1:{self.port}/{DB_NAME}"

    def bindir(self) -> Path:
        """The newest installed server's binaries, or a clear error with the install command."""
        versions = _postgres_versions()
        if not versions:
            raise ClusterError(f"PostgreSQL server binaries (initdb, pg_ctl) not found; install them: {APT_HINT}")
        return versions[0]

    def check_postgis(self) -> None:
        """Fail early, with the install command, when PostGIS is missing for that server."""
        bindir = self.bindir()
        version = bindir.parent.name
        share = Path("/usr/share/postgresql") / version / "extension"
        if share.exists() and not list(share.glob("postgis.control")):
            raise ClusterError(
                f"PostGIS is not installed for PostgreSQL {version}; install it: "
                f"apt-get install -y postgresql-{version}-postgis-3"
            )

    # -- running commands as the right user --------------------------------------------------------
    @staticmethod
    def _as_root() -> bool:
        return os.geteuid() == 0

    def _run(self, args: list[str | Path], check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a server command, as the postgres user when we are root."""
        cmd = [str(a) for a in args]
        if self._as_root():
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd="/")
        if check and proc.returncode != 0:
            detail = proc.stderr.strip() or proc.stdout.strip()
            raise ClusterError(f"{' '.join(cmd)} failed ({proc.returncode}): {detail}")
        return proc

    def _prepare_dirs(self) -> None:
        """Create the cluster folder; as root, hand it to postgres (relocating if postgres can't reach it)."""
        self.root.mkdir(parents=True, exist_ok=True)
        if not self._as_root():
            return
        try:
            pg = pwd.getpwnam("postgres")
        except KeyError as exc:
            raise ClusterError(
                f"running as root but there is no 'postgres' user; install the server: {APT_HINT}"
            ) from exc
        if self.data_dir.is_symlink() or self.data_dir.exists():
            return
        reachable = subprocess.run(
            ["runuser", "-u", "postgres", "--", "test", "-x", str(self.root)], capture_output=True
        ).returncode == 0
        if reachable:
            self.data_dir.mkdir()
            os.chown(self.data_dir, pg.pw_uid, pg.pw_gid)
            os.chmod(self.data_dir, 0o700)
        else:
            digest = hashlib.sha1(str(self.root.resolve()).encode()).hexdigest()[:12]
            target = Path("/var/tmp") / f"m3-pg-{digest}"
            target.mkdir(parents=True, exist_ok=True)
            os.chown(target, pg.pw_uid, pg.pw_gid)
            os.chmod(target, 0o700)
            self.data_dir.symlink_to(target)
            log.warning("the postgres user cannot reach %s; cluster data lives in %s (linked)", self.root, target)

    # -- lifecycle ---------------------------------------------------------------------------------
    def initialised(self) -> bool:
        """True when PGDATA holds a cluster."""
        return (self.data_dir / "PG_VERSION").exists()

    def running(self) -> bool:
        """True when the cluster's postmaster is alive."""
        if not self.initialised():
            return False
        status = self._run([self.bindir() / "pg_ctl", "status", "-D", self.data_dir.resolve()], check=False)
        return status.returncode == 0

    def init(self) -> None:
        """Run initdb with trust auth and the m3 superuser."""
        self.check_postgis()
        self._prepare_dirs()
        if self.initialised():
            return
        log.info("initialising a PostgreSQL cluster in %s", self.data_dir)
        self._run([
            self.bindir() / "initdb", "-D", self.data_dir.resolve(), "-U", DB_USER, "--auth=trust",
            "-E", "UTF8", "--locale=C.UTF-8",
        ])

    def start(self) -> int:
        """Start (initialising first if needed) and return the port; idempotent."""
        self.init()
        if self.running():
            return self.port
        port = self.port
        if not port_is_free(port):
            if self.preferred_port is not None:
                raise ClusterError(f"port {port} (M3_DB_PORT) is taken by another program")
            port = choose_port(None)
        self.port_file.write_text(f"{port}\n")
        opts = f"-p {port} -c listen_addresses=127.0.0.1 -c unix_socket_directories='' -c max_connections=200"
        log.info("starting PostgreSQL on 127.0.0.1:%d", port)
        self._run([
            self.bindir() / "pg_ctl", "start", "-w", "-t", "60", "-D", self.data_dir.resolve(),
            "-l", self.log_file.resolve(), "-o", opts,
        ])
        self.ensure_database()
        return port

    def stop(self) -> bool:
        """Stop the cluster (fast shutdown); False when it was not running."""
        if not self.running():
            return False
        self._run([self.bindir() / "pg_ctl", "stop", "-w", "-m", "fast", "-D", self.data_dir.resolve()])
        return True

    def ensure_database(self) -> None:
        """Create the m3 database and the PostGIS extension when missing."""
        import psycopg

        base = f"host=127.0.0.1 port={self.port} user={DB_USER}"
        with psycopg.connect(f"{base} dbname=postgres", autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DB_NAME,)).fetchone()
            if not exists:
                conn.execute(f'CREATE DATABASE "{DB_NAME}"')
        with psycopg.connect(f"{base} dbname={DB_NAME}", autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS postgis")
