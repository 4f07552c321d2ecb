"""Conformance: the Admin interface (stats, purge, dead letters, replay, deleting topics)."""

from __future__ import annotations

from queuekit.broker import Broker
from queuekit.message import DLQ_SUFFIX, Message
from queuekit.testing.conformance.base import ConformanceBase
from queuekit.testing.conformance.helpers import (
    BrokerFactory,
    assert_no_delivery,
    collect,
    counts,
    eventually,
    next_delivery,
    publish_json,
    require_admin,
)


class AdminConformance(ConformanceBase):
    """Operations on topics and dead letters."""

    async def test_dead_letter_records_why_and_keeps_the_message(
        self, broker: Broker, topic: str
    ) -> None:
        admin = require_admin(broker)
        # Given a message that failed once already in group "billing"
        sub = await broker.subscribe(topic, "billing")
        sent = Message.build(topic, {"amount": 42}, headers={"trace-id": "t-9"}, key="cust-1")
        await broker.publish([sent])
        await (await next_delivery(sub)).nack()
        second = await next_delivery(sub)

        # When it is dead-lettered
        await second.dead_letter("invalid payload", error="ValueError: amount")

        # Then the dead-letter queue holds it with why, where and after how many attempts
        [letter] = await eventually(lambda: admin.dead_letters(topic), lambda dl: len(dl) == 1)
        assert letter.reason == "invalid payload"
        assert letter.error == "ValueError: amount"
        assert letter.group == "billing"
        assert letter.attempts == 2
        assert letter.topic == topic
        assert letter.message.id == sent.id
        assert letter.message.payload == sent.payload
        assert dict(letter.message.headers) == {"trace-id": "t-9"}
        assert letter.message.key == "cust-1"
        # And it is settled: not delivered again
        await assert_no_delivery(sub, within=0.3)

    async def test_replay_sends_dead_letters_back_to_the_failing_group_only(
        self, broker: Broker, topic: str
    ) -> None:
        admin = require_admin(broker)
        # Given two messages that group "failing" dead-lettered and group "healthy" acked
        failing = await broker.subscribe(topic, "failing")
        healthy = await broker.subscribe(topic, "healthy")
        first, second = await publish_json(broker, topic, ["first", "second"])
        for delivery in await collect(healthy, 2):
            await delivery.ack()
        for delivery in await collect(failing, 2):
            await delivery.dead_letter("boom")
        await eventually(lambda: admin.dead_letters(topic), lambda dl: len(dl) == 2)

        # When one of them is replayed by id
        assert await admin.replay_dead_letters(topic, [first.id]) == 1

        # Then only the failing group gets it, as a first attempt, and it leaves the DLQ
        replayed = await next_delivery(failing)
        await replayed.ack()
        assert (replayed.message.id, replayed.message.payload) == (first.id, first.payload)
        assert replayed.attempt == 1
        remaining = await admin.dead_letters(topic)
        assert [letter.message.id for letter in remaining] == [second.id]
        await assert_no_delivery(healthy, within=0.3)

        # And replaying all sends the rest
        assert await admin.replay_dead_letters(topic) == 1
        rest = await next_delivery(failing)
        await rest.ack()
        assert (rest.message.id, rest.attempt) == (second.id, 1)
        assert await admin.dead_letters(topic) == []

    async def test_purge_dead_letters_empties_them_and_counts(
        self, broker: Broker, topic: str
    ) -> None:
        admin = require_admin(broker)
        # Given three dead letters
        await publish_json(broker, topic, range(3))
        for delivery in await collect(await broker.subscribe(topic), 3):
            await delivery.dead_letter("unwanted")
        await eventually(lambda: admin.dead_letters(topic), lambda dl: len(dl) == 3)

        # When they are purged
        purged = await admin.purge_dead_letters(topic)

        # Then all three are gone
        assert purged == 3
        assert await admin.dead_letters(topic) == []
        assert (await admin.topic_stats(topic)).dead_letters == 0
        assert await admin.purge_dead_letters(topic) == 0

    async def test_topic_stats_count_waiting_in_flight_delayed_and_dead(
        self, broker: Broker, topic: str
    ) -> None:
        admin = require_admin(broker)

        async def stats_of(expected: tuple[int, int, int, int]) -> None:
            await eventually(
                lambda: admin.topic_stats(topic), lambda s: counts(s, "default") == expected
            )

        # Given three ready messages and one delayed far ahead
        await publish_json(broker, topic, [1, 2, 3])
        await publish_json(broker, topic, [4], delay=120)
        # Then: (depth, in_flight, delayed, dead_letters)
        await stats_of((3, 0, 1, 0))

        # When one is delivered and held
        sub = await broker.subscribe(topic, prefetch=1)
        delivery = await next_delivery(sub)
        # Then it counts as in flight
        await stats_of((2, 1, 1, 0))

        # When it is dead-lettered (after the consumer stopped fetching)
        await sub.close()
        await delivery.dead_letter("bad")
        # Then it counts as a dead letter
        await stats_of((2, 0, 1, 1))

    async def test_stats_of_an_unknown_topic_are_zero(self, broker: Broker, topic: str) -> None:
        admin = require_admin(broker)
        # Given a topic nobody used, When its stats are read, Then everything is zero
        stats = await admin.topic_stats(topic)
        assert (stats.depth, stats.in_flight, stats.dead_letters) == (0, 0, 0)

    async def test_purge_drops_waiting_messages(self, broker: Broker, topic: str) -> None:
        admin = require_admin(broker)
        # Given five waiting messages
        await publish_json(broker, topic, range(5))
        await eventually(lambda: admin.topic_stats(topic), lambda s: s.depth == 5)

        # When the topic is purged
        purged = await admin.purge(topic)

        # Then they are gone, and the topic still works
        assert purged == 5
        sub = await broker.subscribe(topic)
        await assert_no_delivery(sub, within=0.3)
        [sent] = await publish_json(broker, topic, ["after purge"])
        assert (await next_delivery(sub)).message.id == sent.id

    async def test_list_topics_shows_published_topics_but_not_dead_letter_queues(
        self, broker: Broker, topic: str
    ) -> None:
        admin = require_admin(broker)
        # Given a topic with a dead letter
        await publish_json(broker, topic, ["x"])
        await (await next_delivery(await broker.subscribe(topic))).dead_letter("bad")
        await eventually(lambda: admin.dead_letters(topic), lambda dl: len(dl) == 1)

        # When topics are listed
        topics = await admin.list_topics()

        # Then the topic is there, sorted, and no dead-letter queue is
        assert topic in topics
        assert topics == sorted(topics)
        assert not [name for name in topics if name.endswith(DLQ_SUFFIX)]

    async def test_delete_topic_removes_it_for_every_group_and_spares_its_neighbour(
        self, broker: Broker, topic: str
    ) -> None:
        admin = require_admin(broker)
        # Given a topic with two groups, a dead letter and a delayed message, and a neighbour
        # topic whose name begins with the topic's
        neighbour = topic + "-2"
        billing = await broker.subscribe(topic, "billing")
        audit = await broker.subscribe(topic, "audit")
        await publish_json(broker, topic, ["bad"])
        await (await next_delivery(billing)).dead_letter("bad")
        await broker.publish(
            [Message.build(topic, "later", delay=300), Message.build(neighbour, "kept")]
        )
        await billing.close()
        await audit.close()
        await eventually(lambda: admin.topic_stats(topic), lambda s: s.dead_letters == 1)

        # When the topic is deleted
        await admin.delete_topic(topic)

        # Then it is no longer listed and holds nothing, for any group
        await eventually(admin.list_topics, lambda topics: topic not in topics)
        stats = await admin.topic_stats(topic)
        assert (stats.groups, stats.dead_letters) == ((), 0)
        assert await admin.dead_letters(topic) == []
        # And the neighbour is untouched
        assert neighbour in await admin.list_topics()
        await eventually(lambda: admin.topic_stats(neighbour), lambda s: s.depth == 1)
        # And deleting it again does nothing, and a later publish starts it afresh
        await admin.delete_topic(topic)
        [fresh] = await publish_json(broker, topic, ["fresh"])
        sub = await broker.subscribe(topic)
        delivery = await next_delivery(sub)
        await delivery.ack()
        assert (delivery.message.id, delivery.attempt) == (fresh.id, 1)
        await assert_no_delivery(sub, within=0.3)

    async def test_a_publish_after_another_broker_deleted_the_topic_is_kept(
        self, make_broker: BrokerFactory, topic: str
    ) -> None:
        # Given a broker that has published to the topic (and may remember its objects)
        first = await make_broker()
        await publish_json(first, topic, ["before"])

        # When another broker deletes the topic, and the first publishes again
        await require_admin(await make_broker()).delete_topic(topic)
        [after] = await publish_json(first, topic, ["after"])

        # Then the new message is kept and delivered, and only it
        sub = await first.subscribe(topic)
        delivery = await next_delivery(sub)
        await delivery.ack()
        assert delivery.message.id == after.id
        await assert_no_delivery(sub, within=0.3)
