"""A Kafka consumer-group member as a queuekit :class:`~queuekit.broker.Subscription`.

A :class:`~.consumer_thread.ConsumerThread` owns the librdkafka consumer; everything here runs
on the event loop. The consumer reads the topic's ten priority lanes, its delay topic and the
group's retry topic. Handling is concurrent (up to ``prefetch`` deliveries of any partitions
in flight, several from one partition); each partition commits its contiguous handled prefix
(:class:`~.offsets.OffsetLedger`). :class:`~.ready.ReadyRecords` picks what to deliver next.

* Flow: a partition is paused when too many of its records wait here (``PAUSE_AT`` lane
  records, or a ``LOOKAHEAD`` window of delayed ones), so a far-future delayed record holds
  back at most the records behind that window, never the priority lanes.
* Rebalances (range assignor, so each member gets a share of every lane rather than whole
  lanes; eager protocol): a revoked partition's waiting records are dropped, its in-flight
  ones get up to ``grace`` seconds to finish, the rest are released (re-produced to the retry
  topic with ``attempt + 1``), and the handled prefix is committed before the partition
  moves. Lost partitions (session expired) are dropped without committing.
* Crash safety: before a record is delivered its offset is covered by a mark in the
  committed offset's metadata (:mod:`.marks`): made by the consumer thread as it fetches,
  or, behind a backlog, requested ``MARK_AHEAD`` records ahead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

from confluent_kafka import KafkaError

from queuekit.backends.kafka.consumer_thread import ConsumerThread, Run
from queuekit.backends.kafka.delivery import KafkaDelivery
from queuekit.backends.kafka.marks import Key, Mark
from queuekit.backends.kafka.naming import PRIORITIES, delay_topic, lane_topic, retry_topic
from queuekit.backends.kafka.partition import DELAYED, LANE, RETRY, Partition
from queuekit.backends.kafka.producer import AsyncProducer
from queuekit.backends.kafka.ready import ReadyRecords
from queuekit.backends.kafka.records import from_record, to_record
from queuekit.broker import Subscription
from queuekit.errors import BrokerUnavailable, QueuekitError

log = logging.getLogger(__name__)

PAUSE_AT = 10000  # waiting lane records of one partition before it is paused (refetched later)
RESUME_AT = 5000
LOOKAHEAD = 1000  # delayed records of one partition held while waiting to be due
COMMIT_DELAY = 0.05  # seconds acks are gathered before their offsets are committed
MARK_AHEAD = 1024  # records a crash-safety mark reaches beyond the one about to be delivered


class KafkaSubscription(Subscription):
    """A member of the Kafka consumer group of (topic, group); see the module docstring.

    Constructing one has no side effect; :meth:`start` joins the group.
    """

    _consumer: ConsumerThread  # from start()

    def __init__(
        self,
        *,
        topic: str,
        group: str,
        prefetch: int,
        consumer_config: dict[str, Any],
        producer: AsyncProducer,
        grace: float,
        on_closed: Callable[[KafkaSubscription], None] | None = None,
    ) -> None:
        self.topic = topic
        self.group = group
        self.producer = producer
        self.retry_topic = retry_topic(topic, group)
        self._prefetch = prefetch
        self._grace = grace
        self._on_closed = on_closed
        self._roles: dict[str, tuple[str, int]] = {
            lane_topic(topic, p): (LANE, p) for p in PRIORITIES
        }
        self._roles[delay_topic(topic)] = (DELAYED, 0)
        self._roles[self.retry_topic] = (RETRY, 0)
        self._parts: dict[Key, Partition] = {}
        self._ready = ReadyRecords()
        self._unsettled = 0
        self._wakeup = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._commit_timer: asyncio.TimerHandle | None = None
        self._error: QueuekitError | None = None
        self._closed = False
        self.broker_closed = False  # the broker was closed: settling fails from then on
        self._linger: asyncio.Task[None] | None = None
        self._thread_done: asyncio.Future[None] = self._loop.create_future()
        self._consumer_config = consumer_config

    def start(self) -> None:
        """Create the group member's consumer and start its thread (once, before iterating)."""
        self._consumer = ConsumerThread(
            self,
            self._consumer_config,
            list(self._roles),
            loop=self._loop,
            revoke_timeout=self._grace + 30,
        )
        self._consumer.start()

    # ------------------------------------------------------------------ from the consumer thread

    def assigned(self, keys: list[Key], suspects: dict[Key, Mark]) -> None:
        for key in keys:
            role, priority = self._roles.get(key[0], (LANE, 0))
            suspect = suspects.get(key)
            part = Partition(key[0], key[1], role, priority, suspect=suspect)
            if suspect is not None:
                part.marked = part.marking = suspect.delivered
            old = self._parts.get(key)
            if old is not None:
                old.revoked = True
            self._parts[key] = part
            self._ready.assigned(part)
        self._wakeup.set()

    async def revoke(self, keys: list[Key], *, lost: bool) -> tuple[list[Any], bool]:
        """Hand partitions back; return the offsets to commit and whether every delivered
        record of them was settled (so the crash marks can be cleared)."""
        parts = [part for key in keys if (part := self._parts.pop(key, None)) is not None]
        for part in parts:
            part.revoked = True
            part.buffered = 0
            self._ready.revoked(part)
        self._wakeup.set()
        if lost:
            for part in parts:
                for delivery in list(part.deliveries):
                    self._release_locally(delivery)
            return [], False
        in_flight = [d for part in parts for d in part.deliveries]
        if in_flight and not self.broker_closed:
            deadline = time.monotonic() + self._grace
            while any(not d.settled for d in in_flight) and time.monotonic() < deadline:
                await self._wait_for_change(deadline)
        all_settled = await self.release([d for d in in_flight if not d.settled])
        offsets = [
            part.topic_partition(part.ledger.position)
            for part in parts
            if part.ledger.position is not None
        ]
        return offsets, all_settled

    def on_records(self, runs: list[Run], events: list[Any], marked: dict[Key, int]) -> None:
        if self._closed:
            return
        parts = self._parts
        for key, reach in marked.items():
            marked_part = parts.get(key)
            if marked_part is not None and reach > marked_part.marked:
                marked_part.marked = reach
                marked_part.marking = max(marked_part.marking, reach)
        topic = self.topic
        now = time.time()
        pause: list[Partition] = []
        for key, records in runs:
            part = parts.get(key)
            if part is None:
                continue
            ledger = part.ledger
            priority = part.priority
            fresh = ledger.next_offset
            run: list[KafkaDelivery] = []
            for record in records:
                offset = record.offset()
                if offset >= fresh:  # not a record fetched again after a seek
                    run.append(
                        KafkaDelivery(
                            self, part, offset, from_record(record, topic, priority, offset)
                        )
                    )
            if run:
                ledger.fetched_run([delivery.offset for delivery in run])
                self._queue(run, now, pause)
        for event in events:
            self._on_event(event)
        if pause:
            self._consumer.command("pause", [p.topic_partition() for p in pause])
        self._wakeup.set()

    def _queue(self, run: list[KafkaDelivery], now: float, pause: list[Partition]) -> None:
        """Hand a run of records fetched from one partition to the ready records; note the
        partition in ``pause`` when it holds enough of them."""
        part = run[0].part
        part.buffered += len(run)
        self._ready.add(part, run, now)
        limit = PAUSE_AT if part.role == LANE else LOOKAHEAD
        if part.buffered >= limit and not part.paused:
            part.paused = True
            pause.append(part)

    def _on_event(self, record: Any) -> None:
        """An error or end-of-partition event in the consumed records."""
        error = record.error()
        if error.code() == KafkaError._PARTITION_EOF:
            part = self._parts.get((record.topic(), record.partition()))
            if part is not None:
                self._ready.reached_end(part)
        else:
            log.debug("kafka consumer of %s: %s", self.topic, error.str())

    def fail(self, error: QueuekitError) -> None:
        self._error = error
        self._wakeup.set()

    def thread_finished(self) -> None:
        self._consumer.release_waiters()
        if not self._thread_done.done():
            self._thread_done.set_result(None)

    # ------------------------------------------------------------------ delivering

    async def __anext__(self) -> KafkaDelivery:
        while True:
            self._wakeup.clear()
            if self._closed:
                raise StopAsyncIteration
            if self._error is not None:
                raise self._error
            wait: float | None = None
            if self._unsettled < self._prefetch:
                if self._ready.probing:
                    fetched, probe, wait = self._ready.next_suspect()
                    if probe is not None:
                        await self._mark_probe(probe)
                        continue
                    if fetched is not None:
                        return self._deliver(fetched)
                ready = self._ready.take(1)
                if ready:
                    return self._deliver(ready[0])
                unmarked, lanes_wait = self._ready.blocked()
                if unmarked is not None:
                    # Cancellation-safe: the record stays queued until its mark is durable.
                    await asyncio.shield(self._request_mark(unmarked.part, unmarked.offset))
                    continue
                if lanes_wait is not None:
                    wait = lanes_wait if wait is None else min(wait, lanes_wait)
            try:
                async with asyncio.timeout(wait):
                    await self._wakeup.wait()
            except TimeoutError:
                pass

    def take_ready(self, limit: int) -> list[KafkaDelivery]:
        """The records :meth:`__anext__` would deliver now without waiting, up to ``limit``:
        none while probing a crashed owner's records, and none past one needing a mark."""
        room = min(limit, self._prefetch - self._unsettled)
        if room <= 0 or self._closed or self._error is not None or self._ready.probing:
            return []
        taken = self._ready.take(room)
        for delivery in taken:
            self._deliver(delivery)
        return taken

    def _deliver(self, delivery: KafkaDelivery) -> KafkaDelivery:
        part = delivery.part
        part.buffered -= 1
        if part.paused and part.buffered <= RESUME_AT:
            part.paused = False
            self._consumer.command("resume", [part.topic_partition()])
        if (
            part.marking < delivery.offset + MARK_AHEAD // 2
            and part.ledger.highest > part.marking
            and part.suspect is None
        ):
            self._request_mark(part, delivery.offset)  # before it is needed
        part.deliveries.add(delivery)
        self._unsettled += 1
        return delivery

    def _request_mark(self, part: Partition, offset: int) -> asyncio.Future[None]:
        """Ask the consumer thread to mark ``part`` up to ``offset`` and a stretch ahead."""
        if part.mark_done is not None and not part.mark_done.done() and part.marking >= offset:
            return part.mark_done
        target = max(offset, min(offset + MARK_AHEAD, part.ledger.highest))
        position = part.ledger.position if part.ledger.position is not None else offset
        done: Future[None] = Future()
        self._consumer.command("mark", [(part.key, target, position)], done)
        part.marking = max(part.marking, target)
        waiter = asyncio.wrap_future(done)

        def marked(_: object) -> None:
            part.marked = max(part.marked, target)
            self._wakeup.set()

        waiter.add_done_callback(marked)
        part.mark_done = waiter
        return waiter

    async def _mark_probe(self, part: Partition) -> None:
        """Make durable that ``part``'s head suspect is delivered once more."""
        head = part.suspects[0]
        done: Future[None] = Future()
        self._consumer.command("probe", [(part.key, head.offset, head.earlier + 1)], done)
        await asyncio.wrap_future(done)
        part.probed = head.offset
        part.marked = max(part.marked, head.offset)

    async def _wait_for_change(self, deadline: float) -> None:
        self._wakeup.clear()
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await self._wakeup.wait()
        except TimeoutError:
            pass

    # ------------------------------------------------------------------ settling

    def settle(self, delivery: KafkaDelivery) -> None:
        """Mark ``delivery`` handled: its offset may be committed once its prefix is."""
        if not delivery.mark_settled():
            return
        part = delivery.part
        part.deliveries.discard(delivery)
        part.ledger.settled(delivery.offset)
        self._unsettled -= 1
        if not part.revoked and self._commit_timer is None:
            self._commit_timer = self._loop.call_later(COMMIT_DELAY, self._flush_commits)
        self._wakeup.set()

    def _flush_commits(self) -> None:
        self._commit_timer = None
        offsets = []
        for part in self._parts.values():
            position = part.ledger.uncommitted()
            if position is not None:
                part.ledger.committed(position)
                offsets.append(part.topic_partition(position))
        if offsets:
            self._consumer.command("commit", offsets)

    async def release(self, deliveries: Iterable[KafkaDelivery]) -> bool:
        """Give unsettled deliveries back to the group now: re-produce each to the retry
        topic with ``attempt + 1`` and settle it. If that fails they stay unsettled, and the
        group redelivers them from the last committed offset; returns whether it worked."""
        pending = [d for d in deliveries if not d.settled]
        if not pending:
            return True
        records = [
            to_record(replace(d.message, attempt=d.message.attempt + 1), self.retry_topic)
            for d in pending
        ]
        try:
            await self.producer.send(records)
        except QueuekitError as exc:
            log.warning("releasing %d message(s) of %s: %s", len(pending), self.topic, exc)
            for delivery in pending:
                self._release_locally(delivery)
            return False
        for delivery in pending:
            delivery.released = True
            self.settle(delivery)
        return True

    def _release_locally(self, delivery: KafkaDelivery) -> None:
        """Forget ``delivery`` without committing past it (Kafka redelivers it)."""
        if not delivery.mark_settled():
            return
        delivery.released = True
        delivery.part.deliveries.discard(delivery)
        self._unsettled -= 1
        self._wakeup.set()

    def check_open_broker(self) -> None:
        """Raise :class:`BrokerUnavailable` once the broker of this subscription closed."""
        if self.broker_closed:
            raise BrokerUnavailable("kafka broker is not connected (closed)")

    # ------------------------------------------------------------------ closing and stats

    @property
    def closed(self) -> bool:
        return self._closed

    async def close(self) -> None:
        """Stop delivering; in-flight deliveries stay leased up to ``grace`` seconds (their
        partitions stay with this member meanwhile), then are released and the member leaves
        the group, committing the handled prefix. Returns without waiting for them."""
        if self._closed:
            return
        self._closed = True
        self._drop_waiting()
        self._wakeup.set()
        if self._unsettled == 0:
            await self._shutdown()
        else:
            self._linger = asyncio.create_task(self._finish_in_flight())

    async def abort(self) -> None:
        """Close now (the broker is closing): release in-flight deliveries, leave the group."""
        self._closed = True
        self._drop_waiting()
        if self._linger is not None:
            self._linger.cancel()
        await self.release([d for part in self._parts.values() for d in part.deliveries])
        self.broker_closed = True
        self._wakeup.set()
        await self._shutdown()

    async def _finish_in_flight(self) -> None:
        deadline = time.monotonic() + self._grace
        while self._unsettled > 0 and time.monotonic() < deadline:
            await self._wait_for_change(deadline)
        await self.release([d for part in self._parts.values() for d in part.deliveries])
        await self._shutdown()

    def _drop_waiting(self) -> None:
        self._ready.clear()
        for part in self._parts.values():
            part.buffered = 0

    async def _shutdown(self) -> None:
        if self._commit_timer is not None:
            self._commit_timer.cancel()
        self._flush_commits()
        self._consumer.stop()
        await asyncio.shield(self._thread_done)
        if self._on_closed is not None:
            self._on_closed(self)

    def local_counts(self) -> tuple[int, int]:
        """``(in flight from lanes, in flight from delay/retry topics)`` of this member."""
        lanes = delayed = 0
        for part in self._parts.values():
            if part.role == LANE:
                lanes += len(part.deliveries)
            else:
                delayed += len(part.deliveries)
        return lanes, delayed

    def forget_before(self, positions: dict[Key, int]) -> None:
        """Drop waiting records below ``positions`` (the log was truncated by a purge)."""
        for key, position in positions.items():
            part = self._parts.get(key)
            if part is None:
                continue
            for gone in self._ready.drop_before(part, position):
                part.buffered -= 1
                part.ledger.settled(gone.offset)
