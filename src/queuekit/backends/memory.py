"""In-memory backend: the whole broker contract inside one process, for tests and demos.

State lives in a :class:`MemoryStore`. Several :class:`MemoryBroker` instances may share one
store: that is how tests model "another consumer" or "a new broker client" without a server.
Nothing is persisted and nothing leaves the process (``durable`` and ``cross_process`` are
False); everything else in :mod:`queuekit.broker` is honoured, priorities strictly.

Retention: a topic keeps a message until every group that holds it has acked or
dead-lettered it; a group subscribing for the first time starts with what is still kept.
Consumers wait on futures woken by publishes and settlements, with a timer only for the next
delayed message or abandoned lease. All state changes are synchronous on the event loop, so no
locks are needed.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import ClassVar

from queuekit.broker import (
    Admin,
    Broker,
    Delivery,
    Features,
    GroupStats,
    Subscription,
    TopicStats,
)
from queuekit.errors import BrokerUnavailable
from queuekit.message import (
    DEFAULT_GROUP,
    MAX_PRIORITY,
    DeadLetter,
    Message,
    check_fields,
    dead_letter_headers,
    dlq_topic,
    parse_dead_letter,
    validate_group,
    validate_topic,
)
from queuekit.settings import Settings

__all__ = ["MemoryBroker", "MemoryStore", "MemorySubscription", "from_settings"]


@dataclass(slots=True, eq=False)
class _Retained:
    """A message the topic keeps while ``holders`` groups have not handled it yet."""

    message: Message
    seq: int
    holders: int = 0


@dataclass(slots=True, eq=False)
class _Entry:
    """A message in one group's queue; ``deliveries`` counts its deliveries to that group."""

    retained: _Retained
    deliveries: int = 0


@dataclass(slots=True, eq=False)
class _Lease:
    """An unsettled delivery. It never expires while ``holder`` (its subscription) is open."""

    entry: _Entry
    holder: MemorySubscription | None
    expires_at: float = math.inf


class _Topic:
    """A topic: its groups, the messages it retains for them, and its dead letters."""

    __slots__ = ("counter", "dead_letters", "groups", "name", "retained")

    def __init__(self, name: str, counter: itertools.count[int]) -> None:
        self.name = name
        self.counter = counter
        self.groups: dict[str, _Group] = {}
        self.retained: dict[int, _Retained] = {}
        self.dead_letters: list[Message] = []

    def retain(self, message: Message) -> _Retained:
        seq = next(self.counter)
        kept = _Retained(message, seq)
        self.retained[seq] = kept
        return kept

    def group(self, name: str) -> _Group:
        """The group ``name``, created (starting from the retained messages) if new."""
        group = self.groups.get(name)
        if group is None:
            group = self.groups[name] = _Group(self)
            now_wall, now = time.time(), time.monotonic()
            for kept in self.retained.values():
                group.add(kept, now_wall, now)
        return group


class _ReadyQueue:
    """A group's ready entries: highest priority first, then in the order they got ready.

    One FIFO per priority: a push and a pop cost O(1), where one heap of the whole backlog
    cost a logarithm of it in tuple comparisons per message.
    """

    __slots__ = ("_by_priority", "_count", "_highest")

    def __init__(self) -> None:
        self._by_priority: list[collections.deque[_Entry]] = [
            collections.deque() for _ in range(MAX_PRIORITY + 1)
        ]
        self._count = 0
        self._highest = -1  # no FIFO above this priority holds an entry

    def __len__(self) -> int:
        return self._count

    def push(self, entry: _Entry) -> None:
        priority = entry.retained.message.priority
        self._by_priority[priority].append(entry)
        self._count += 1
        if priority > self._highest:
            self._highest = priority

    def pop(self) -> _Entry | None:
        """The next entry to deliver, or None if there is none."""
        if not self._count:
            return None
        by_priority = self._by_priority
        highest = self._highest
        while not by_priority[highest]:
            highest -= 1
        self._highest = highest
        self._count -= 1
        return by_priority[highest].popleft()

    def clear(self) -> list[_Entry]:
        """Remove every entry; return them."""
        entries = [entry for fifo in reversed(self._by_priority) for entry in fifo]
        for fifo in self._by_priority:
            fifo.clear()
        self._count = 0
        self._highest = -1
        return entries


class _Group:
    """Delivery state of one consumer group of a topic."""

    __slots__ = ("consumers", "delayed", "expiries", "leases", "ready", "topic", "waiters")

    def __init__(self, topic: _Topic) -> None:
        self.topic = topic
        self.ready = _ReadyQueue()
        # (due on the monotonic clock, order, entry)
        self.delayed: list[tuple[float, int, _Entry]] = []
        self.leases: dict[int, _Lease] = {}
        # (expires_at, token) of leases whose subscription went away; stale rows are skipped.
        self.expiries: list[tuple[float, int]] = []
        self.waiters: set[MemorySubscription] = set()
        self.consumers = 0

    def add(self, kept: _Retained, now_wall: float, now: float) -> None:
        kept.holders += 1
        not_before = kept.message.not_before
        if not_before is not None and not_before > now_wall:
            self.requeue(_Entry(kept), now + (not_before - now_wall))
        else:
            self.ready.push(_Entry(kept))

    def requeue(self, entry: _Entry, due: float | None) -> None:
        if due is None:
            self.ready.push(entry)
        else:
            heapq.heappush(self.delayed, (due, next(self.topic.counter), entry))

    def promote(self, now: float) -> None:
        """Make due delayed messages and expired abandoned leases ready."""
        while self.delayed and self.delayed[0][0] <= now:
            _, _, entry = heapq.heappop(self.delayed)
            self.requeue(entry, None)
        while self.expiries and self.expiries[0][0] <= now:
            expires_at, token = heapq.heappop(self.expiries)
            lease = self.leases.get(token)
            if lease is not None and lease.holder is None and lease.expires_at == expires_at:
                del self.leases[token]
                self.requeue(lease.entry, None)

    def next_due(self) -> float | None:
        dues = [heap[0][0] for heap in (self.delayed, self.expiries) if heap]
        return min(dues) if dues else None

    def take(self, holder: MemorySubscription, token: int) -> _Entry | None:
        entry = self.ready.pop()
        if entry is None:
            return None
        entry.deliveries += 1
        self.leases[token] = _Lease(entry, holder)
        return entry

    def settle(self, token: int) -> _Entry | None:
        """End the lease ``token``; None if it was lost (expired and given to another)."""
        lease = self.leases.pop(token, None)
        if lease is None:
            return None
        if lease.holder is not None:
            lease.holder.release(token)
        return lease.entry

    def abandon(self, tokens: Iterable[int], visibility_timeout: float) -> None:
        """Let the leases ``tokens`` expire ``visibility_timeout`` seconds from now."""
        expires_at = time.monotonic() + visibility_timeout
        for token in tokens:
            lease = self.leases.get(token)
            if lease is not None:
                lease.holder = None
                lease.expires_at = expires_at
                heapq.heappush(self.expiries, (expires_at, token))
        self.wake()

    def forget(self, entry: _Entry) -> None:
        """The group is done with ``entry``: stop retaining it if no other group holds it."""
        kept = entry.retained
        kept.holders -= 1
        if kept.holders <= 0:
            self.topic.retained.pop(kept.seq, None)

    def purge(self) -> int:
        self.promote(time.monotonic())
        entries = self.ready.clear() + [row[2] for row in self.delayed]
        for entry in entries:
            self.forget(entry)
        self.delayed.clear()
        return len(entries)

    def stats(self, name: str) -> GroupStats:
        self.promote(time.monotonic())
        depth, in_flight, delayed = len(self.ready), len(self.leases), len(self.delayed)
        return GroupStats(
            group=name,
            depth=depth,
            in_flight=in_flight,
            delayed=delayed,
            lag=depth + in_flight + delayed,
            consumers=self.consumers,
        )

    def wake(self) -> None:
        for waiter in list(self.waiters):
            waiter.notify()


class MemoryStore:
    """The state of in-memory brokers: topics, groups, leases and dead letters.

    Share one store between :class:`MemoryBroker` instances to have them see the same
    messages. A store belongs to one event loop at a time.
    """

    def __init__(self) -> None:
        self._counter = itertools.count()
        self._tokens = itertools.count(1)
        self._topics: dict[str, _Topic] = {}

    def topic(self, name: str) -> _Topic:
        topic = self._topics.get(name)
        if topic is None:
            topic = self._topics[name] = _Topic(name, self._counter)
        return topic

    def find(self, name: str) -> _Topic | None:
        return self._topics.get(name)

    def topic_names(self) -> list[str]:
        return sorted(self._topics)

    def drop(self, name: str) -> None:
        """Forget topic ``name`` with its groups and dead letters (if it exists)."""
        self._topics.pop(name, None)

    def new_token(self) -> int:
        return next(self._tokens)

    def append(self, messages: Sequence[Message]) -> None:
        """Store ``messages`` for every group of their topics (the default group if none)."""
        now_wall, now = time.time(), time.monotonic()
        touched: dict[_Group, None] = {}  # in the order first touched
        topic: _Topic | None = None
        for message in messages:
            if topic is None or topic.name != message.topic:  # a batch is mostly one topic
                topic = self.topic(message.topic)
            if not topic.groups:
                topic.group(DEFAULT_GROUP)
            kept = topic.retain(message)
            for group in topic.groups.values():
                group.add(kept, now_wall, now)
                touched[group] = None
        for group in touched:
            group.wake()


class MemoryDelivery(Delivery):
    """A delivery from a :class:`MemoryBroker`."""

    __slots__ = ("_broker", "_entry", "_group", "_group_name", "_message", "_settled", "_token")

    def __init__(
        self,
        broker: MemoryBroker,
        group: _Group,
        group_name: str,
        token: int,
        entry: _Entry,
    ) -> None:
        self._broker = broker
        self._group = group
        self._group_name = group_name
        self._token = token
        self._entry = entry
        message = entry.retained.message
        # Copying a frozen message costs more than the rest of a delivery: reuse it when it can.
        self._message = (
            message
            if message.attempt == entry.deliveries
            else message.with_attempt(entry.deliveries)
        )
        self._settled = False

    @property
    def message(self) -> Message:
        return self._message

    @property
    def attempt(self) -> int:
        return self._message.attempt  # read per message: one property instead of two

    @property
    def group(self) -> str:
        return self._group_name

    def _begin_settle(self) -> _Entry | None:
        if self._settled:
            raise RuntimeError(f"delivery of message {self._message.id} was already settled")
        self._broker.check_connected()
        self._settled = True
        return self._group.settle(self._token)

    async def ack(self) -> None:
        entry = self._begin_settle()
        if entry is not None:
            self._group.forget(entry)

    async def nack(self, delay: float = 0.0) -> None:
        if not delay >= 0 or math.isinf(delay):
            raise ValueError(f"nack delay must be a finite number of seconds >= 0, not {delay!r}")
        entry = self._begin_settle()
        if entry is None:
            return
        self._group.requeue(entry, time.monotonic() + delay if delay > 0 else None)
        self._group.wake()

    async def dead_letter(self, reason: str, *, error: str | None = None) -> None:
        entry = self._begin_settle()
        if entry is None:
            return
        original = entry.retained.message
        headers = dead_letter_headers(
            original, reason=reason, error=error, group=self._group_name, attempts=entry.deliveries
        )
        self._group.topic.dead_letters.append(
            replace(
                original,
                topic=dlq_topic(original.topic),
                headers=headers,
                attempt=entry.deliveries,
            )
        )
        self._group.forget(entry)


class MemorySubscription(Subscription):
    """A consumer of one (topic, group) on a :class:`MemoryBroker`."""

    def __init__(self, broker: MemoryBroker, group: _Group, group_name: str, prefetch: int) -> None:
        self._broker = broker
        self._group = group
        self._group_name = group_name
        self._prefetch = prefetch
        self._held: set[int] = set()
        self._closed = False
        self._waker: asyncio.Future[None] | None = None
        group.consumers += 1

    @property
    def closed(self) -> bool:
        return self._closed

    async def __anext__(self) -> MemoryDelivery:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if len(self._held) >= self._prefetch:
                await self._wait(for_messages=False, due=None)  # until a settlement or close
                continue
            ready = self.take_ready(1)
            if ready:
                return ready[0]
            await self._wait(for_messages=True, due=self._group.next_due())

    def take_ready(self, limit: int) -> list[MemoryDelivery]:
        """The messages :meth:`__anext__` would hand out now, up to ``limit``."""
        taken: list[MemoryDelivery] = []
        room = min(limit, self._prefetch - len(self._held))
        if self._closed or room <= 0:
            return taken
        group = self._group
        if group.delayed or group.expiries:  # else there is nothing to promote
            group.promote(time.monotonic())
        store = self._broker.store
        while room > 0:
            token = store.new_token()
            entry = group.take(self, token)
            if entry is None:
                break
            self._held.add(token)
            taken.append(MemoryDelivery(self._broker, group, self._group_name, token, entry))
            room -= 1
        return taken

    async def _wait(self, *, for_messages: bool, due: float | None) -> None:
        """Wait for :meth:`notify`: from the group if ``for_messages``, or when ``due``."""
        loop = asyncio.get_running_loop()
        waker = self._waker = loop.create_future()
        timer = None
        if due is not None:
            timer = loop.call_later(max(0.0, due - time.monotonic()), self.notify)
        if for_messages:
            self._group.waiters.add(self)
        try:
            await waker
        finally:
            self._group.waiters.discard(self)
            self._waker = None
            if timer is not None:
                timer.cancel()

    def notify(self) -> None:
        """Wake this subscription's waiting ``__anext__`` so that it looks again."""
        if self._waker is not None and not self._waker.done():
            self._waker.set_result(None)

    def release(self, token: int) -> None:
        """A delivery of this subscription was settled: room for one more."""
        self._held.discard(token)
        self.notify()

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._group.consumers -= 1
        held, self._held = self._held, set()
        self._group.abandon(held, self._broker.visibility_timeout)
        self._broker.forget_subscription(self)
        self.notify()


class MemoryBroker(Broker, Admin):
    """A broker whose state lives in a :class:`MemoryStore` of this process.

    Args:
        store: the state to use; share one between instances to let them see the same
            messages. A new empty store by default.
        visibility_timeout: seconds after which the unsettled deliveries of a subscription
            that went away (closed, or its broker closed) are redelivered.
    """

    backend: ClassVar[str] = "memory"
    features: ClassVar[Features] = Features(
        durable=False,
        delayed_delivery=True,
        priorities=True,
        strict_priority=True,
        ordering_per_key=False,
        crash_safe_attempts=True,
        cross_process=False,
    )

    def __init__(
        self, store: MemoryStore | None = None, *, visibility_timeout: float = 30.0
    ) -> None:
        if not visibility_timeout > 0 or math.isinf(visibility_timeout):
            raise ValueError("visibility_timeout must be a positive number of seconds")
        self.store = store if store is not None else MemoryStore()
        self.visibility_timeout = visibility_timeout
        self._connected = False
        self._subscriptions: set[MemorySubscription] = set()

    def check_connected(self) -> None:
        """Raise :class:`BrokerUnavailable` unless connected."""
        if not self._connected:
            raise BrokerUnavailable("memory broker is not connected")

    def forget_subscription(self, subscription: MemorySubscription) -> None:
        self._subscriptions.discard(subscription)

    async def connect(self) -> None:
        self._connected = True

    async def close(self) -> None:
        for subscription in list(self._subscriptions):
            await subscription.close()
        self._connected = False

    async def ping(self) -> None:
        self.check_connected()

    async def publish(self, messages: Sequence[Message]) -> None:
        self.check_connected()
        checked_topic = None  # a batch is mostly one topic: checked once
        for message in messages:  # every message is checked before any is stored
            if message.topic is not checked_topic:
                checked_topic = validate_topic(message.topic)
            check_fields(message)
        self.store.append(messages)

    async def subscribe(
        self, topic: str, group: str = DEFAULT_GROUP, *, prefetch: int = 16
    ) -> MemorySubscription:
        self.check_connected()
        validate_topic(topic)
        validate_group(group)
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 1:
            raise ValueError("prefetch must be a positive integer")
        state = self.store.topic(topic).group(group)
        subscription = MemorySubscription(self, state, group, prefetch)
        self._subscriptions.add(subscription)
        return subscription

    # Admin

    async def list_topics(self) -> list[str]:
        self.check_connected()
        return self.store.topic_names()

    async def topic_stats(self, topic: str) -> TopicStats:
        self.check_connected()
        state = self.store.find(validate_topic(topic))
        if state is None:
            return TopicStats(topic)
        groups = tuple(group.stats(name) for name, group in sorted(state.groups.items()))
        return TopicStats(topic, groups, len(state.dead_letters))

    async def purge(self, topic: str) -> int:
        self.check_connected()
        state = self.store.find(validate_topic(topic))
        if state is None:
            return 0
        return sum(group.purge() for group in state.groups.values())

    async def dead_letters(self, topic: str, limit: int = 100) -> list[DeadLetter]:
        self.check_connected()
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError("limit must be a non-negative integer")
        state = self.store.find(validate_topic(topic))
        if state is None:
            return []
        return [parse_dead_letter(message) for message in state.dead_letters[:limit]]

    async def replay_dead_letters(self, topic: str, ids: Sequence[str] | None = None) -> int:
        self.check_connected()
        state = self.store.find(validate_topic(topic))
        if state is None:
            return 0
        wanted = None if ids is None else set(ids)
        kept: list[Message] = []
        replayed = 0
        now_wall, now = time.time(), time.monotonic()
        for message in state.dead_letters:
            if wanted is not None and message.id not in wanted:
                kept.append(message)
                continue
            letter = parse_dead_letter(message)
            group = state.group(letter.group)
            group.add(state.retain(replace(letter.message, not_before=None)), now_wall, now)
            group.wake()
            replayed += 1
        state.dead_letters = kept
        return replayed

    async def purge_dead_letters(self, topic: str) -> int:
        self.check_connected()
        state = self.store.find(validate_topic(topic))
        if state is None:
            return 0
        count = len(state.dead_letters)
        state.dead_letters = []
        return count

    async def delete_topic(self, topic: str) -> None:
        self.check_connected()
        self.store.drop(validate_topic(topic))


def from_settings(settings: Settings) -> MemoryBroker:
    """A memory broker on a new, private store, with the configured visibility timeout."""
    return MemoryBroker(visibility_timeout=settings.visibility_timeout)
