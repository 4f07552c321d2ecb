"""The embedded SQLite broker: queuekit with no infrastructure, safe across processes.

One file holds every topic. Several processes (and several brokers in one process) can use
the same file: SQLite's write lock serializes claims, and leases with expiry make a crashed
consumer's messages claimable again. Publishes and settlements are group-committed: many
concurrent calls become one transaction (one fsync).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Sequence
from pathlib import Path
from typing import ClassVar

from queuekit.backends.sqlite.database import Database
from queuekit.backends.sqlite.store import Settlement
from queuekit.backends.sqlite.subscription import LeaseSettings, SqliteSubscription
from queuekit.batching import GroupCommitter, WriteBehind
from queuekit.broker import Admin, Broker, Features, TopicStats
from queuekit.errors import BrokerUnavailable, PublishError
from queuekit.interpreter import DEFAULT_SWITCH_INTERVAL
from queuekit.message import (
    DEFAULT_GROUP,
    DeadLetter,
    Message,
    check_fields,
    parse_dead_letter,
    validate_group,
    validate_topic,
)

logger = logging.getLogger(__name__)


class SqliteBroker(Broker, Admin):
    """A broker on the SQLite file at ``path`` (created if missing; its folder must exist).

    Args:
        path: the database file.
        visibility_timeout: seconds a claimed message stays leased without a heartbeat;
            after a consumer dies its messages come back at most this much later.
        poll_interval: seconds between checks for messages published by other processes
            (publishes in this process wake subscriptions at once).
        busy_timeout: seconds to wait for another process's write lock before giving up
            with :class:`~queuekit.errors.BrokerUnavailable`.
        switch_interval: while connected, the interpreter's thread switch interval is at
            most this many seconds (restored on close), so that the event loop and the
            database thread hand the GIL to each other quickly
            (see :mod:`queuekit.interpreter`); None leaves it alone.
    """

    backend: ClassVar[str] = "sqlite"
    features: ClassVar[Features] = Features(
        durable=True,
        delayed_delivery=True,
        priorities=True,
        strict_priority=True,
        ordering_per_key=False,  # several consumers of a group may hold one key at once
        crash_safe_attempts=True,
        cross_process=True,
    )

    def __init__(
        self,
        path: str | Path,
        *,
        visibility_timeout: float = 30.0,
        poll_interval: float = 0.05,
        busy_timeout: float = 5.0,
        switch_interval: float | None = DEFAULT_SWITCH_INTERVAL,
    ) -> None:
        if switch_interval is not None and not 0 < switch_interval < 1:
            raise ValueError(
                f"switch_interval must be between 0 and 1 second (or None), not {switch_interval!r}"
            )
        for name, value in (
            ("visibility_timeout", visibility_timeout),
            ("poll_interval", poll_interval),
            ("busy_timeout", busy_timeout),
        ):
            if not 0 < value < math.inf:
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        self.path = Path(path)
        self._timing = LeaseSettings(visibility_timeout, poll_interval)
        self._database = Database(
            self.path, busy_timeout=busy_timeout, switch_interval=switch_interval
        )
        self._publisher = GroupCommitter[Message](self._write_messages)
        self._settler = GroupCommitter[Settlement](self._write_settlements)
        self._acks = WriteBehind[int](self._write_acks, self._acks_failed)
        self._subscriptions: defaultdict[str, set[SqliteSubscription]] = defaultdict(set)
        self._valid_topics: set[str] = set()
        self._closing: asyncio.Task[None] | None = None

    @property
    def visibility_timeout(self) -> float:
        """Seconds a claimed message stays leased without a heartbeat."""
        return self._timing.visibility_timeout

    @property
    def write_transactions(self) -> int:
        """Write transactions this broker committed since it connected (0 when closed)."""
        return self._database.store.write_transactions if self._database.is_open else 0

    # -- lifecycle ------------------------------------------------------------------------

    async def connect(self) -> None:
        await self._database.open()
        self._closing = None

    async def close(self) -> None:
        """Close subscriptions, flush pending writes, close the file; idempotent.

        Deliveries handed out and not settled stay leased and come back after their lease
        expires (with one attempt more), exactly as after a crash. Concurrent calls all
        return once the broker is closed.
        """
        if self._closing is None:
            if not self._database.is_open:
                return
            self._closing = asyncio.create_task(self._close(), name="queuekit-sqlite-close")
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        for subscriptions in list(self._subscriptions.values()):
            for subscription in list(subscriptions):
                await subscription.close()
        await self._publisher.drain()
        await self._settler.drain()
        await self._acks.drain()
        await self._database.close()

    async def ping(self) -> None:
        await self._database.call(lambda store: store.ping())

    # -- publishing -----------------------------------------------------------------------

    async def publish(self, messages: Sequence[Message]) -> None:
        """Store ``messages`` durably (synchronous=FULL commit) before returning.

        Raises:
            InvalidTopic, InvalidMessage: a message is malformed; nothing was stored.
            BrokerUnavailable: not connected, or the file is locked or unusable.
            PublishError: SQLite refused the write (disk full...); nothing was stored.
        """
        if not messages:
            return
        for message in messages:
            self._check(message)
        if not self._database.is_open:
            raise BrokerUnavailable(f"SQLite broker on {self.path} is not connected")
        await self._publisher.submit(messages)

    def _check(self, message: Message) -> None:
        if message.topic not in self._valid_topics:
            self._valid_topics.add(validate_topic(message.topic))
        check_fields(message)

    async def _write_messages(self, messages: Sequence[Message]) -> None:
        now = time.time()
        topics = await self._database.call(
            lambda store: store.insert_messages(messages, now), failure=PublishError
        )
        for topic in topics:
            self._wake(topic)

    # -- consuming ------------------------------------------------------------------------

    async def subscribe(
        self, topic: str, group: str = DEFAULT_GROUP, *, prefetch: int = 16
    ) -> SqliteSubscription:
        validate_topic(topic)
        validate_group(group)
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 1:
            raise ValueError(f"prefetch must be a positive integer, not {prefetch!r}")
        owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        now = time.time()
        queue_id = await self._database.call(
            lambda store: store.ensure_group(
                topic, group, owner=owner, seen_until=now + self.visibility_timeout, now=now
            )
        )
        subscription = SqliteSubscription(
            self._database,
            topic,
            group,
            queue_id,
            owner=owner,
            prefetch=prefetch,
            timing=self._timing,
            settle=self._settle,
            acknowledge=self._acks.add,
            on_close=self._forget,
        )
        self._subscriptions[topic].add(subscription)
        return subscription

    def _forget(self, subscription: SqliteSubscription) -> None:
        self._subscriptions[subscription.topic].discard(subscription)
        # What it released is claimable now by the group's other local consumers.
        self._wake(subscription.topic, subscription.group)

    def _wake(self, topic: str, group: str | None = None) -> None:
        for subscription in self._subscriptions.get(topic, ()):
            if group is None or subscription.group == group:
                subscription.wake()

    def _settle(self, settlement: Settlement) -> Awaitable[None]:
        return self._settler.submit((settlement,))  # awaited by the subscription

    async def _write_acks(self, seqs: Sequence[int]) -> None:
        await self._database.call(lambda store: store.ack(seqs))

    def _acks_failed(self, acks: Sequence[int], error: Exception) -> None:
        logger.warning(
            "could not write %d acknowledgements (they are redelivered when their leases"
            " expire): %s",
            len(acks),
            error,
        )

    async def _write_settlements(self, settlements: Sequence[Settlement]) -> None:
        await self._database.call(lambda store: store.settle(settlements))
        # A nacked message may be due at once for the group's other local consumers.
        nacked_queues = {s.queue_id for s in settlements if s.kind == "nack"}
        if nacked_queues:
            for subscriptions in self._subscriptions.values():
                for subscription in subscriptions:
                    if subscription.queue_id in nacked_queues:
                        subscription.wake()

    # -- administration -------------------------------------------------------------------

    async def list_topics(self) -> list[str]:
        return await self._database.call(lambda store: store.list_topics())

    async def topic_stats(self, topic: str) -> TopicStats:
        validate_topic(topic)
        now = time.time()
        return await self._database.call(lambda store: store.topic_stats(topic, now))

    async def purge(self, topic: str) -> int:
        validate_topic(topic)
        now = time.time()
        return await self._database.call(lambda store: store.purge(topic, now))

    async def dead_letters(self, topic: str, limit: int = 100) -> list[DeadLetter]:
        validate_topic(topic)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError(f"limit must be a non-negative integer, not {limit!r}")
        messages = await self._database.call(lambda store: store.dead_letters(topic, limit))
        return [parse_dead_letter(message) for message in messages]

    async def replay_dead_letters(self, topic: str, ids: Sequence[str] | None = None) -> int:
        validate_topic(topic)
        if isinstance(ids, str):
            raise ValueError("ids must be a sequence of message ids, not a string")
        now = time.time()
        replayed = await self._database.call(
            lambda store: store.replay_dead_letters(topic, ids, now)
        )
        for replayed_topic, group in set(replayed):
            self._wake(replayed_topic, group)
        return len(replayed)

    async def purge_dead_letters(self, topic: str) -> int:
        validate_topic(topic)
        return await self._database.call(lambda store: store.purge_dead_letters(topic))

    async def delete_topic(self, topic: str) -> None:
        validate_topic(topic)
        await self._database.call(lambda store: store.delete_topic(topic))
