"""The side-by-side harness: every side of every benchmark, interleaved, several rounds.

A *benchmark* (sqlite, redis, rabbitmq, kafka, api) has *sides*: the raw client by hand,
queuekit, and peer frameworks. Each round runs every side of every benchmark once, in a
fixed order (A B C ... A B C ...), each in its own process (so its peak RSS is its own).
Medians over the rounds are compared as ratios; see :mod:`benchmarks.report`.
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks import api_bench, machine
from benchmarks.peers import venv as peers_venv
from benchmarks.processes import Sample, SideFailed, run_side

BENCHMARKS = ("sqlite", "redis", "rabbitmq", "kafka", "api")
RAW_NAMES = {
    "sqlite": "raw sqlite3",
    "redis": "raw redis-py",
    "rabbitmq": "raw aiormq",
    "kafka": "raw confluent-kafka",
}
PEERS = {
    "redis": ("faststream", "dramatiq", "celery", "taskiq"),
    "rabbitmq": ("faststream", "dramatiq", "celery", "taskiq"),
    "kafka": ("faststream",),
}
PEER_NAMES = {
    "faststream": "FastStream",
    "dramatiq": "Dramatiq",
    "celery": "Celery",
    "taskiq": "Taskiq",
}


@dataclass(frozen=True, slots=True)
class Options:
    """What to run: see ``python -m benchmarks --help``."""

    count: int = 5000
    rounds: int = 3
    only: tuple[str, ...] = BENCHMARKS
    peers: bool = True
    api_seconds: int = 10


@dataclass(slots=True)
class Side:
    """One side of one benchmark and its samples."""

    benchmark: str
    name: str
    role: str  # "raw", "queuekit" or "peer"
    run: Callable[[], Sample] = field(repr=False)
    samples: list[Sample] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    @property
    def median_rate(self) -> float | None:
        rates = [s.rate for s in self.samples]
        return statistics.median(rates) if rates else None

    @property
    def median_rss_mib(self) -> float | None:
        peaks = [s.peak_rss_kib / 1024 for s in self.samples]
        return statistics.median(peaks) if peaks else None

    def median_extra(self, key: str) -> float | None:
        values = [s.extra[key] for s in self.samples if key in s.extra]
        return statistics.median(values) if values else None


@dataclass(slots=True)
class Run:
    """A whole harness run: sides, notes, the environment, how long it took."""

    options: Options
    sides: list[Side]
    notes: list[str]
    environment: dict[str, Any]
    seconds: float = 0.0


def plan(options: Options, log: Callable[[str], None]) -> tuple[list[Side], list[str], str | None]:
    """The sides to run, notes about what was left out, and the wrk binary (or None)."""
    notes: list[str] = []
    sides: list[Side] = []
    python = sys.executable
    peers_python: str | None = None
    if options.peers and any(b in PEERS for b in options.only):
        log("preparing the peers' virtualenv (benchmarks/.peers-venv)...")
        peers_python = str(peers_venv.ensure())
    for benchmark in options.only:
        if benchmark == "api":
            continue
        count = str(options.count)
        sides.append(
            Side(
                benchmark,
                RAW_NAMES[benchmark],
                "raw",
                _side([python, "-m", "benchmarks.sides", "raw", benchmark, "--count", count]),
            )
        )
        sides.append(
            Side(
                benchmark,
                "queuekit",
                "queuekit",
                _side([python, "-m", "benchmarks.sides", "queuekit", benchmark, "--count", count]),
            )
        )
        if peers_python is not None:
            for peer in PEERS.get(benchmark, ()):
                sides.append(
                    Side(
                        benchmark,
                        PEER_NAMES[peer],
                        "peer",
                        _side(
                            [
                                peers_python,
                                "-m",
                                "benchmarks.peers",
                                peer,
                                benchmark,
                                "--count",
                                count,
                            ]
                        ),
                    )
                )
    wrk: str | None = None
    if "api" in options.only:
        wrk = api_bench.ensure_wrk()
        if wrk is None:
            notes.append("wrk is not installed and could not be installed: API benchmark skipped")
        else:
            seconds = options.api_seconds
            sides.append(
                Side(
                    "api",
                    "bare Starlette",
                    "raw",
                    lambda: api_bench.run_api_side(wrk, "starlette", seconds, auth=False),
                )
            )
            sides.append(
                Side(
                    "api",
                    "queuekit",
                    "queuekit",
                    lambda: api_bench.run_api_side(wrk, "queuekit", seconds, auth=False),
                )
            )
            sides.append(
                Side(
                    "api",
                    "queuekit, auth on",
                    "queuekit-auth",
                    lambda: api_bench.run_api_side(wrk, "queuekit", seconds, auth=True),
                )
            )
    return sides, notes, wrk


def _side(argv: list[str]) -> Callable[[], Sample]:
    return lambda: run_side(argv)


def run(options: Options, log: Callable[[str], None] = print) -> Run:
    """Run every round of every side; a failing side is recorded, never hides the others."""
    started = time.monotonic()
    sides, notes, wrk = plan(options, log)
    environment: dict[str, Any] = {
        "date": machine.now().isoformat(timespec="seconds"),
        "machine": machine.describe_machine(),
        "libraries": machine.library_versions(),
        "brokers": machine.broker_versions(set(options.only)),
        "wrk": machine.wrk_version(wrk),
    }
    if any(side.role == "peer" for side in sides):
        environment["peers"] = peers_venv.versions()
    for round_number in range(1, options.rounds + 1):
        for side in sides:
            log(f"round {round_number}/{options.rounds}: {side.benchmark:<8} {side.name}")
            try:
                side.samples.append(side.run())
            except (SideFailed, OSError) as exc:
                side.failures.append(str(exc))
                log(f"  FAILED: {exc}")
    return Run(options, sides, notes, environment, time.monotonic() - started)
