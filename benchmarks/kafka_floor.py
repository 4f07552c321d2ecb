"""Where queuekit's Kafka time goes: the raw client, the floor of an asyncio design, queuekit.

    .venv/bin/python -m benchmarks.kafka_floor [--rounds 9] [--count 5000]

Runs, interleaved and each in its own process: the harness's raw side (threads, librdkafka's
sticky partitioning), the asyncio floor (:mod:`benchmarks.sides.floor_kafka`) with queuekit's
spread of a batch over the partitions and with sticky partitioning, and queuekit. Prints each
side's median rate, its ratio to raw's median, and the median of its per-round ratios to the
raw round beside it (drift between rounds cancels out in those). The floor against raw is
the price of the design (one event loop, spread batches); queuekit against the floor is the
price of queuekit's per-message work.
"""

from __future__ import annotations

import argparse
import statistics
import sys

from rich.console import Console
from rich.table import Table

from benchmarks.processes import run_side

SIDES = {
    "raw confluent-kafka": "raw",
    "asyncio floor, spread": "floor",
    "asyncio floor, sticky": "floor-sticky",
    "queuekit": "queuekit",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--count", type=int, default=5000)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {name: [] for name in SIDES}
    for round_number in range(1, args.rounds + 1):
        for name, side in SIDES.items():
            print(f"round {round_number}/{args.rounds}: {name}", flush=True)
            argv = [sys.executable, "-m", "benchmarks.sides", side, "kafka"]
            rates[name].append(run_side([*argv, "--count", str(args.count)]).rate)
    raw = rates["raw confluent-kafka"]
    table = Table("side", "median msg/s", "vs raw (medians)", "vs raw (paired rounds)", "rounds")
    for name, samples in rates.items():
        paired = statistics.median(ours / theirs for ours, theirs in zip(samples, raw, strict=True))
        table.add_row(
            name,
            f"{statistics.median(samples):,.0f}",
            f"{statistics.median(samples) / statistics.median(raw):.2f}x",
            f"{paired:.2f}x",
            " ".join(f"{rate:,.0f}" for rate in samples),
        )
    Console(width=160).print(table)


if __name__ == "__main__":
    main()
