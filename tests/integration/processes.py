"""Herald processes as real OS processes (for tests that kill them), configured like the harness."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from herald_cli.settings import Settings


def env_for(settings: Settings, **overrides: str) -> dict[str, str]:
    k, w = settings.kafka, settings.worker
    env = {
        **os.environ,
        "HERALD_ENVIRONMENT": settings.environment,
        "HERALD_DATABASE_URL": settings.database.url,
        "HERALD_KAFKA_BOOTSTRAP": k.bootstrap,
        "HERALD_KAFKA_TOPIC_PREFIX": k.topic_prefix,
        "HERALD_KAFKA_SESSION_TIMEOUT_MS": str(k.session_timeout_ms),
        "HERALD_KAFKA_HEARTBEAT_INTERVAL_MS": str(k.heartbeat_interval_ms),
        "HERALD_KAFKA_FETCH_MAX_WAIT_MS": str(k.fetch_max_wait_ms),
        "HERALD_WORKER_PROVIDER_URL": w.provider_url,
        "HERALD_WORKER_PROVIDER_ATTEMPTS": str(w.provider_attempts),
        "HERALD_LOG_LEVEL": "WARNING",
    }
    env.update(overrides)
    return env


def spawn(command: str, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "herald_cli", command], env=env, stdout=out, stderr=out)


def stop(*processes: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM each process still running (None: never started) and wait for it to exit."""
    for process in processes:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(30)


def run_cli(settings: Settings, *argv: str) -> str:
    """`herald <argv>` to completion, configured like the harness; its stdout (it must succeed)."""
    done = subprocess.run(
        [sys.executable, "-m", "herald_cli", *argv],
        env=env_for(settings), capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout
