"""Conformance: what is published arrives, intact, once per group, in priority order."""

from __future__ import annotations

import asyncio
from collections import defaultdict

from queuekit.broker import Broker, Delivery, Subscription
from queuekit.message import Message
from queuekit.testing.conformance.base import ConformanceBase
from queuekit.testing.conformance.helpers import (
    DEFAULT_WAIT,
    BrokerFactory,
    ack_all,
    assert_no_delivery,
    collect,
    next_delivery,
    publish_json,
    require_feature,
    unique_topic,
)

ONE_MIB = 1024 * 1024


class DeliveryConformance(ConformanceBase):
    """Round trips, groups, competing consumers, isolation, concurrency, priorities."""

    async def test_round_trip_keeps_payload_headers_key_priority_and_id(
        self, broker: Broker, topic: str
    ) -> None:
        # Given messages with empty, unicode, binary and 1 MiB payloads and varied metadata
        sent = [
            Message(topic, b"", headers={"trace-id": "t-1"}, key="k-1", priority=0),
            Message.build(
                topic,
                {"text": "héllo wörld ✓ 日本語 🎉"},
                headers={"note": "ünïcödé ✓", "empty": ""},
                key="clé-✓",
                priority=3,
            ),
            Message(topic, b"\x00\xff\xfe\x80binary\x00" + bytes(range(256)), priority=7),
            Message(topic, bytes(range(256)) * (ONE_MIB // 256), key="big", priority=9),
        ]

        # When they are published and consumed
        await broker.publish(sent)
        sub = await broker.subscribe(topic)
        received = await collect(sub, len(sent))
        await ack_all(received)

        # Then each arrives byte for byte with its metadata, as a first delivery
        by_id = {d.message.id: d for d in received}
        assert sorted(by_id) == sorted(m.id for m in sent)
        for original in sent:
            delivery = by_id[original.id]
            got = delivery.message
            assert got.topic == topic
            assert got.payload == original.payload
            assert dict(got.headers) == dict(original.headers)
            assert got.key == original.key
            assert got.priority == original.priority
            assert got.attempt == 1
            assert delivery.group == "default"
        assert by_id[sent[1].id].message.json() == {"text": "héllo wörld ✓ 日本語 🎉"}

    async def test_messages_published_before_any_consumer_reach_the_first_one(
        self, broker: Broker, topic: str
    ) -> None:
        # Given messages published to a topic nobody ever subscribed to
        sent = await publish_json(broker, topic, [{"n": n} for n in range(3)])

        # When the first consumer of the default group subscribes
        sub = await broker.subscribe(topic)
        received = await collect(sub, 3)
        await ack_all(received)

        # Then it gets all of them
        assert sorted(d.message.id for d in received) == sorted(m.id for m in sent)
        assert {d.attempt for d in received} == {1}

    async def test_competing_consumers_share_the_work_without_loss_or_duplication(
        self, make_broker: BrokerFactory, topic: str
    ) -> None:
        # Given three consumers of one group, on two broker instances
        first, second = await make_broker(), await make_broker()
        subs = [
            await first.subscribe(topic, "workers", prefetch=10),
            await first.subscribe(topic, "workers", prefetch=10),
            await second.subscribe(topic, "workers", prefetch=10),
        ]
        total = 200
        received: dict[int, list[str]] = defaultdict(list)
        all_in = asyncio.Event()

        async def consume(index: int, sub: Subscription) -> None:
            async for delivery in sub:
                received[index].append(delivery.message.id)
                await delivery.ack()
                if sum(len(ids) for ids in received.values()) >= total:
                    all_in.set()
                await asyncio.sleep(0.002)  # a handler doing 2 ms of I/O: others get turns

        consumers = [asyncio.create_task(consume(i, sub)) for i, sub in enumerate(subs)]
        try:
            # When 200 messages are published
            sent = await publish_json(first, topic, range(total))
            async with asyncio.timeout(3 * DEFAULT_WAIT):
                await all_in.wait()
        finally:
            for sub in subs:
                await sub.close()
            async with asyncio.timeout(DEFAULT_WAIT):
                await asyncio.gather(*consumers)

        # Then every message was handled exactly once, by more than one consumer
        handled = [message_id for ids in received.values() for message_id in ids]
        assert sorted(handled) == sorted(m.id for m in sent)
        assert sum(1 for ids in received.values() if ids) >= 2, dict(received)

    async def test_each_group_receives_every_message(self, broker: Broker, topic: str) -> None:
        # Given two groups on one topic
        billing = await broker.subscribe(topic, "billing", prefetch=20)
        audit = await broker.subscribe(topic, "audit", prefetch=20)

        # When messages are published
        sent = await publish_json(broker, topic, range(20))

        # Then each group gets all of them
        for sub, group in ((billing, "billing"), (audit, "audit")):
            deliveries = await collect(sub, len(sent))
            await ack_all(deliveries)
            assert sorted(d.message.id for d in deliveries) == sorted(m.id for m in sent)
            assert {d.group for d in deliveries} == {group}

    async def test_topics_are_isolated(self, broker: Broker, topic: str) -> None:
        # Given messages on two topics
        other_topic = unique_topic()
        mine = await publish_json(broker, topic, ["mine-1", "mine-2"])
        await publish_json(broker, other_topic, ["other"])

        # When a consumer of the first topic takes what it gets
        sub = await broker.subscribe(topic)
        received = await collect(sub, 2)
        await ack_all(received)

        # Then it got its own messages only, and nothing of the other topic follows
        assert sorted(d.message.id for d in received) == sorted(m.id for m in mine)
        await assert_no_delivery(sub, within=0.3)
        other = await broker.subscribe(other_topic)
        assert (await next_delivery(other)).message.json() == "other"

    async def test_concurrent_publishers_deliver_every_message_once(
        self, broker: Broker, topic: str
    ) -> None:
        # Given a consumer and 20 publishers of 25 single-message publishes each
        sub = await broker.subscribe(topic, prefetch=50)

        async def publisher(index: int) -> list[str]:
            ids: list[str] = []
            for n in range(25):
                ids.extend(m.id for m in await publish_json(broker, topic, [[index, n]]))
            return ids

        # When they publish concurrently
        batches = await asyncio.gather(*(publisher(i) for i in range(20)))
        sent = [message_id for ids in batches for message_id in ids]

        # Then each of the 500 messages is delivered once
        received: list[Delivery] = []
        async with asyncio.timeout(3 * DEFAULT_WAIT):
            while len(received) < len(sent):
                delivery = await anext(sub)
                received.append(delivery)
                await delivery.ack()
        assert sorted(d.message.id for d in received) == sorted(sent)
        await assert_no_delivery(sub, within=0.3)

    async def test_publish_is_durable_on_return(
        self, make_broker: BrokerFactory, topic: str
    ) -> None:
        # Given a message published by a broker instance that is then closed
        producer = await make_broker()
        [sent] = await publish_json(producer, topic, [{"order": 1}])
        await producer.close()

        # When a new broker instance on the same store consumes
        consumer = await make_broker()
        delivery = await next_delivery(await consumer.subscribe(topic))
        await delivery.ack()

        # Then it has the message
        assert delivery.message.id == sent.id
        assert delivery.message.json() == {"order": 1}

    async def test_a_backlog_is_delivered_by_priority(self, broker: Broker, topic: str) -> None:
        require_feature(broker, "priorities")
        # Given a backlog with mixed priorities
        priorities = [0, 5, 9, 5, 0, 9, 3, 0, 9, 5]
        sent = [
            Message.build(topic, {"n": n}, priority=priority)
            for n, priority in enumerate(priorities)
        ]
        await broker.publish(sent)

        # When one consumer takes them one at a time
        sub = await broker.subscribe(topic, prefetch=1)
        order: list[int] = []
        for _ in sent:
            delivery = await next_delivery(sub)
            order.append(delivery.message.json()["n"])
            await delivery.ack()

        # Then higher priorities come first (FIFO within a priority when strict)
        assert sorted(order) == list(range(len(sent)))
        if broker.features.strict_priority:
            assert order == sorted(range(len(sent)), key=lambda n: (-priorities[n], n))
        else:
            positions = {n: position for position, n in enumerate(order)}
            top = [positions[n] for n, p in enumerate(priorities) if p == 9]
            bottom = [positions[n] for n, p in enumerate(priorities) if p == 0]
            assert sum(top) / len(top) < sum(bottom) / len(bottom), order
