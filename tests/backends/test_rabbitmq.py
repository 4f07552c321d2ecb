"""RabbitMQ-backend specifics; the shared behaviour is in tests/conformance/test_rabbitmq.py.

Here: delay tiers and URLs (pure), the names an operator finds on the server, messages from
other AMQP clients, a consumer killed with SIGKILL, early arrivals from the delay tiers, a
topic whose queues were deleted, RabbitMQ being restarted during a run, and errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aio_pika
import httpx
import pytest

from brokers import require_broker, start_broker, stop_own_broker
from queuekit.backends import create_broker
from queuekit.backends.rabbitmq import RabbitMQBroker
from queuekit.backends.rabbitmq.management import management_url_for, vhost_of
from queuekit.backends.rabbitmq.names import MAX_DELAY_MS, MIN_DELAY_MS, delay_tier_ms
from queuekit.broker import Subscription
from queuekit.errors import BrokerError, BrokerUnavailable, ConnectionLost, PublishError
from queuekit.message import Message
from queuekit.settings import Settings
from queuekit.testing.conformance import delete_used_topics

URL = "amqp://guest:guest@127.0.0.1:5672/"
MANAGEMENT = "http://127.0.0.1:15672"
WAIT = 10.0
ROOT = Path(__file__).resolve().parents[2]


def unique_topic() -> str:
    return f"rmq-{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def broker() -> AsyncIterator[RabbitMQBroker]:
    require_broker("rabbitmq", "127.0.0.1", 5672)
    async with RabbitMQBroker(URL, visibility_timeout=1.0) as connected:
        yield connected
    # The tests' topics are unique: nothing of them should stay on the shared server.
    await delete_used_topics([connected], lambda: RabbitMQBroker(URL))


@pytest.fixture
async def raw() -> AsyncIterator[aio_pika.abc.AbstractChannel]:
    """A plain aio-pika channel: another client of the same server."""
    require_broker("rabbitmq", "127.0.0.1", 5672)
    connection = await aio_pika.connect(URL)
    try:
        yield await connection.channel()
    finally:
        await connection.close()


async def management_get(path: str) -> Any:
    async with httpx.AsyncClient(auth=("guest", "guest"), timeout=5) as client:
        response = await client.get(MANAGEMENT + path)
    response.raise_for_status()
    return response.json()


async def next_message(sub: Subscription, within: float = WAIT) -> Message:
    async with asyncio.timeout(within):
        delivery = await anext(sub)
    await delivery.ack()
    return delivery.message


async def until(condition: Callable[[], Awaitable[bool]], within: float = WAIT) -> None:
    """Poll ``condition`` until it holds, failing after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


# -- pure: delay tiers, URLs, settings -------------------------------------------------------


def test_delay_tiers_round_up_by_at_most_ten_percent_over_few_queues() -> None:
    # Given delays from 1 ms to one day, When each is given its tier
    delays = [n / 1000 for n in range(1, 5000)] + [s / 10 for s in range(50, 864_000, 7)]
    tiers = {delay: delay_tier_ms(delay) for delay in delays}

    # Then no delay is shortened, none is lengthened by more than 10 % (or to the minimum)
    for delay, tier in tiers.items():
        wanted = delay * 1000
        assert tier >= wanted - 1e-6
        assert tier <= max(MIN_DELAY_MS, wanted * 1.1 + 1e-6), (delay, tier)
    # And one day of distinct delays needs at most 29 tiers a decade
    assert len(set(tiers.values())) <= 29 * 7


def test_delay_tiers_have_bounds_and_reject_nonsense() -> None:
    # Given the extremes, Then zero waits the minimum and years wait the longest tier
    assert delay_tier_ms(0) == MIN_DELAY_MS
    assert delay_tier_ms(1.5) == 1500
    assert delay_tier_ms(3600) == 3_600_000
    assert delay_tier_ms(10 * 365 * 86400) == MAX_DELAY_MS
    # And negative or infinite delays are refused
    for bad in (-1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="finite number"):
            delay_tier_ms(bad)


def test_the_management_url_and_vhost_follow_the_amqp_url() -> None:
    # Given AMQP URLs with users, hosts and vhosts, Then the management API is on 15672
    assert management_url_for("amqp://u:p@rabbit:5672/") == "http://u:p@rabbit:15672/"
    assert management_url_for("amqps://rabbit/") == "https://rabbit:15672/"
    assert vhost_of("amqp://u:p@rabbit:5672/") == "/"
    assert vhost_of("amqp://u:p@rabbit:5672/%2F") == "/"
    assert vhost_of("amqp://u:p@rabbit:5672/orders") == "orders"


def test_from_settings_uses_the_urls_and_visibility_timeout() -> None:
    # Given rabbitmq settings, When the registry builds the backend
    settings = Settings(
        queue_type="rabbitmq",
        rabbitmq_url="amqp://app:secret@mq.internal:5672/prod",
        visibility_timeout=12.0,
    )
    broker = create_broker(settings)

    # Then it is a RabbitMQ broker on those URLs
    assert isinstance(broker, RabbitMQBroker)
    assert broker.url == settings.rabbitmq_url
    assert broker.management_url == "http://app:secret@mq.internal:15672/"
    assert broker.visibility_timeout == 12.0


# -- on the server ---------------------------------------------------------------------------


async def test_operators_find_every_part_of_a_topic_by_name(broker: RabbitMQBroker) -> None:
    # Given a topic with a published message, a "billing" group, a retry and a dead letter
    topic = unique_topic()
    await broker.publish([Message.build(topic, "first")])
    billing = await broker.subscribe(topic, "billing")
    await broker.publish([Message.build(topic, "second")])
    await (await anext(billing)).nack(1.0)
    retried = await anext(billing)
    await retried.dead_letter("bad")

    # When the management API lists the vhost
    exchange = await management_get(f"/api/exchanges/%2F/{topic}")
    queues = {q["name"]: q for q in await management_get("/api/queues/%2F?columns=name,arguments")}

    # Then the topic is a durable fanout exchange marked as queuekit's
    assert (exchange["type"], exchange["durable"]) == ("fanout", True)
    assert exchange["arguments"] == {"x-queuekit": "topic"}
    # And each group has a priority queue, the retry a TTL tier into that group, plus the DLQ
    for group in ("default", "billing"):
        assert queues[f"{topic}:{group}"]["arguments"]["x-max-priority"] == 9
    tier = queues[f"{topic}:billing:delay:1000ms"]["arguments"]
    assert tier["x-message-ttl"] == 1000
    assert (tier["x-dead-letter-exchange"], tier["x-dead-letter-routing-key"]) == (
        "",
        f"{topic}:billing",
    )
    assert f"{topic}.dlq" in queues
    bindings = await management_get(f"/api/exchanges/%2F/{topic}/bindings/source")
    assert sorted(b["destination"] for b in bindings) == [f"{topic}:billing", f"{topic}:default"]


async def test_a_plain_json_message_from_another_client_is_a_valid_message(
    broker: RabbitMQBroker, raw: aio_pika.abc.AbstractChannel
) -> None:
    # Given a group, and another client publishing to the topic's exchange without metadata
    topic = unique_topic()
    sub = await broker.subscribe(topic)
    exchange = await raw.get_exchange(topic)
    await exchange.publish(aio_pika.Message(b'{"plain": true}'), routing_key="anything")
    # And one with its own id, priority and non-string headers
    await exchange.publish(
        aio_pika.Message(
            b'{"n": 2}', message_id="ext-2", priority=4, headers={"count": 3, "x-death": []}
        ),
        routing_key="",
    )

    # When queuekit consumes them
    plain, rich = await next_message(sub), await next_message(sub)

    # Then the plain one has a fresh id, priority 0 and attempt 1
    assert plain.json() == {"plain": True}
    assert len(plain.id) == 32
    assert (plain.priority, plain.attempt, plain.key, dict(plain.headers)) == (0, 1, None, {})
    # And the other keeps its id and priority, with headers as strings and RabbitMQ's dropped
    assert (rich.id, rich.priority, dict(rich.headers)) == ("ext-2", 4, {"count": "3"})


_CRASHING_CONSUMER = """
import asyncio, os, signal, sys
from queuekit.backends.rabbitmq import RabbitMQBroker

async def main():
    broker = RabbitMQBroker(sys.argv[1])
    await broker.connect()
    sub = await broker.subscribe(sys.argv[2])
    delivery = await asyncio.wait_for(anext(sub), 20)
    print(delivery.attempt, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

asyncio.run(main())
"""


async def test_a_message_that_kills_its_consumer_counts_each_attempt(
    broker: RabbitMQBroker,
) -> None:
    # Given a message, and consumers that die by SIGKILL while handling it
    topic = unique_topic()
    [sent] = [Message.build(topic, "poison")]
    await broker.publish([sent])
    attempts = []
    for _ in range(2):
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _CRASHING_CONSUMER,
            URL,
            topic,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
        )
        async with asyncio.timeout(30):
            out, _ = await process.communicate()
        assert process.returncode == -9
        attempts.append(int(out.split()[0]))

    # When a healthy consumer gets it
    delivery = await asyncio.wait_for(anext(await broker.subscribe(topic)), WAIT)
    await delivery.ack()

    # Then every crash counted: attempts 1, 2, then 3
    assert attempts == [1, 2]
    assert (delivery.message.id, delivery.attempt) == (sent.id, 3)


async def test_a_message_that_arrives_before_it_is_due_waits_again(
    broker: RabbitMQBroker, raw: aio_pika.abc.AbstractChannel
) -> None:
    # Given a message that reaches the group's queue early (as after the longest delay tier)
    topic = unique_topic()
    sub = await broker.subscribe(topic)
    due = time.time() + 0.6
    await raw.default_exchange.publish(
        aio_pika.Message(b'"early"', message_id="early-1", headers={"x-queuekit-due": repr(due)}),
        routing_key=f"{topic}:default",
    )

    # When it is consumed, Then it is delivered only once due, as a first attempt
    message = await next_message(sub)
    assert time.time() >= due
    assert (message.id, message.attempt) == ("early-1", 1)


async def test_batched_acks_never_acknowledge_a_message_still_being_handled(
    broker: RabbitMQBroker,
) -> None:
    # Given five messages held by one consumer
    topic = unique_topic()
    sub = await broker.subscribe(topic, prefetch=5)
    sent = [Message.build(topic, {"n": n}) for n in range(5)]
    await broker.publish(sent)
    async with asyncio.timeout(WAIT):
        held = [await anext(sub) for _ in sent]

    # When all but the second are acked (out of order, in one batch) and the consumer goes
    # away while still handling the second
    for delivery in [held[4], held[0], held[3], held[2]]:
        await delivery.ack()
    await sub.close()

    # Then the second comes back, as attempt 2
    again = await broker.subscribe(topic)
    message = await next_message(again)
    assert (message.id, message.attempt) == (sent[1].id, 2)
    # And nothing else does: a message published now is the next one
    await broker.publish([sentinel := Message.build(topic, "after")])
    assert (await next_message(again)).id == sentinel.id


async def test_a_topic_whose_queues_were_deleted_gets_its_default_group_back(
    broker: RabbitMQBroker, raw: aio_pika.abc.AbstractChannel
) -> None:
    # Given a topic whose only queue an operator deleted
    topic = unique_topic()
    await broker.publish([Message.build(topic, "before")])
    await raw.queue_delete(f"{topic}:default")

    # When a message is published again
    [sent] = [Message.build(topic, "after")]
    await broker.publish([sent])

    # Then it was not routed into the void: the default group has it
    assert (await next_message(await broker.subscribe(topic))).id == sent.id


async def test_a_queue_declared_elsewhere_with_other_arguments_is_a_clear_error(
    broker: RabbitMQBroker, raw: aio_pika.abc.AbstractChannel
) -> None:
    # Given a group queue that another client declared without priorities
    topic = unique_topic()
    await raw.declare_queue(f"{topic}:default", durable=True)
    try:
        # When queuekit subscribes or publishes, Then it says what RabbitMQ refused
        with pytest.raises(BrokerError, match="inequivalent arg 'x-max-priority'") as refused:
            await broker.subscribe(topic)
        assert not isinstance(refused.value, BrokerUnavailable)
        with pytest.raises(PublishError, match="inequivalent arg 'x-max-priority'"):
            await broker.publish([Message.build(topic, "x")])
        # And the broker still works for other topics
        other = unique_topic()
        sub = await broker.subscribe(other)
        [sent] = [Message.build(other, "fine")]
        await broker.publish([sent])
        assert (await next_message(sub)).id == sent.id
    finally:
        await raw.queue_delete(f"{topic}:default")


async def test_a_consumer_whose_queue_was_deleted_consumes_again(
    broker: RabbitMQBroker, raw: aio_pika.abc.AbstractChannel
) -> None:
    # Given a consumer, whose group's queue an operator deletes
    topic = unique_topic()
    sub = await broker.subscribe(topic, "billing")
    await raw.queue_delete(f"{topic}:billing")

    # When messages are published afterwards
    async def queue_is_back() -> bool:
        stats = await broker.topic_stats(topic)
        return [(g.group, g.consumers) for g in stats.groups] == [("billing", 1)]

    await until(queue_is_back)
    [sent] = [Message.build(topic, "after")]
    await broker.publish([sent])

    # Then the consumer has its queue back and gets them
    assert (await next_message(sub)).id == sent.id


async def test_an_unreachable_server_is_unavailable() -> None:
    # Given a URL where nothing listens, When connecting, Then BrokerUnavailable says where
    broker = RabbitMQBroker("amqp://guest:guest@127.0.0.1:1/")
    with pytest.raises(BrokerUnavailable, match=r"127\.0\.0\.1:1"):
        await broker.connect()


async def test_admin_without_the_management_api_says_how_to_fix_it() -> None:
    # Given a broker whose management API URL points where nothing listens
    require_broker("rabbitmq", "127.0.0.1", 5672)
    async with RabbitMQBroker(URL, management_url="http://guest:guest@127.0.0.1:1/") as broker:
        # When topics are listed, Then the error names the plugin and the setting
        with pytest.raises(BrokerUnavailable, match=r"rabbitmq_management.*RABBITMQ_MANAGEMENT"):
            await broker.list_topics()
        # And what AMQP alone can do still works
        assert await broker.dead_letters(unique_topic()) == []


async def test_dead_letter_listing_is_not_destructive(broker: RabbitMQBroker) -> None:
    # Given three dead letters
    topic = unique_topic()
    sub = await broker.subscribe(topic)
    sent = [Message.build(topic, n) for n in range(3)]
    await broker.publish(sent)
    for _ in sent:
        async with asyncio.timeout(WAIT):
            await (await anext(sub)).dead_letter("unwanted")

    # When they are listed twice, the second time partly
    first = await broker.dead_letters(topic)
    second = await broker.dead_letters(topic, limit=2)

    # Then both listings show the same oldest-first order, and all three are still there
    assert [d.message.id for d in first] == [m.id for m in sent]
    assert [d.message.id for d in second] == [m.id for m in sent[:2]]
    assert (await broker.topic_stats(topic)).dead_letters == 3


async def test_delete_topic_removes_its_queues_and_exchange_and_nothing_else(
    broker: RabbitMQBroker,
) -> None:
    # Given a topic with a group, a delayed message, a dead letter, and a neighbour topic
    # whose name begins with the topic's
    topic = unique_topic()
    neighbour = topic + "-2"
    sub = await broker.subscribe(topic, "reports")
    await broker.publish(
        [
            Message.build(topic, "unwanted"),
            Message.build(topic, "later", delay=60),
            Message.build(neighbour, "kept"),
        ]
    )
    async with asyncio.timeout(WAIT):
        await (await anext(sub)).dead_letter("unwanted")
    await sub.close()
    queues_before = await queue_names()
    assert {f"{topic}:reports", f"{topic}.dlq"} <= queues_before
    assert any(q.startswith(f"{topic}:@all:delay:") for q in queues_before)

    # When the topic is deleted
    await broker.delete_topic(topic)

    # Then none of its queues nor its exchange is left, and the neighbour's are untouched
    # (what every backend's deletion promises is in the conformance suite)
    left = [q for q in await queue_names() if q.startswith(f"{topic}:") or q == f"{topic}.dlq"]
    assert left == []
    exchanges = await management_get("/api/exchanges/%2F?columns=name")
    names = {exchange["name"] for exchange in exchanges}
    assert topic not in names
    assert neighbour in names


async def queue_names() -> set[str]:
    return {queue["name"] for queue in await management_get("/api/queues/%2F?columns=name")}


# -- a restart of RabbitMQ -------------------------------------------------------------------


@pytest.mark.timeout(180)
async def test_a_restart_of_rabbitmq_loses_no_confirmed_message() -> None:
    require_broker("rabbitmq", "127.0.0.1", 5672)
    # Given a producer and a consumer, and 500 messages published in batches of 10
    topic = unique_topic()
    producer = RabbitMQBroker(URL, publish_timeout=120)
    consumer = RabbitMQBroker(URL)
    impatient = RabbitMQBroker(URL, publish_timeout=1)
    await producer.connect()
    await consumer.connect()
    await impatient.connect()
    sub = await consumer.subscribe(topic, prefetch=50)
    received: set[str] = set()

    async def consume() -> None:
        async for delivery in sub:
            received.add(delivery.message.id)
            with contextlib.suppress(ConnectionLost):  # then it is delivered again
                await delivery.ack()

    async def produce() -> list[str]:
        confirmed: list[str] = []
        for batch in range(50):
            messages = [Message.build(topic, {"n": batch * 10 + n}) for n in range(10)]
            await asyncio.gather(*(producer.publish([m]) for m in messages))
            confirmed.extend(m.id for m in messages)
            if batch == 10:
                started.set()
        return confirmed

    started = asyncio.Event()
    consuming = asyncio.create_task(consume())
    producing = asyncio.create_task(produce())
    try:
        # When RabbitMQ is restarted in the middle of the run
        await started.wait()
        await asyncio.to_thread(stop_own_broker, "rabbitmq")
        # (while it is down, a publish that may not wait fails: nothing is claimed published)
        with pytest.raises(ConnectionLost):
            await impatient.publish([Message.build(topic, "lost")])
        await asyncio.to_thread(start_broker, "rabbitmq")
        async with asyncio.timeout(120):
            confirmed = await producing

        # Then every message whose publish returned is received, at least once
        async def all_received() -> bool:
            return set(confirmed) <= received

        await until(all_received, within=60)
        assert len(confirmed) == 500
    finally:
        producing.cancel()
        await sub.close()
        await asyncio.wait({consuming}, timeout=WAIT)
        for broker in (producer, consumer, impatient):
            await broker.close()
        await delete_used_topics([producer, consumer], lambda: RabbitMQBroker(URL))
