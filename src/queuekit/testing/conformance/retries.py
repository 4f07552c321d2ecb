"""Conformance: nack, delays, redelivery after a consumer goes away, attempt counting."""

from __future__ import annotations

import time

import pytest

from queuekit.broker import Broker
from queuekit.message import Message
from queuekit.testing.conformance.base import ConformanceBase
from queuekit.testing.conformance.helpers import (
    DEFAULT_WAIT,
    BrokerFactory,
    assert_no_delivery,
    collect,
    next_delivery,
    publish_json,
    require_feature,
)

# Clocks of broker and test may tick differently by a few milliseconds.
CLOCK_SLACK = 0.05


class RetryConformance(ConformanceBase):
    """Redelivery rules: to the same group only, not early, with attempt + 1."""

    async def test_nack_redelivers_to_the_same_group_only_after_the_delay(
        self, broker: Broker, topic: str
    ) -> None:
        require_feature(broker, "delayed_delivery")
        # Given one message consumed by two groups
        failing = await broker.subscribe(topic, "failing")
        healthy = await broker.subscribe(topic, "healthy")
        [sent] = await publish_json(broker, topic, [{"n": 1}])
        await (await next_delivery(healthy)).ack()
        first = await next_delivery(failing)
        assert first.attempt == 1

        # When the failing group nacks it with a delay
        delay = 1.0
        nacked_at = time.monotonic()
        await first.nack(delay)

        # Then it is not redelivered early, then comes back to that group with attempt 2
        await assert_no_delivery(failing, within=delay / 2)
        retry = await next_delivery(failing)
        assert time.monotonic() - nacked_at >= delay - CLOCK_SLACK
        assert retry.message.id == sent.id
        assert retry.message.payload == sent.payload
        assert retry.attempt == 2
        assert retry.group == "failing"
        await retry.ack()
        # And the other group never sees the retry
        await assert_no_delivery(healthy, within=0.3)

    async def test_nack_without_delay_redelivers_promptly(self, broker: Broker, topic: str) -> None:
        # Given a delivered message
        [sent] = await publish_json(broker, topic, ["again"])
        sub = await broker.subscribe(topic)
        first = await next_delivery(sub)

        # When it is nacked without delay
        await first.nack()

        # Then it is delivered again with attempt 2
        retry = await next_delivery(sub, within=5.0)
        await retry.ack()
        assert (retry.message.id, retry.attempt) == (sent.id, 2)

    async def test_delayed_publish_is_not_delivered_early(self, broker: Broker, topic: str) -> None:
        require_feature(broker, "delayed_delivery")
        # Given a consumer, and a message published with a delay
        sub = await broker.subscribe(topic)
        delay = 1.2
        published_at = time.monotonic()
        [sent] = await publish_json(broker, topic, ["later"], delay=delay)

        # When the consumer waits, Then nothing comes before the delay
        await assert_no_delivery(sub, within=delay / 2)
        # And the message comes after it
        delivery = await next_delivery(sub)
        await delivery.ack()
        assert time.monotonic() - published_at >= delay - CLOCK_SLACK
        assert (delivery.message.id, delivery.attempt) == (sent.id, 1)

    async def test_deliveries_of_a_consumer_that_went_away_are_redelivered(
        self, make_broker: BrokerFactory, topic: str
    ) -> None:
        # Given a consumer holding three unsettled deliveries
        gone = await make_broker()
        # (the group exists before publishing: on RabbitMQ a new group starts empty)
        holder = await gone.subscribe(topic, "workers", prefetch=3)
        sent = await publish_json(gone, topic, range(3))
        held = await collect(holder, 3)
        assert {d.attempt for d in held} == {1}
        survivor = await (await make_broker()).subscribe(topic, "workers")

        # When its broker instance goes away without settling them
        await gone.close()

        # Then another consumer of the group gets them, with attempt 2
        redelivered = await collect(survivor, 3, within=self.visibility_timeout + DEFAULT_WAIT)
        for delivery in redelivered:
            await delivery.ack()
        assert sorted(d.message.id for d in redelivered) == sorted(m.id for m in sent)
        assert {d.attempt for d in redelivered} == {2}

    async def test_unsettled_deliveries_of_a_closed_subscription_are_redelivered(
        self, make_broker: BrokerFactory, topic: str
    ) -> None:
        # Given a subscription holding an unsettled delivery
        broker = await make_broker()
        [sent] = await publish_json(broker, topic, ["held"])
        sub = await broker.subscribe(topic)
        held = await next_delivery(sub)

        # When the subscription is closed without settling it
        await sub.close()

        # Then another consumer of the group gets it with attempt 2
        other = await (await make_broker()).subscribe(topic)
        retry = await next_delivery(other, within=self.visibility_timeout + DEFAULT_WAIT)
        await retry.ack()
        assert (retry.message.id, retry.attempt) == (sent.id, 2)
        assert held.attempt == 1

    async def test_acks_made_just_before_the_broker_closes_are_kept(
        self, make_broker: BrokerFactory, topic: str
    ) -> None:
        # Given three deliveries acked right before their broker closes (acks may be
        # batched: closing must write the ones still queued)
        first = await make_broker()
        sub = await first.subscribe(topic, "workers", prefetch=3)
        await publish_json(first, topic, range(3))
        for delivery in await collect(sub, 3):
            await delivery.ack()
        await first.close()

        # When another consumer of the group comes, and one more message is published
        second = await make_broker()
        survivor = await second.subscribe(topic, "workers")
        [after] = await publish_json(second, topic, ["after"])

        # Then it gets only that message, even once every lease has expired
        delivery = await next_delivery(survivor)
        await delivery.ack()
        assert (delivery.message.id, delivery.attempt) == (after.id, 1)
        await assert_no_delivery(survivor, within=self.visibility_timeout + 1.0)

    async def test_attempts_survive_consumers_going_away(
        self, make_broker: BrokerFactory, topic: str
    ) -> None:
        first = await make_broker()
        require_feature(first, "crash_safe_attempts")
        # Given a message whose consumers keep going away without settling it
        [sent] = await publish_json(first, topic, ["poison"])
        attempts = []
        for _ in range(3):
            consumer = await make_broker()
            delivery = await next_delivery(
                await consumer.subscribe(topic), within=self.visibility_timeout + DEFAULT_WAIT
            )
            assert delivery.message.id == sent.id
            attempts.append(delivery.attempt)
            # When the consumer goes away
            await consumer.close()

        # Then each delivery counted one more attempt
        assert attempts == [1, 2, 3]

    async def test_settling_twice_raises(self, broker: Broker, topic: str) -> None:
        # Given two deliveries, each settled once
        await broker.publish([Message.build(topic, n) for n in range(2)])
        sub = await broker.subscribe(topic)
        acked, nacked = await collect(sub, 2)
        await acked.ack()
        await nacked.nack(60)

        # When they are settled again, Then that is refused
        with pytest.raises(RuntimeError):
            await acked.ack()
        with pytest.raises(RuntimeError):
            await acked.nack()
        with pytest.raises(RuntimeError):
            await nacked.dead_letter("too late")
