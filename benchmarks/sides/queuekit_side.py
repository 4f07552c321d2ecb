"""queuekit doing the same work: :func:`queuekit.bench.run_bench` on a fresh topic.

A real Worker (default middleware, metrics, no-op handler, concurrency = PREFETCH) consumes
while the producer publishes batches of PUBLISH_BATCH; the figure is first publish -> last
ack, like the raw sides. The topic's broker objects are deleted afterwards.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from benchmarks.workload import PAYLOAD_BYTES, PREFETCH, PUBLISH_BATCH, WARMUP, report, unique_name
from queuekit.backends import create_broker
from queuekit.bench import BenchConfig, run_bench
from queuekit.settings import Settings


async def main(backend: str, count: int, folder: str) -> None:
    topic = unique_name("qk")
    settings = Settings(queue_type=backend, sqlite_path=str(Path(folder) / "queue.db"))
    config = BenchConfig(
        count=count,
        payload_bytes=PAYLOAD_BYTES,
        concurrency=PREFETCH,
        publish_batch=PUBLISH_BATCH,
        latency_fraction=0,
        warmup=WARMUP,
        topic=topic,
    )
    async with create_broker(settings) as broker:
        result = await run_bench(broker, config)  # deletes the topic's broker objects itself
    report(count, result.seconds, publish_rate=result.publish_rate)


def run(backend: str, count: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-qk-") as folder:
        asyncio.run(main(backend, count, folder))
