"""A `herald dev` child whose supervisor is killed stops itself (`herald_cli.orphans`)."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil

from herald.embedded import free_port

# A supervisor that starts one child the way `herald dev` does (`herald_cli.dev.Child`), prints
# its pid and waits to be killed.
_SUPERVISOR = """
import os, sys, time
from pathlib import Path
from herald_cli.dev import Child
env = {**os.environ, "HERALD_ENVIRONMENT": "development", "HERALD_CARRIER_SIM_PORT": sys.argv[1]}
child = Child("carrier-sim", env, Path(sys.argv[2]))
child.start()
print(child.process.pid, flush=True)
time.sleep(600)
"""


def test_a_child_whose_supervisor_is_killed_stops_itself_gracefully(tmp_path: Path) -> None:
    port = free_port()
    supervisor = subprocess.Popen([sys.executable, "-c", _SUPERVISOR, str(port), str(tmp_path)], stdout=subprocess.PIPE)
    assert supervisor.stdout is not None
    child = psutil.Process(int(supervisor.stdout.readline()))
    try:
        deadline = time.monotonic() + 30
        while True:  # serving: past its imports, in the service itself
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v1/sim/metrics").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "carrier-sim.log").read_text()
            time.sleep(0.1)
        supervisor.kill()  # no cleanup: the child is left to itself
        supervisor.wait()
        # Gone within a few polls, long before the watch's SIGKILL (30 s): by its own SIGTERM.
        child.wait(timeout=10)
        assert "supervisor" in (tmp_path / "carrier-sim.log").read_text()
    finally:
        supervisor.kill()
        if child.is_running():
            child.kill()
        supervisor.stdout.close()
