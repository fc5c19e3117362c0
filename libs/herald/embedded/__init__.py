"""Private PostgreSQL and Kafka-protocol broker for `herald dev` and the test suite.

Both are real servers on loopback ports (facts in shared INFRA.md); production points
HERALD_DATABASE_URL and HERALD_KAFKA_BOOTSTRAP at real ones instead.
"""

from __future__ import annotations

import socket


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
