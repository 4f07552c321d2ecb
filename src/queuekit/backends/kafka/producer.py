"""An asyncio face on librdkafka's idempotent producer: publish a batch, await its acks.

``send(records)`` hands every record to librdkafka at once and awaits one future that the
delivery reports resolve (``acks=all``, ``enable.idempotence=true``). Concurrent sends are
batched by librdkafka itself (``linger.ms``) into the same produce requests, so many
concurrent publishes become one round trip: the group commit happens inside the client and
several batches can be in flight at once. A dedicated thread serves the delivery reports.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from typing import Any

from confluent_kafka import KafkaException, Producer

from queuekit.backends.kafka.errors import to_publish_error
from queuekit.backends.kafka.records import OutRecord
from queuekit.errors import BrokerUnavailable

CLIENT_LOG = logging.getLogger("queuekit.backends.kafka.librdkafka")
"""Where librdkafka's own log lines go (instead of stderr)."""

_POLL_SECONDS = 0.2
MAX_RECORD_BYTES = 16 * 1024 * 1024  # also each topic's max.message.bytes
_QUEUE_FULL_BACKOFF = 0.005


class _BatchWaiter:
    """Counts the delivery reports of one batch; resolves ``future`` on the last one."""

    __slots__ = ("error", "future", "loop", "remaining")

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int) -> None:
        self.loop = loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.remaining = count
        self.error: Any = None

    def on_delivery(self, error: Any, _record: Any) -> None:
        # Runs on the poll thread only (close() joins it before its final flush), so the
        # count needs no lock.
        if error is not None and self.error is None:
            self.error = error
        self.remaining -= 1
        if self.remaining == 0:
            self.loop.call_soon_threadsafe(self._finish)

    def _finish(self) -> None:
        if not self.future.done():
            self.future.set_result(None)


class AsyncProducer:
    """One librdkafka producer shared by a broker's publishes, retries and dead letters."""

    def __init__(self, bootstrap_servers: str, *, timeout: float, client_id: str) -> None:
        self._config = {
            "bootstrap.servers": bootstrap_servers,
            "client.id": client_id,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            "batch.num.messages": 10000,
            "message.timeout.ms": int(timeout * 1000),
            "partitioner": "murmur2_random",  # same partition for a key as Java clients
            # Keyless messages spread over partitions one by one (not one sticky partition per
            # batch), so the consumers of a group share even a single publish's batch.
            "sticky.partitioning.linger.ms": 0,
            "message.max.bytes": MAX_RECORD_BYTES,
            "reconnect.backoff.max.ms": 1000,
            "logger": CLIENT_LOG,
        }
        self._timeout = timeout
        self._producer: Any = None
        self._thread: threading.Thread | None = None
        self._running = False

    def start(self) -> None:
        """Create the producer and its delivery-report thread."""
        try:
            self._producer = Producer(self._config)
        except KafkaException as exc:
            raise to_publish_error(exc, "creating a producer") from exc
        self._running = True
        self._thread = threading.Thread(
            target=self._serve_reports, name="queuekit-kafka-producer", daemon=True
        )
        self._thread.start()

    def _serve_reports(self) -> None:
        producer = self._producer
        while self._running:
            producer.poll(_POLL_SECONDS)

    async def send(self, records: Sequence[OutRecord]) -> None:
        """Produce ``records`` and return when the cluster acknowledged all of them.

        Raises:
            BrokerUnavailable: not started, or the cluster was unreachable until the timeout.
            PublishError: the cluster refused a record.
        """
        producer = self._producer
        if producer is None or not self._running:
            raise BrokerUnavailable("kafka producer is not connected")
        if not records:
            return
        waiter = _BatchWaiter(asyncio.get_running_loop(), len(records))
        callback = waiter.on_delivery
        produce = producer.produce
        for topic, value, key, headers, timestamp_ms in records:
            while True:
                try:
                    produce(
                        topic,
                        value=value,
                        key=key,
                        headers=headers,
                        timestamp=timestamp_ms,
                        on_delivery=callback,
                    )
                    break
                except BufferError:
                    # librdkafka's local queue is full: let the poll thread drain it.
                    await asyncio.sleep(_QUEUE_FULL_BACKOFF)
                except KafkaException as exc:
                    raise to_publish_error(exc, f"producing to {topic}") from exc
        await waiter.future
        if waiter.error is not None:
            raise to_publish_error(waiter.error, f"publishing {len(records)} record(s)")

    async def close(self) -> None:
        """Wait for outstanding deliveries (up to the timeout), then stop; idempotent."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        self._running = False
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)
            self._thread = None
        await asyncio.to_thread(producer.flush, self._timeout)
