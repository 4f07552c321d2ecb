"""Memory-backend specifics; the shared behaviour is in tests/conformance/test_memory.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from queuekit.backends import create_broker
from queuekit.backends.memory import MemoryBroker, MemoryStore, from_settings
from queuekit.errors import BrokerUnavailable
from queuekit.message import Message
from queuekit.settings import Settings


@pytest.fixture
async def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def broker(store: MemoryStore) -> AsyncIterator[MemoryBroker]:
    async with MemoryBroker(store, visibility_timeout=0.5) as connected:
        yield connected


def test_registry_builds_a_memory_broker_with_the_configured_visibility_timeout() -> None:
    # Given settings choosing the memory backend
    settings = Settings(queue_type="memory", visibility_timeout=7.5)

    # When the registry builds the broker
    broker = create_broker(settings)

    # Then it is a memory broker that declares what it lacks
    assert isinstance(broker, MemoryBroker)
    assert broker.visibility_timeout == 7.5
    assert from_settings(settings).store is not broker.store
    assert not broker.features.durable
    assert not broker.features.cross_process
    assert broker.features.strict_priority


def test_a_non_positive_visibility_timeout_is_rejected() -> None:
    with pytest.raises(ValueError, match="visibility_timeout"):
        MemoryBroker(visibility_timeout=0)


async def test_a_group_joining_late_starts_from_what_the_topic_still_retains(
    broker: MemoryBroker,
) -> None:
    # Given two messages on a topic, of which the default group acked the first
    await broker.publish([Message.build("late", "first"), Message.build("late", "second")])
    default = await broker.subscribe("late")
    first = await asyncio.wait_for(default.__anext__(), 5)
    await first.ack()

    # When a new group subscribes
    audit = await broker.subscribe("late", "audit")
    delivery = await asyncio.wait_for(audit.__anext__(), 5)

    # Then it gets only the message still retained, as a first delivery
    assert delivery.message.json() == "second"
    assert delivery.attempt == 1
    stats = await broker.topic_stats("late")
    assert [g.lag for g in stats.groups] == [1, 1]  # "audit" in flight, "default" ready


async def test_the_store_forgets_a_message_once_every_group_handled_it(
    broker: MemoryBroker, store: MemoryStore
) -> None:
    # Given a message held by two groups
    default = await broker.subscribe("forget")
    other = await broker.subscribe("forget", "other")
    await broker.publish([Message.build("forget", 1)])

    # When both groups ack it
    for sub in (default, other):
        await (await asyncio.wait_for(sub.__anext__(), 5)).ack()

    # Then the topic no longer retains it, so a late group starts empty
    topic = store.find("forget")
    assert topic is not None
    assert topic.retained == {}


async def test_a_nack_with_a_negative_delay_is_rejected_and_leaves_the_delivery_unsettled(
    broker: MemoryBroker,
) -> None:
    # Given a delivery
    await broker.publish([Message.build("neg", 1)])
    sub = await broker.subscribe("neg")
    delivery = await asyncio.wait_for(sub.__anext__(), 5)

    # When it is nacked with a negative delay, Then that is refused
    with pytest.raises(ValueError, match="delay"):
        await delivery.nack(-1)

    # And it can still be settled properly
    await delivery.ack()
    assert (await broker.topic_stats("neg")).groups[0].lag == 0


async def test_a_broker_never_connected_is_unavailable_for_every_operation() -> None:
    # Given a broker that was built but never connected
    broker = MemoryBroker()

    # When anything is asked of it, Then it says it is not connected
    with pytest.raises(BrokerUnavailable, match="not connected"):
        await broker.ping()
    with pytest.raises(BrokerUnavailable, match="not connected"):
        await broker.publish([Message.build("never", 1)])
    with pytest.raises(BrokerUnavailable, match="not connected"):
        await broker.subscribe("never")
    with pytest.raises(BrokerUnavailable, match="not connected"):
        await broker.topic_stats("never")


async def test_deliveries_of_a_closed_broker_cannot_be_settled_and_come_back(
    store: MemoryStore,
) -> None:
    # Given a delivery held by a broker that is then closed
    gone = MemoryBroker(store, visibility_timeout=0.2)
    await gone.connect()
    await gone.publish([Message.build("closed", 1)])
    held = await asyncio.wait_for((await gone.subscribe("closed")).__anext__(), 5)
    await gone.close()

    # When it is acked, Then that is refused
    with pytest.raises(BrokerUnavailable, match="not connected"):
        await held.ack()

    # And the message is redelivered to another broker on the store, attempt 2
    async with MemoryBroker(store) as other:
        again = await asyncio.wait_for((await other.subscribe("closed")).__anext__(), 5)
        assert again.attempt == 2
