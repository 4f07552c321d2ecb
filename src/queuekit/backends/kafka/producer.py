"""An asyncio face on librdkafka's idempotent producer: publish a batch, await its acks.

``send(records)`` hands every record to librdkafka at once and awaits one future that the
delivery reports resolve (``acks=all``, ``enable.idempotence=true``). Concurrent sends are
batched by librdkafka itself (``linger.ms``) into the same produce requests, so many
concurrent publishes become one round trip: the group commit happens inside the client and
several batches can be in flight at once.

The delivery reports are served on the event loop (``poll(0)`` every ``POLL_INTERVAL`` while
records are outstanding, every ``IDLE_POLL_INTERVAL`` otherwise, for librdkafka's log lines).
A report is one Python callback per record; served from a thread of their own, each callback
took the GIL back from the busy loop, up to ``sys.getswitchinterval()`` (5 ms) every time.
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

POLL_INTERVAL = 0.0005  # seconds between delivery-report polls while records are in flight
IDLE_POLL_INTERVAL = 0.2
MAX_RECORD_BYTES = 16 * 1024 * 1024  # also each topic's max.message.bytes
_QUEUE_FULL_BACKOFF = 0.005
ANY_PARTITION = -1  # librdkafka's RD_KAFKA_PARTITION_UA: the partitioner picks one


class _BatchWaiter:
    """Counts the delivery reports of one batch; resolves ``future`` on the last one."""

    __slots__ = ("error", "future", "loop", "loop_thread", "remaining")

    def __init__(self, loop: asyncio.AbstractEventLoop, count: int) -> None:
        self.loop = loop
        self.loop_thread = threading.get_ident()  # created on the loop
        self.future: asyncio.Future[None] = loop.create_future()
        self.remaining = count
        self.error: Any = None

    def on_delivery(self, error: Any, _record: Any) -> None:
        # Runs on the event loop (its polls), or on close()'s final flush once those stopped:
        # one thread at a time, so the count needs no lock.
        if error is not None and self.error is None:
            self.error = error
        self.remaining -= 1
        if self.remaining == 0:
            if threading.get_ident() == self.loop_thread:
                self._finish()
            else:
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
        self._running = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sending = 0  # sends awaiting their delivery reports
        self._poll_timer: asyncio.TimerHandle | None = None

    def start(self) -> None:
        """Create the producer and start serving its delivery reports on the running loop."""
        try:
            self._producer = Producer(self._config)
        except KafkaException as exc:
            raise to_publish_error(exc, "creating a producer") from exc
        self._running = True
        self._serve_on(asyncio.get_running_loop())

    def _serve_on(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._poll_timer is not None:
            self._poll_timer.cancel()
        self._loop = loop
        self._poll_timer = loop.call_later(IDLE_POLL_INTERVAL, self._serve_reports)

    def _serve_reports(self) -> None:
        producer, loop = self._producer, self._loop
        if producer is None or loop is None:
            self._poll_timer = None
            return
        producer.poll(0)
        interval = POLL_INTERVAL if self._sending else IDLE_POLL_INTERVAL
        self._poll_timer = loop.call_later(interval, self._serve_reports)

    def _poll_soon(self, loop: asyncio.AbstractEventLoop) -> None:
        """Make the next poll come within ``POLL_INTERVAL`` (records were just produced)."""
        timer = self._poll_timer
        if loop is not self._loop or timer is None:
            self._serve_on(loop)
        elif timer.when() - loop.time() > POLL_INTERVAL:
            timer.cancel()
            self._poll_timer = loop.call_later(POLL_INTERVAL, self._serve_reports)

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
        loop = asyncio.get_running_loop()
        waiter = _BatchWaiter(loop, len(records))
        callback = waiter.on_delivery
        produce = producer.produce
        self._sending += 1
        try:
            for topic, value, key, headers, timestamp_ms in records:
                while True:
                    try:
                        # Positional: produce() parses keywords against all of its eight
                        # names, about a microsecond per record (a third of the call).
                        # (topic, value, key, partition, callback, on_delivery, timestamp, headers)
                        produce(
                            topic, value, key, ANY_PARTITION, callback, None, timestamp_ms, headers
                        )
                        break
                    except BufferError:
                        # librdkafka's local queue is full: serve reports, let it drain.
                        producer.poll(0)
                        await asyncio.sleep(_QUEUE_FULL_BACKOFF)
                    except KafkaException as exc:
                        raise to_publish_error(exc, f"producing to {topic}") from exc
            self._poll_soon(loop)
            await waiter.future
        finally:
            self._sending -= 1
        if waiter.error is not None:
            raise to_publish_error(waiter.error, f"publishing {len(records)} record(s)")

    async def close(self) -> None:
        """Wait for outstanding deliveries (up to the timeout), then stop; idempotent."""
        producer, self._producer = self._producer, None
        if producer is None:
            return
        self._running = False
        if self._poll_timer is not None:
            self._poll_timer.cancel()
            self._poll_timer = None
        await asyncio.to_thread(producer.flush, self._timeout)
