"""Where a Herald process's CPU goes during a benchmark window: py-spy, attached from outside.

`record` samples each given process for the window and writes py-spy's collapsed stacks, one
file per process. By default `--nonblocking`: the process is not paused to be read, so the
window's CPU figures stay those of an unprofiled run; but under uvloop such stacks often lose
their roots and misattribute self time. `blocking=True` pauses each process per sample: shares
are then right and the window's CPU and rate figures are not those of an unprofiled run.
`summary` reads one back: the functions the samples were in (self) and under (inclusive),
as shares of the event loop thread's samples (idle samples are dropped by py-spy without
`--idle`, though not all of them in blocking mode: the loop's own wait shows as
`Runner.run`'s self time).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def record(
    processes: dict[int, str], seconds: float, out: Path, rate: int = 200, blocking: bool = False
) -> Iterator[list[Path]]:
    """py-spy on each pid (named by its group) for `seconds`; the files once the block ends."""
    # Beside this interpreter first: `.venv/bin/python -m loadtests.sweep` without the venv on PATH.
    beside = Path(sys.executable).parent / "py-spy"
    spy = str(beside) if beside.exists() else shutil.which("py-spy")
    assert spy, "py-spy is not installed (it is in requirements-dev.lock: `make install`)"
    out.mkdir(parents=True, exist_ok=True)
    files = [out / f"{group}-{pid}.txt" for pid, group in processes.items()]
    runs = []
    for (pid, _), path in zip(processes.items(), files, strict=True):
        argv = [spy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(rate),
                "--format", "raw", "--output", str(path), *([] if blocking else ["--nonblocking"])]  # fmt: skip
        # Its own output beside the profile: why a profile is missing (attaching to another
        # process needs ptrace permission: root, or kernel.yama.ptrace_scope = 0).
        with path.with_suffix(".log").open("wb") as log:
            runs.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT))
    try:
        yield files
    finally:
        for run in runs:
            try:
                run.wait(timeout=seconds + 30)
            except subprocess.TimeoutExpired:
                run.kill()


def _frame(raw: str) -> str:
    """`handle (herald_worker/deliver.py:120)` -> `herald_worker/deliver.py:handle`."""
    name, _, where = raw.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = "/".join(path.split("/")[-2:])
    return f"{path}:{name}"


def summary(path: Path, top: int = 25) -> str:
    """The `top` functions by self and by inclusive share of the samples in `path` (or, when
    py-spy wrote none, the end of what it said)."""
    if not path.exists():
        said = path.with_suffix(".log")
        return f"{path.name}: no profile; py-spy said: {said.read_text()[-500:] if said.exists() else '(nothing)'}"
    own: Counter[str] = Counter()
    under: Counter[str] = Counter()
    total = threads = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_frame(f) for f in stack.split(";")]
        if frames[0] == "threading.py:Thread._bootstrap":
            # A thread besides the event loop's: executor workers and watchers, which in
            # blocking mode py-spy samples while they wait. Herald's work runs on the loop.
            threads += n
            continue
        total += n
        own[frames[-1]] += n
        for f in set(frames):
            under[f] += n
    if not total:
        return f"{path.name}: no samples"
    lines = [f"{path.name}: {total:,} samples on the event loop's thread ({threads:,} on others, left out)"]
    for title, counts in (("self", own), ("inclusive", under)):
        lines.append(f"  {title}:")
        lines += [f"    {n / total * 100:5.1f}%  {f}" for f, n in counts.most_common(top)]
    return "\n".join(lines)
