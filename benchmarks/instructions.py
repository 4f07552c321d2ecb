"""Instructions per message of each benchmark side, per thread: a figure that does not swing.

    .venv/bin/python -m benchmarks.instructions [--backend kafka] [--sides raw queuekit floor]

Wall-clock rounds on a small shared machine swing by 15-20%, so a change worth a few percent
of CPU cannot be seen in them. This runs each side under valgrind's callgrind (one output per
thread) at two message counts and reports, per thread, the instructions of the larger run
minus those of the smaller one, per extra message: start-up, imports and connections cancel
out. Threads are matched by the order they started in (the total is exact either way). The
count is the same from run to run, to a few hundred instructions. It is a measure of
CPU work only: time spent waiting on the broker is not in it. Needs valgrind (Debian package
``valgrind``); a side runs about 50 times slower under it.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from benchmarks.processes import REPO

SIDES = ("raw", "queuekit", "floor", "floor-sticky")
SHOWN_ABOVE = 300  # instructions per message below which a thread is left out of the table
_SUMMARY = re.compile(r"^summary:\s+(\d+)", re.MULTILINE)


def instructions_by_thread(side: str, backend: str, count: int, folder: Path) -> list[int]:
    """Instructions executed by each thread of one run of ``side``, in thread start order."""
    out = folder / f"{side}-{count}.cg"
    command = [
        "valgrind",
        "--tool=callgrind",
        "--separate-threads=yes",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        "benchmarks.sides",
        side,
        backend,
        "--count",
        str(count),
    ]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"{side} failed under valgrind:\n{done.stderr[-2000:]}")
    counts = []
    # callgrind names the files <out>-01, <out>-02, ... in the order the threads started.
    for part in sorted(folder.glob(f"{out.name}-*"), key=lambda p: int(p.name.rsplit("-", 1)[1])):
        found = _SUMMARY.search(part.read_text(errors="replace"))
        counts.append(int(found.group(1)) if found else 0)
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backend", default="kafka")
    parser.add_argument("--sides", nargs="+", default=["raw", "queuekit"], choices=SIDES)
    parser.add_argument("--counts", nargs=2, type=int, default=[2000, 12000])
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian: apt-get install valgrind)")
    small, large = sorted(args.counts)
    table = Table("side", "thread", "instructions per message")
    with tempfile.TemporaryDirectory(prefix="bench-instructions-") as tmp:
        for side in args.sides:
            print(f"{side}: {small} and {large} messages under valgrind", flush=True)
            before = instructions_by_thread(side, args.backend, small, Path(tmp))
            after = instructions_by_thread(side, args.backend, large, Path(tmp))
            per_thread = [
                (number, (later - earlier) // (large - small))
                for number, (earlier, later) in enumerate(zip(before, after, strict=False), 1)
            ]
            for number, per_message in per_thread:
                if per_message > SHOWN_ABOVE:
                    name = "main" if number == 1 else f"#{number}"
                    table.add_row(side, name, f"{per_message:,}")
            total = sum(after) - sum(before)
            table.add_row(side, "all", f"{total // (large - small):,}", end_section=True)
    Console().print(table)


if __name__ == "__main__":
    main()
