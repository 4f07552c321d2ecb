"""Small, bounded helpers for tests against any broker: publish, collect, wait, skip.

Every wait here has a deadline; none sleeps to synchronize. A wait that must show that
nothing happens (:func:`assert_no_delivery`) consumes with a timeout and fails if anything
arrives.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar, runtime_checkable

import pytest

from queuekit.broker import Admin, Broker, Delivery, Features, GroupStats, Subscription, TopicStats
from queuekit.message import Message

T = TypeVar("T")

BrokerFactory = Callable[[], Awaitable[Broker]]
"""An async callable returning a new, connected broker instance on the shared store/server."""

DEFAULT_WAIT = 10.0
"""Seconds any single expected event may take before the test fails."""

POLL_INTERVAL = 0.02


def unique_topic(prefix: str = "conf") -> str:
    """A topic name no other test uses, so the suite can run against a persistent server."""
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@runtime_checkable
class DeletesTopics(Protocol):
    """A broker that knows which topics it used (Kafka, Redis and RabbitMQ, whose servers are
    shared) and deletes them (:meth:`~queuekit.broker.Admin.delete_topic`)."""

    @property
    def used_topics(self) -> frozenset[str]: ...

    async def delete_topic(self, topic: str) -> None: ...


async def delete_used_topics(brokers: Iterable[Broker], build: Callable[[], Broker]) -> None:
    """Delete every topic that ``brokers`` published to or subscribed to, through a broker
    from ``build``, so that unique test topics do not pile up on a shared server; nothing on
    a backend without ``delete_topic``."""
    used: set[str] = set()
    for broker in brokers:
        if isinstance(broker, DeletesTopics):
            used.update(broker.used_topics)
    if not used:
        return
    async with build() as cleaner:
        assert isinstance(cleaner, DeletesTopics)
        for topic in sorted(used):
            await cleaner.delete_topic(topic)


@asynccontextmanager
async def connected_brokers(build: Callable[[], Broker]) -> AsyncIterator[BrokerFactory]:
    """Yield a :data:`BrokerFactory` whose brokers come from ``build``, connected.

    Every broker it made is closed on exit (closing twice is harmless by contract), then the
    topics they used are deleted where the backend can (:func:`delete_used_topics`).
    """
    made: list[Broker] = []

    async def make() -> Broker:
        broker = build()
        await broker.connect()
        made.append(broker)
        return broker

    try:
        yield make
    finally:
        for broker in reversed(made):
            await broker.close()
        await delete_used_topics(made, build)


async def publish_json(
    broker: Broker, topic: str, payloads: Iterable[Any], **options: Any
) -> list[Message]:
    """Publish each payload as a JSON message (``options`` go to :meth:`Message.build`).

    All messages are published in one ``publish`` call, in order; returns them.
    """
    messages = [Message.build(topic, payload, **options) for payload in payloads]
    await broker.publish(messages)
    return messages


async def next_delivery(sub: Subscription, within: float = DEFAULT_WAIT) -> Delivery:
    """The next delivery of ``sub``, failing the test if none comes ``within`` seconds."""
    try:
        async with asyncio.timeout(within):
            return await anext(sub)
    except TimeoutError:
        raise AssertionError(f"no delivery within {within} s") from None
    except StopAsyncIteration:
        raise AssertionError("the subscription ended while a delivery was expected") from None


async def collect(sub: Subscription, n: int, within: float = DEFAULT_WAIT) -> list[Delivery]:
    """Take ``n`` deliveries from ``sub`` (unsettled), all ``within`` seconds."""
    deliveries: list[Delivery] = []
    try:
        async with asyncio.timeout(within):
            while len(deliveries) < n:
                deliveries.append(await anext(sub))
    except TimeoutError:
        raise AssertionError(f"got {len(deliveries)} of {n} deliveries in {within} s") from None
    except StopAsyncIteration:
        raise AssertionError(f"subscription ended after {len(deliveries)} of {n}") from None
    return deliveries


async def ack_all(deliveries: Iterable[Delivery]) -> None:
    """Ack every delivery."""
    for delivery in deliveries:
        await delivery.ack()


async def assert_no_delivery(sub: Subscription, within: float) -> None:
    """Consume for ``within`` seconds and fail if anything is delivered."""
    try:
        async with asyncio.timeout(within):
            delivery = await anext(sub)
    except TimeoutError:
        return
    except StopAsyncIteration:
        raise AssertionError("the subscription ended instead of waiting") from None
    raise AssertionError(
        f"unexpected delivery of message {delivery.message.id} (attempt {delivery.attempt})"
    )


async def eventually(
    probe: Callable[[], Awaitable[T]],
    check: Callable[[T], bool],
    within: float = DEFAULT_WAIT,
) -> T:
    """Poll ``probe`` until ``check`` accepts its value (``within`` seconds); return it.

    For reads that some brokers answer with a short lag (stats, dead-letter listings).

    Raises:
        AssertionError: with the last value, when the time is up first.
    """
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if check(value):
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {within} s; last value: {value!r}")
        await asyncio.sleep(POLL_INTERVAL)


def group_stats(stats: TopicStats, group: str) -> GroupStats:
    """The stats of ``group`` in ``stats`` (zeros if the broker does not list it)."""
    for entry in stats.groups:
        if entry.group == group:
            return entry
    return GroupStats(group=group, depth=0, in_flight=0, delayed=0, lag=0)


def counts(stats: TopicStats, group: str) -> tuple[int, int, int, int]:
    """``(depth, in_flight, delayed, dead_letters)`` of ``group`` in ``stats``."""
    entry = group_stats(stats, group)
    return entry.depth, entry.in_flight, entry.delayed, stats.dead_letters


def require_feature(broker: Broker, feature: str) -> None:
    """Skip the test, saying so, unless ``broker.features`` has ``feature`` set."""
    if feature not in Features.__dataclass_fields__:
        raise ValueError(f"unknown feature {feature!r}")
    if not getattr(broker.features, feature):
        pytest.skip(f"{broker.backend} lacks {feature}")


def require_admin(broker: Broker) -> Admin:
    """``broker`` as an :class:`Admin`, or skip the test, saying so."""
    if not isinstance(broker, Admin):
        pytest.skip(f"{broker.backend} lacks the Admin interface")
    return broker
