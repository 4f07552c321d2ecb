"""Conformance: prefetch, closing, connection state and input validation."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from queuekit.broker import Broker, Delivery, Subscription
from queuekit.errors import BrokerUnavailable, InvalidMessage, InvalidTopic
from queuekit.message import COMPILED, Message
from queuekit.testing.conformance.base import ConformanceBase
from queuekit.testing.conformance.helpers import (
    DEFAULT_WAIT,
    BrokerFactory,
    ack_all,
    assert_no_delivery,
    collect,
    next_delivery,
    publish_json,
)


async def _drain(sub: Subscription) -> list[Delivery]:
    return [delivery async for delivery in sub]


async def _assert_still_running(task: asyncio.Task[object], within: float) -> None:
    done, _ = await asyncio.wait({task}, timeout=within)
    assert not done, "expected the consumer to be waiting"


async def _assert_nothing_stored(broker: Broker, topic: str) -> None:
    """Nothing published to ``topic`` so far was stored: a new subscriber's first delivery
    is a message published after it."""
    sub = await broker.subscribe(topic)
    await assert_no_delivery(sub, within=0.3)
    [sent] = await publish_json(broker, topic, ["fine"])
    assert (await next_delivery(sub)).message.id == sent.id


class LifecycleConformance(ConformanceBase):
    """Flow control and the lifecycle of subscriptions and brokers."""

    async def test_prefetch_bounds_unsettled_deliveries(self, broker: Broker, topic: str) -> None:
        # Given five waiting messages and a consumer with prefetch 2 holding two of them
        await publish_json(broker, topic, range(5))
        sub = await broker.subscribe(topic, prefetch=2)
        first, _second = await collect(sub, 2)

        # When it asks for a third
        third = asyncio.create_task(anext(sub))
        try:
            # Then it waits while two are unsettled
            await _assert_still_running(third, within=0.5)
            # And gets one once a delivery is settled
            await first.ack()
            async with asyncio.timeout(DEFAULT_WAIT):
                delivery = await third
        finally:
            third.cancel()
        assert delivery.attempt == 1

    async def test_take_ready_hands_out_what_anext_would_within_the_prefetch(
        self, broker: Broker, topic: str
    ) -> None:
        # Given six waiting messages and a consumer with prefetch 4 holding one of them
        await publish_json(broker, topic, range(6))
        sub = await broker.subscribe(topic, prefetch=4)
        held = [await next_delivery(sub)]

        # When it takes what is ready at once, waiting with anext whenever nothing is
        while len(held) < 4:
            ready = sub.take_ready(10)
            assert len(ready) <= 4 - len(held)
            held.extend(ready or [await next_delivery(sub)])

        # Then nothing more is handed out while four are unsettled, one more after an ack,
        # and every message comes once, settled like any other delivery
        assert list(sub.take_ready(10)) == []
        await held[0].ack()
        while len(held) < 6:
            ready = sub.take_ready(10)
            assert len(ready) <= 1
            held.extend(ready or [await next_delivery(sub)])
            await held[len(held) - 4].ack()
        assert sorted(d.message.json() for d in held) == list(range(6))
        await ack_all(held[3:])
        await sub.close()
        assert list(sub.take_ready(10)) == []

    async def test_closing_a_subscription_ends_a_waiting_iteration(
        self, broker: Broker, topic: str
    ) -> None:
        # Given a consumer waiting on an empty topic
        sub = await broker.subscribe(topic)
        consumer = asyncio.create_task(_drain(sub))
        await _assert_still_running(consumer, within=0.2)

        # When the subscription is closed
        await sub.close()

        # Then the iteration ends cleanly, and stays ended
        async with asyncio.timeout(DEFAULT_WAIT):
            assert await consumer == []
        with pytest.raises(StopAsyncIteration):
            await anext(sub)
        await sub.close()  # idempotent

    async def test_nothing_is_handed_out_once_closing_began(
        self, broker: Broker, topic: str
    ) -> None:
        # Given a consumer holding fetched messages it has not handed out yet
        sub = await broker.subscribe(topic, prefetch=10)
        sent = await publish_json(broker, topic, range(5))
        first = await next_delivery(sub)
        await first.ack()

        async def next_or_end() -> Delivery | None:
            try:
                return await anext(sub)
            except StopAsyncIteration:
                return None

        # When the consumer asks for the next one just after closing began
        _, handed = await asyncio.gather(sub.close(), next_or_end())

        # Then the iteration has ended, and the others go to the next consumer of the group
        assert handed is None
        rest = await collect(await broker.subscribe(topic), 4)
        await ack_all(rest)
        assert sorted(d.message.id for d in [first, *rest]) == sorted(m.id for m in sent)

    async def test_closing_the_broker_while_consuming_is_clean(
        self, make_broker: BrokerFactory, topic: str
    ) -> None:
        # Given a consumer holding one delivery and waiting for more
        broker = await make_broker()
        await publish_json(broker, topic, ["one"])
        sub = await broker.subscribe(topic)
        held = await next_delivery(sub)
        consumer = asyncio.create_task(_drain(sub))
        await _assert_still_running(consumer, within=0.2)

        # When its broker is closed
        await broker.close()

        # Then the iteration ends without error, and closing again is harmless
        async with asyncio.timeout(DEFAULT_WAIT):
            assert await consumer == []
        assert held.attempt == 1
        await broker.close()

    async def test_a_closed_broker_is_unavailable(
        self, make_broker: BrokerFactory, topic: str
    ) -> None:
        # Given a broker that was closed
        broker = await make_broker()
        await broker.close()

        # When it is used, Then it says it is not connected
        with pytest.raises(BrokerUnavailable, match="not connected"):
            await publish_json(broker, topic, ["late"])
        with pytest.raises(BrokerUnavailable, match="not connected"):
            await broker.ping()
        with pytest.raises(BrokerUnavailable, match="not connected"):
            await broker.subscribe(topic)

    async def test_settling_after_the_broker_closed_is_refused(
        self, make_broker: BrokerFactory, topic: str
    ) -> None:
        # Given deliveries whose broker has closed
        broker = await make_broker()
        sub = await broker.subscribe(topic, prefetch=2)
        await publish_json(broker, topic, ["one", "two"])
        first, second = await collect(sub, 2)
        await broker.close()

        # When they are settled, Then the caller learns the settlement cannot be made
        with pytest.raises(BrokerUnavailable):
            await first.ack()
        with pytest.raises(BrokerUnavailable):
            await second.nack()

    async def test_ping_answers_while_connected_only(self, make_broker: BrokerFactory) -> None:
        # Given a connected broker, When pinged, Then it answers
        broker = await make_broker()
        await broker.ping()

        # When it is closed, Then ping says it is not connected
        await broker.close()
        with pytest.raises(BrokerUnavailable, match="not connected"):
            await broker.ping()

    async def test_invalid_names_are_rejected_and_nothing_is_half_written(
        self, broker: Broker, topic: str
    ) -> None:
        # Given names outside the naming rules
        bad_topics = ["", "has space", "-leading-dash", "x" * 121, f"{topic}.dlq", "ünï"]

        # When they are used, Then InvalidTopic is raised
        for bad in bad_topics:
            with pytest.raises(InvalidTopic):
                await broker.publish([Message(bad, b"{}")])
            with pytest.raises(InvalidTopic):
                await broker.subscribe(bad)
        with pytest.raises(InvalidTopic):
            await broker.subscribe(topic, "bad group")

        # And a batch with one bad message stores none of it
        with pytest.raises(InvalidTopic):
            await broker.publish([Message(topic, b"1"), Message("bad topic", b"2")])
        await _assert_nothing_stored(broker, topic)

    async def test_malformed_messages_are_refused_and_nothing_is_half_written(
        self, broker: Broker, topic: str
    ) -> None:
        # Given messages made with Message(...) whose fields are malformed (a compiled build's
        # native Message refuses a field of the wrong type at construction already)
        wrong_type = TypeError if COMPILED else InvalidMessage
        malformed: list[tuple[Callable[[], Message], type[Exception]]] = [
            (lambda: Message(topic, "not bytes"), wrong_type),  # type: ignore[arg-type]
            (lambda: Message(topic, b"1", key=5), wrong_type),  # type: ignore[arg-type]
            (lambda: Message(topic, b"1", id=7), wrong_type),  # type: ignore[arg-type]
            (lambda: Message(topic, b"1", id=""), InvalidMessage),
            (lambda: Message(topic, b"1", headers={"n": 1}), InvalidMessage),  # type: ignore[dict-item]
            (lambda: Message(topic, b"1", headers={"": "no name"}), InvalidMessage),
            (lambda: Message(topic, b"1", priority=10), InvalidMessage),
            (lambda: Message(topic, b"1", priority=-1), InvalidMessage),
        ]
        if not COMPILED:  # a native Message stores priority=True as the int 1
            malformed.append((lambda: Message(topic, b"1", priority=True), InvalidMessage))

        # When each is published in a batch after a valid message, Then the batch is refused
        for make, error in malformed:
            with pytest.raises(error):
                await broker.publish([Message.build(topic, "valid"), make()])

        # And none of those batches was stored: the first delivery is a later message
        await _assert_nothing_stored(broker, topic)
