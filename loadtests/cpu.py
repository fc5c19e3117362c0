"""CPU seconds spent by each part of the platform over a window: where a benchmark's cores went.

Every process on the machine is grouped by what it is (a `herald_cli` child by its command,
the broker, PostgreSQL's backends, the load generator itself); a window's figure is the
difference of two snapshots, so processes started before the window are counted only for
what they spent inside it.
"""

from __future__ import annotations

import os

import psutil


def _group(process: psutil.Process) -> str | None:
    try:
        argv = process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    if process.pid == os.getpid():
        return "load generator"
    if "herald_cli" in argv:
        command = argv[argv.index("herald_cli") + 1 :]
        return command[0] if command else "herald"
    name = os.path.basename(argv[0]) if argv else ""
    if "tansu" in name:
        return "broker"
    if name.startswith("postgres") or process.name().startswith("postgres"):
        return "postgres"
    return None


def snapshot() -> dict[int, tuple[str, float]]:
    """pid -> (group, user+system CPU seconds so far), for the processes that belong to a group."""
    seen: dict[int, tuple[str, float]] = {}
    for process in psutil.process_iter():
        group = _group(process)
        if group is None:
            continue
        try:
            times = process.cpu_times()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
        seen[process.pid] = (group, times.user + times.system)
    return seen


def spent(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]) -> dict[str, float]:
    """CPU seconds per group between two snapshots (a process gone by `after` is not counted)."""
    out: dict[str, float] = {}
    for pid, (group, seconds) in after.items():
        out[group] = out.get(group, 0.0) + seconds - before.get(pid, (group, 0.0))[1]
    return out


def report(used: dict[str, float], elapsed: float, messages: int) -> str:
    """One line per group: share of a core, and CPU microseconds per message."""
    lines = []
    for group, seconds in sorted(used.items(), key=lambda kv: -kv[1]):
        per = seconds / messages * 1e6 if messages else float("nan")
        lines.append(f"  {group:<15} {seconds / elapsed * 100:5.0f}% of a core  {per:7.0f} µs/message")
    total = sum(used.values())
    lines.append(f"  {'total':<15} {total / elapsed * 100:5.0f}% of a core  "
                 f"{total / messages * 1e6 if messages else float('nan'):7.0f} µs/message")  # fmt: skip
    return "\n".join(lines)
