"""The floor of an asyncio design on Kafka: confluent-kafka driven the way queuekit drives it,
with none of queuekit's per-message work.

One event loop publishes batches of PUBLISH_BATCH (``produce`` each record, then await one
future that the delivery reports resolve, served by a ``poll(0)`` every 0.5 ms); one consumer
thread fetches (``poll`` for the first record, then ``consume`` what is there) and hands the
records to the loop, which decodes them and has the thread commit after handling. The same
producer settings as queuekit's, keyless records spread over the partitions one by one
(``sticky.partitioning.linger.ms=0``), unless ``sticky``: then librdkafka's default, a whole
batch to one partition, as the raw side does.

What this side lacks against queuekit is exactly queuekit's per-message work: messages with
ids and metadata, crash-safety marks, per-delivery settlement, the worker's lanes and
middleware. :mod:`benchmarks.kafka_floor` runs it beside the raw side and queuekit.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import uuid
from typing import Any

from benchmarks.sides.raw_kafka import fresh_topic
from benchmarks.workload import (
    PREFETCH,
    PUBLISH_BATCH,
    WARMUP,
    Stopwatch,
    encode,
    handle,
    payload,
    report,
)

POLL_INTERVAL = 0.0005  # queuekit's delivery-report polling while publishes are in flight
FETCH_TIMEOUT = 0.002


class _Batch:
    """Counts one batch's delivery reports; ``acked`` resolves on the last one."""

    def __init__(self, loop: asyncio.AbstractEventLoop, size: int) -> None:
        self.acked: asyncio.Future[None] = loop.create_future()
        self.remaining = size

    def on_delivery(self, error: object, _record: object) -> None:
        if error is not None and not self.acked.done():
            self.acked.set_exception(RuntimeError(f"publish failed: {error}"))
        self.remaining -= 1
        if self.remaining == 0 and not self.acked.done():
            self.acked.set_result(None)


async def publish(loop: asyncio.AbstractEventLoop, producer: Any, topic: str, count: int) -> None:
    body = payload()
    for first in range(0, count, PUBLISH_BATCH):
        size = min(PUBLISH_BATCH, count - first)
        batch = _Batch(loop, size)
        for _ in range(size):
            headers = [("id", uuid.uuid4().hex.encode())]
            producer.produce(topic, encode(body), None, -1, batch.on_delivery, None, 0, headers)
        await batch.acked


async def one_pass(producer: Any, consumer: Any, topic: str, count: int) -> float:
    loop = asyncio.get_running_loop()
    all_handled: asyncio.Future[None] = loop.create_future()
    commits: queue.SimpleQueue[None] = queue.SimpleQueue()
    handled = 0
    stopping = False

    def on_records(records: list[Any]) -> None:  # on the loop
        nonlocal handled
        for record in records:
            handle(record.value())
        handled += len(records)
        commits.put(None)  # commit after handling, from the consumer's thread
        if handled >= count and not all_handled.done():
            all_handled.set_result(None)

    def fetch() -> None:  # the consumer thread
        while not stopping:
            while not commits.empty():
                commits.get_nowait()
                consumer.commit(asynchronous=True)
            first = consumer.poll(FETCH_TIMEOUT)
            if first is None or first.error() is not None:
                continue
            more = consumer.consume(PREFETCH - 1, 0)
            records = [first, *(record for record in more if record.error() is None)]
            loop.call_soon_threadsafe(on_records, records)

    def serve_reports() -> None:
        nonlocal poller
        producer.poll(0)
        poller = loop.call_later(POLL_INTERVAL, serve_reports)

    poller = loop.call_later(POLL_INTERVAL, serve_reports)
    reader = threading.Thread(target=fetch, daemon=True)
    clock = Stopwatch()
    clock.start()
    reader.start()
    try:
        await publish(loop, producer, topic, count)
        await all_handled
        clock.stop()
    finally:
        stopping = True
        poller.cancel()
        await asyncio.to_thread(reader.join)
    return clock.seconds


async def main(count: int, sticky: bool) -> None:
    spread = {} if sticky else {"sticky.partitioning.linger.ms": 0}
    with fresh_topic("floor", **spread) as (topic, producer, consumer):
        await one_pass(producer, consumer, topic, WARMUP)
        report(count, await one_pass(producer, consumer, topic, count))


def run(count: int, *, sticky: bool = False) -> None:
    asyncio.run(main(count, sticky))
