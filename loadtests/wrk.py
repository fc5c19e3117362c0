"""Running `wrk` and reading its report: the one load generator of the benchmarks here."""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass(frozen=True)
class WrkResult:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    output: str


def run(url: str, script: Path, seconds: int, connections: int) -> WrkResult:
    """One thread, `connections` connections, `--latency`; fails if any response was not 2xx."""
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "-s", str(script), "--latency", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "Non-2xx" not in out, out

    def number(pattern: str) -> re.Match[str]:
        match = re.search(pattern, out)
        assert match is not None, out
        return match

    def ms(label: str) -> float:
        m = number(rf"{label}\s+([\d.]+)(us|ms|s)")
        return float(m.group(1)) * _UNITS[m.group(2)]

    return WrkResult(
        requests=int(number(r"(\d+) requests in").group(1)),
        rps=float(number(r"Requests/sec:\s+([\d.]+)").group(1)),
        p50_ms=ms("50%"),
        p99_ms=ms("99%"),
        output=out,
    )
