"""A supervised child that outlives its supervisor stops itself.

`herald dev` (and the load tests, through `DevStack`) run each service as a child process in a
session of its own, so a Ctrl-C reaches only the supervisor, which stops its children in order.
A supervisor killed without that cleanup (SIGKILL, a crash, an interrupted benchmark) left them
running: orphaned sinks kept reconnecting to a broker that was gone, and their CPU was counted
in the next benchmark's figures. Each child is told its supervisor's pid
(`HERALD_SUPERVISOR_PID`) and watches for being re-parented.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time

log = logging.getLogger(__name__)


def stop_when_orphaned(supervisor: int, poll_seconds: float = 0.5, grace_seconds: float = 30.0) -> None:
    """From now on, once this process's parent is no longer `supervisor` (it died, and the process
    was re-parented), SIGTERM this process (its own graceful stop: drain, commit) and SIGKILL it
    `grace_seconds` later if it is still running. A parent that is already gone counts at once."""

    def watch() -> None:
        while os.getppid() == supervisor:
            time.sleep(poll_seconds)
        log.warning("the supervisor (pid %d) is gone: stopping", supervisor)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_seconds)
        os.kill(os.getpid(), signal.SIGKILL)

    # A thread, not a task: it must work whatever the process runs (an event loop that is
    # blocked, uvicorn, a synchronous command), and as a daemon it never holds an exit up.
    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()
