"""A Kafka consumer-group member as a queuekit :class:`~queuekit.broker.Subscription`.

Threads: a dedicated thread owns the ``confluent_kafka.Consumer`` (it consumes in batches,
runs the rebalance callbacks and applies commits and pauses); everything else runs on the
event loop. Records cross over one batch at a time (``call_soon_threadsafe``).

Per subscription the consumer reads the topic's ten priority lanes, its delay topic and the
group's retry topic. Handling is concurrent (up to ``prefetch`` deliveries of any partitions
in flight, several from one partition); each partition commits its contiguous handled prefix
(:class:`~queuekit.backends.kafka.offsets.OffsetLedger`).

* Priorities: fetched lane records wait in one buffer per priority; the highest non-empty
  one is served first. Right after an assignment, a lower lane waits (up to a second) for the
  higher lanes' first fetch, so a backlog comes out highest first. Not strict across
  partitions, consumers or later arrivals (``Features.strict_priority`` is False).
* Delay and retry topics: their records wait in a heap until ``not_before``, bounded per
  partition (``LOOKAHEAD``); a partition is paused when its window is full, so a far-future
  record delays at most the records behind that window, never the priority lanes.
* Rebalances (range assignor, so each member gets a share of every lane rather than whole
  lanes; eager protocol): a revoked partition's buffered records are dropped, its
  in-flight ones get up to ``grace`` seconds to finish, the rest are released (re-produced
  to the retry topic with ``attempt + 1``), and the handled prefix is committed before the
  partition moves. Lost partitions (session expired) are dropped without committing.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, InvalidStateError
from dataclasses import dataclass, field, replace
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from queuekit.backends.kafka.delivery import KafkaDelivery
from queuekit.backends.kafka.errors import describe, to_broker_error
from queuekit.backends.kafka.marks import Key, Mark, MarkBook
from queuekit.backends.kafka.naming import PRIORITIES, delay_topic, lane_topic, retry_topic
from queuekit.backends.kafka.offsets import OffsetLedger
from queuekit.backends.kafka.producer import AsyncProducer
from queuekit.backends.kafka.records import from_record, to_record
from queuekit.broker import Subscription
from queuekit.errors import BrokerUnavailable, ConnectionLost, QueuekitError
from queuekit.message import Message

log = logging.getLogger(__name__)

CONSUME_BATCH = 1000
CONSUME_TIMEOUT = 0.1  # seconds the consumer thread blocks; bounds command latency
PAUSE_AT = 10000  # buffered records of one partition before it is paused (refetched later)
RESUME_AT = 5000
LOOKAHEAD = 1000  # delayed records of one partition held while waiting to be due
PRIORITY_SETTLE = 1.0  # seconds a lower lane waits for higher lanes after an assignment
COMMIT_DELAY = 0.05  # seconds acks are gathered before their offsets are committed
MARK_AHEAD = 512  # records a crash-safety mark reaches beyond the one about to be delivered

_LANE, _DELAYED, _RETRY = "lane", "delayed", "retry"


@dataclass(slots=True, eq=False)
class Partition:
    """One assigned Kafka partition, for the lifetime of that assignment."""

    topic: str
    partition: int
    role: str
    priority: int
    ledger: OffsetLedger = field(default_factory=OffsetLedger)
    buffered: int = 0
    deliveries: set[KafkaDelivery] = field(default_factory=set)
    revoked: bool = False
    paused: bool = False
    # After a crash of the previous owner: its delivered, unsettled records (handled one at
    # a time), the records behind them (held back meanwhile) and the last durable probe.
    suspect: Mark | None = None
    suspects: deque[Fetched] = field(default_factory=deque)
    held: list[Fetched] = field(default_factory=list)
    probed: int = -1
    # Offsets up to ``marked`` may be delivered (their mark is durable); a mark up to
    # ``marking`` is on its way.
    marked: int = -1
    marking: int = -1
    mark_done: asyncio.Future[None] | None = None

    def topic_partition(self, offset: int = -1001) -> Any:
        return TopicPartition(self.topic, self.partition, offset)


@dataclass(slots=True, eq=False)
class Fetched:
    """A record fetched from ``part``; ``released`` once the consumer gave it back."""

    part: Partition
    offset: int
    message: Message
    released: bool = False
    earlier: int = 0  # deliveries before this one that left no trace but a mark


class KafkaSubscription(Subscription):
    """A member of the Kafka consumer group of (topic, group); see the module docstring."""

    def __init__(
        self,
        *,
        topic: str,
        group: str,
        prefetch: int,
        consumer_config: dict[str, Any],
        producer: AsyncProducer,
        grace: float,
    ) -> None:
        self.topic = topic
        self.group = group
        self.producer = producer
        self.retry_topic = retry_topic(topic, group)
        self._prefetch = prefetch
        self._grace = grace
        self._roles: dict[str, tuple[str, int]] = {
            lane_topic(topic, p): (_LANE, p) for p in PRIORITIES
        }
        self._roles[delay_topic(topic)] = (_DELAYED, 0)
        self._roles[self.retry_topic] = (_RETRY, 0)
        self._parts: dict[tuple[str, int], Partition] = {}
        self._ready: list[deque[Fetched]] = [deque() for _ in PRIORITIES]
        self._highest = 0  # no lane above this one holds a record
        self._delayed: list[tuple[float, int, Fetched]] = []
        self._order = itertools.count()
        self._unsettled = 0
        self._waiting_lanes: set[Partition] = set()  # lanes not fetched since assignment
        self._settle_until = 0.0
        self._wakeup = asyncio.Event()
        self._loop = asyncio.get_running_loop()
        self._commands: queue.SimpleQueue[tuple[str, list[Any], Future[None] | None]] = (
            queue.SimpleQueue()
        )
        self._book = MarkBook()  # the consumer thread's only
        self._unmarked: Fetched | None = None  # the next record to deliver needs a mark
        self._probing: set[Partition] = set()
        self._commit_timer: asyncio.TimerHandle | None = None
        self._error: QueuekitError | None = None
        self._closed = False
        self._broker_closed = False
        self._linger: asyncio.Task[None] | None = None
        self._stopping = False
        self._thread_done: asyncio.Future[None] = self._loop.create_future()
        try:
            self._consumer = Consumer(consumer_config)
        except KafkaException as exc:
            raise to_broker_error(exc, "creating a consumer") from exc
        self._thread = threading.Thread(
            target=self._run, name=f"queuekit-kafka-{topic}-{group}", daemon=True
        )
        self._thread.start()

    # ------------------------------------------------------------------ consumer thread

    def _run(self) -> None:
        consumer = self._consumer
        call = self._loop.call_soon_threadsafe
        try:
            consumer.subscribe(
                list(self._roles),
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
            while not self._stopping:
                self._apply_commands()
                try:
                    records = consumer.consume(CONSUME_BATCH, CONSUME_TIMEOUT)
                except KafkaException as exc:
                    error = to_broker_error(exc, f"consuming {self.topic}")
                    call(self._fail, ConnectionLost(str(error)))
                    break
                if records and not self._closed:  # a closing subscription drops records
                    call(self._on_records, records)
            self._apply_commands()
        except Exception as exc:  # the thread must always report its end
            log.exception("kafka consumer thread of %s/%s failed", self.topic, self.group)
            self._safe_call(self._fail, ConnectionLost(f"kafka consumer failed: {exc}"))
        finally:
            try:
                consumer.close()  # revokes (and commits) what is still assigned
            except (KafkaException, RuntimeError) as exc:
                log.warning("closing kafka consumer of %s/%s: %s", self.topic, self.group, exc)
            self._safe_call(self._thread_finished)

    def _safe_call(self, callback: Any, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            self._loop.call_soon_threadsafe(callback, *args)

    def _apply_commands(self) -> None:
        consumer = self._consumer
        while True:
            try:
                command, partitions, done = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                if command == "commit":
                    offsets = self._book.with_marks(partitions)
                    consumer.commit(offsets=offsets, asynchronous=True)
                elif command in ("probe", "mark"):
                    [(key, offset, count)] = partitions
                    if command == "probe":
                        mark = self._book.probe(key, offset, count)
                    else:
                        mark = self._book.mark(key, offset, count)
                    if mark is not None:
                        consumer.commit(offsets=[mark], asynchronous=False)
                elif command == "pause":
                    consumer.pause(partitions)
                elif command == "resume":
                    consumer.resume(partitions)
            except KafkaException as exc:
                # A partition revoked meanwhile, or the coordinator moving: the next commit
                # (or the revoke's synchronous one) carries the same or a later position.
                log.debug("kafka %s of %s failed: %s", command, self.topic, describe(exc))
            if done is not None:
                with contextlib.suppress(InvalidStateError):  # the waiter was cancelled
                    done.set_result(None)

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        try:
            suspects = self._book.assigned(consumer.committed(partitions, timeout=30))
        except KafkaException as exc:
            log.warning("reading committed offsets of %s failed: %s", self.topic, describe(exc))
            suspects = {}
        self._safe_call(self._assigned, keys, suspects)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        self._hand_back(consumer, partitions, lost=False)

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        self._hand_back(consumer, partitions, lost=True)

    def _hand_back(self, consumer: Any, partitions: list[Any], *, lost: bool) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        try:
            future = asyncio.run_coroutine_threadsafe(self._revoke(keys, lost=lost), self._loop)
            offsets, all_settled = future.result(timeout=self._grace + 30)
        except Exception as exc:  # loop gone or stuck: the group redelivers uncommitted ones
            log.warning("revoking %s from %s/%s: %r", keys, self.topic, self.group, exc)
            self._book.forget(keys)
            return
        self._apply_commands()  # earlier async commits go out before the final one
        final = self._book.hand_back(keys, offsets, clear=all_settled)
        if final:
            try:
                consumer.commit(offsets=final, asynchronous=False)
            except KafkaException as exc:
                log.warning("final commit of %s/%s failed: %s", self.topic, self.group, exc)
        self._book.forget(keys)

    # ------------------------------------------------------------------ event loop side

    def _assigned(self, keys: list[tuple[str, int]], suspects: dict[Key, Mark]) -> None:
        now = time.monotonic()
        for key in keys:
            role, priority = self._roles.get(key[0], (_LANE, 0))
            suspect = suspects.get(key)
            part = Partition(key[0], key[1], role, priority, suspect=suspect)
            if suspect is not None:
                part.marked = part.marking = suspect.delivered
            old = self._parts.get(key)
            if old is not None:
                old.revoked = True
            self._parts[key] = part
            if role == _LANE and priority > 0:
                self._waiting_lanes.add(part)
                self._settle_until = now + PRIORITY_SETTLE
        self._wakeup.set()

    async def _revoke(self, keys: list[tuple[str, int]], *, lost: bool) -> tuple[list[Any], bool]:
        """Hand partitions back; return the offsets to commit and whether every delivered
        record of them was settled (so the crash marks can be cleared)."""
        parts = [part for key in keys if (part := self._parts.pop(key, None)) is not None]
        for part in parts:
            part.revoked = True
            part.buffered = 0
            self._waiting_lanes.discard(part)
        self._wakeup.set()
        if lost:
            for part in parts:
                for delivery in list(part.deliveries):
                    self._release_locally(delivery)
            return [], False
        in_flight = [d for part in parts for d in part.deliveries]
        if in_flight and not self._broker_closed:
            deadline = time.monotonic() + self._grace
            while any(not d.settled for d in in_flight) and time.monotonic() < deadline:
                await self._settled_event(deadline)
        all_settled = await self.release([d for d in in_flight if not d.settled])
        offsets = []
        for part in parts:
            position = part.ledger.position
            if position is not None:
                offsets.append(part.topic_partition(position))
        return offsets, all_settled

    async def _settled_event(self, deadline: float) -> None:
        self._wakeup.clear()
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                await self._wakeup.wait()
        except TimeoutError:
            pass

    def _on_records(self, records: Sequence[Any]) -> None:
        if self._closed:
            return
        parts = self._parts
        ready = self._ready
        now = time.time()
        pause: list[Partition] = []
        for record in records:
            error = record.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    part = parts.get((record.topic(), record.partition()))
                    if part is not None:
                        self._waiting_lanes.discard(part)
                else:
                    log.debug("kafka consumer of %s: %s", self.topic, error.str())
                continue
            part = parts.get((record.topic(), record.partition()))
            if part is None or not part.ledger.fetched(record.offset()):
                continue
            message = from_record(record, self.topic, part.priority)
            fetched = Fetched(part, record.offset(), message)
            part.buffered += 1
            if part.suspect is not None and self._hold(fetched):
                continue
            if part.role == _LANE:
                priority = part.priority
                if priority:
                    self._waiting_lanes.discard(part)
                    if priority > self._highest:
                        self._highest = priority
                ready[priority].append(fetched)
                limit = PAUSE_AT
            else:
                due = message.not_before
                if due is not None and due > now:
                    heapq.heappush(self._delayed, (due, next(self._order), fetched))
                else:
                    self._make_ready(fetched)
                limit = LOOKAHEAD
            if part.buffered >= limit and not part.paused:
                part.paused = True
                pause.append(part)
        if pause:
            self._commands.put(("pause", [p.topic_partition() for p in pause], None))
        self._wakeup.set()

    def _hold(self, fetched: Fetched) -> bool:
        """Keep a record of a partition whose previous owner crashed out of the lanes."""
        part = fetched.part
        suspect = part.suspect
        if suspect is not None and fetched.offset <= suspect.delivered:
            fetched.earlier = suspect.deliveries_of(fetched.offset)
            message = fetched.message
            fetched.message = replace(message, attempt=message.attempt + fetched.earlier)
            part.suspects.append(fetched)
        else:
            part.held.append(fetched)
        self._probing.add(part)
        return True

    def _route(self, fetched: Fetched, now: float) -> None:
        due = fetched.message.not_before
        if fetched.part.role != _LANE and due is not None and due > now:
            heapq.heappush(self._delayed, (due, next(self._order), fetched))
        else:
            self._make_ready(fetched)

    def _next_suspect(self) -> tuple[Fetched | None, Partition | None, float | None]:
        """A suspect record to deliver (alone in its partition), a partition whose head
        suspect needs its probe mark first, and the seconds until a suspect is due."""
        wait: float | None = None
        now = time.time()
        for part in list(self._probing):
            if part.revoked:
                self._probing.discard(part)
            elif part.deliveries:
                continue  # one suspect at a time, so a crash blames only that one
            elif not part.suspects:
                self._probing.discard(part)
                part.suspect = None
                for fetched in part.held:
                    self._route(fetched, now)
                part.held.clear()
            else:
                head = part.suspects[0]
                due = head.message.not_before
                if due is not None and due > now:
                    wait = due - now if wait is None else min(wait, due - now)
                elif part.probed != head.offset:
                    return None, part, None
                else:
                    part.suspects.popleft()
                    return head, None, None
        return None, None, wait

    async def _mark_probe(self, part: Partition) -> None:
        """Make durable that ``part``'s head suspect is delivered once more."""
        head = part.suspects[0]
        done: Future[None] = Future()
        key = [((part.topic, part.partition), head.offset, head.earlier + 1)]
        self._commands.put(("probe", key, done))
        await asyncio.wrap_future(done)
        part.probed = head.offset
        part.marked = max(part.marked, head.offset)

    def _take(self) -> tuple[Fetched | None, float | None]:
        """The next record to deliver, or (None, seconds until one may be due)."""
        wait: float | None = None
        delayed = self._delayed
        if delayed:
            now = time.time()
            while delayed and delayed[0][0] <= now:
                _, _, fetched = heapq.heappop(delayed)
                if not fetched.part.revoked:
                    self._make_ready(fetched)
            if delayed:
                wait = delayed[0][0] - now
        for priority in range(self._highest, -1, -1):
            lane = self._ready[priority]
            self._highest = priority  # every lane above is empty
            while lane:
                fetched = lane[0]
                if fetched.part.revoked:
                    lane.popleft()
                    continue
                if self._waiting_lanes and self._must_wait_for(priority):
                    settle = self._settle_until - time.monotonic()
                    return None, settle if wait is None else min(wait, settle)
                if fetched.offset > fetched.part.marked:
                    self._unmarked = fetched
                    return None, None
                lane.popleft()
                return fetched, None
        return None, wait

    def _make_ready(self, fetched: Fetched) -> None:
        priority = fetched.message.priority
        self._ready[priority].append(fetched)
        if priority > self._highest:
            self._highest = priority

    def _must_wait_for(self, priority: int) -> bool:
        if time.monotonic() >= self._settle_until:
            self._waiting_lanes.clear()
            return False
        return any(part.priority > priority for part in self._waiting_lanes)

    async def __anext__(self) -> KafkaDelivery:
        while True:
            self._wakeup.clear()
            if self._closed:
                raise StopAsyncIteration
            if self._error is not None:
                raise self._error
            wait: float | None = None
            if self._unsettled < self._prefetch:
                if self._probing:
                    fetched, probe, wait = self._next_suspect()
                    if probe is not None:
                        await self._mark_probe(probe)
                        continue
                    if fetched is not None:
                        return self._deliver(fetched)
                fetched, lanes_wait = self._take()
                if fetched is not None:
                    return self._deliver(fetched)
                unmarked, self._unmarked = self._unmarked, None
                if unmarked is not None:
                    await self._mark(unmarked.part, unmarked.offset)
                    continue
                if lanes_wait is not None:
                    wait = lanes_wait if wait is None else min(wait, lanes_wait)
            try:
                async with asyncio.timeout(wait):
                    await self._wakeup.wait()
            except TimeoutError:
                pass

    def _deliver(self, fetched: Fetched) -> KafkaDelivery:
        part = fetched.part
        part.buffered -= 1
        if part.paused and part.buffered <= RESUME_AT:
            part.paused = False
            self._commands.put(("resume", [part.topic_partition()], None))
        if (
            part.marking < fetched.offset + MARK_AHEAD // 2
            and part.ledger.highest > part.marking
            and part.suspect is None
        ):
            self._request_mark(part, fetched.offset)  # before it is needed
        delivery = KafkaDelivery(self, fetched)
        part.deliveries.add(delivery)
        self._unsettled += 1
        return delivery

    def _request_mark(self, part: Partition, offset: int) -> asyncio.Future[None]:
        """Ask the consumer thread to mark ``part`` up to ``offset`` and a stretch ahead."""
        if part.mark_done is not None and not part.mark_done.done() and part.marking >= offset:
            return part.mark_done
        target = max(offset, min(offset + MARK_AHEAD, part.ledger.highest))
        done: Future[None] = Future()
        position = part.ledger.position if part.ledger.position is not None else offset
        self._commands.put(("mark", [((part.topic, part.partition), target, position)], done))
        part.marking = max(part.marking, target)
        waiter = asyncio.wrap_future(done)

        def marked(_: object) -> None:
            part.marked = max(part.marked, target)
            self._wakeup.set()

        waiter.add_done_callback(marked)
        part.mark_done = waiter
        return waiter

    async def _mark(self, part: Partition, offset: int) -> None:
        """Wait until records of ``part`` up to ``offset`` may be delivered."""
        await asyncio.shield(self._request_mark(part, offset))

    def settle(self, delivery: KafkaDelivery) -> None:
        """Mark ``delivery`` handled: its offset may be committed once its prefix is."""
        if delivery.settled:
            return
        delivery.mark_settled()
        fetched = delivery.fetched
        part = fetched.part
        part.deliveries.discard(delivery)
        part.ledger.settled(fetched.offset)
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
            self._commands.put(("commit", offsets, None))

    async def release(self, deliveries: Iterable[KafkaDelivery]) -> bool:
        """Give unsettled deliveries back to the group now: re-produce each to the retry
        topic with ``attempt + 1`` and settle it. If that fails they stay unsettled, and the
        group redelivers them from the last committed offset."""
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
            delivery.fetched.released = True
            self.settle(delivery)
        return True

    def _release_locally(self, delivery: KafkaDelivery) -> None:
        """Forget ``delivery`` without committing past it (Kafka redelivers it)."""
        if delivery.settled:
            return
        delivery.fetched.released = True
        delivery.mark_settled()
        delivery.fetched.part.deliveries.discard(delivery)
        self._unsettled -= 1
        self._wakeup.set()

    def _fail(self, error: QueuekitError) -> None:
        self._error = error
        self._wakeup.set()

    def _thread_finished(self) -> None:
        while True:  # nobody will apply what is left: release whoever waits for it
            try:
                _, _, done = self._commands.get_nowait()
            except queue.Empty:
                break
            if done is not None:
                with contextlib.suppress(InvalidStateError):
                    done.set_result(None)
        if not self._thread_done.done():
            self._thread_done.set_result(None)

    @property
    def broker_closed(self) -> bool:
        """Whether the broker of this subscription was closed (settling then fails)."""
        return self._broker_closed

    def check_open_broker(self) -> None:
        """Raise :class:`BrokerUnavailable` once the broker of this subscription closed."""
        if self._broker_closed:
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
        self._drop_buffers()
        self._wakeup.set()
        if self._unsettled == 0:
            await self._shutdown()
        else:
            self._linger = asyncio.create_task(self._finish_in_flight())

    async def abort(self) -> None:
        """Close now (the broker is closing): release in-flight deliveries, leave the group."""
        self._closed = True
        self._drop_buffers()
        if self._linger is not None:
            self._linger.cancel()
        in_flight = [d for part in self._parts.values() for d in part.deliveries]
        await self.release(in_flight)
        self._broker_closed = True
        self._wakeup.set()
        await self._shutdown()

    async def _finish_in_flight(self) -> None:
        deadline = time.monotonic() + self._grace
        while self._unsettled > 0 and time.monotonic() < deadline:
            await self._settled_event(deadline)
        await self.release([d for part in self._parts.values() for d in part.deliveries])
        await self._shutdown()

    def _drop_buffers(self) -> None:
        for lane in self._ready:
            lane.clear()
        self._delayed.clear()
        self._probing.clear()
        for part in self._parts.values():
            part.buffered = 0
            part.suspects.clear()
            part.held.clear()

    async def _shutdown(self) -> None:
        if self._commit_timer is not None:
            self._commit_timer.cancel()
        self._flush_commits()
        self._stopping = True
        await asyncio.shield(self._thread_done)

    def local_counts(self) -> tuple[int, int]:
        """``(in flight from lanes, in flight from delay/retry topics)`` of this member."""
        lanes = delayed = 0
        for part in self._parts.values():
            if part.role == _LANE:
                lanes += len(part.deliveries)
            else:
                delayed += len(part.deliveries)
        return lanes, delayed

    def forget_before(self, positions: dict[tuple[str, int], int]) -> None:
        """Drop buffered records below ``positions`` (the log was truncated by a purge)."""
        for key, position in positions.items():
            part = self._parts.get(key)
            if part is None:
                continue
            for lane in self._ready:
                kept = deque(f for f in lane if f.part is not part or f.offset >= position)
                for gone in (f for f in lane if f.part is part and f.offset < position):
                    part.buffered -= 1
                    part.ledger.settled(gone.offset)
                lane.clear()
                lane.extend(kept)
            kept_delayed = []
            for entry in self._delayed:
                fetched = entry[2]
                if fetched.part is part and fetched.offset < position:
                    part.buffered -= 1
                    part.ledger.settled(fetched.offset)
                else:
                    kept_delayed.append(entry)
            heapq.heapify(kept_delayed)
            self._delayed = kept_delayed
