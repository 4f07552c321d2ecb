"""Kafka-specific behaviour (the shared contract is in tests/conformance/test_kafka.py).

Needs a real Kafka: ``scripts/brokers start kafka``. Every test uses its own topics.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from confluent_kafka import ConsumerGroupTopicPartitions, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from brokers import ROOT, require_broker, start_broker, stop_own_broker
from queuekit.backends import create_broker
from queuekit.backends.kafka import KafkaBroker, consumer_thread
from queuekit.backends.kafka.consumer_thread import split_runs
from queuekit.backends.kafka.delivery import KafkaDelivery
from queuekit.backends.kafka.marks import FETCH_MARK_AHEAD, FETCH_MARK_STEP, Mark, MarkBook
from queuekit.backends.kafka.naming import base_topics, group_id, retry_topic
from queuekit.backends.kafka.offsets import OffsetLedger
from queuekit.backends.kafka.partition import DELAYED, LANE, Partition
from queuekit.backends.kafka.producer import AsyncProducer
from queuekit.backends.kafka.ready import ReadyRecords
from queuekit.backends.kafka.subscription import KafkaSubscription
from queuekit.broker import Delivery
from queuekit.errors import BrokerUnavailable
from queuekit.message import Message
from queuekit.settings import Settings
from queuekit.testing.conformance import (
    assert_no_delivery,
    collect,
    delete_used_topics,
    eventually,
    next_delivery,
    publish_json,
    unique_topic,
)

HOST, PORT = "127.0.0.1", 9092
BOOTSTRAP = f"{HOST}:{PORT}"


@pytest.fixture
async def kafka() -> AsyncIterator[Callable[..., KafkaBroker]]:
    """A factory of connected brokers on the local Kafka, all closed at teardown."""
    require_broker("kafka", HOST, PORT)
    made: list[KafkaBroker] = []

    async def make(**options: object) -> KafkaBroker:
        broker = KafkaBroker(BOOTSTRAP, **options)  # type: ignore[arg-type]
        await broker.connect()
        made.append(broker)
        return broker

    yield make  # type: ignore[misc]
    for broker in reversed(made):
        await broker.close()
    await delete_used_topics(made, lambda: KafkaBroker(BOOTSTRAP))  # unique: do not pile up


def committed_offsets(topic: str, group: str) -> dict[tuple[str, int], int]:
    """What Kafka holds as committed for queuekit group ``group`` of ``topic``."""
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    request = [ConsumerGroupTopicPartitions(group_id(topic, group))]
    [future] = admin.list_consumer_group_offsets(request).values()
    return {
        (tp.topic, tp.partition): tp.offset
        for tp in future.result(timeout=10).topic_partitions
        if tp.offset >= 0
    }


# ---------------------------------------------------------------- no broker needed


def test_queuekit_topics_are_listed_without_their_lanes_delay_retry_and_dlq_topics() -> None:
    # Given the Kafka topics of two queuekit topics, a plain topic and Kafka's own
    kafka_topics = [
        "orders",
        "orders.prio9",
        "orders.delayed",
        "orders.billing.retry",
        "orders.dlq",
        "emails",
        "emails.prio1",
        "plain",
        "__consumer_offsets",
    ]

    # When the queuekit topics are picked out, Then only the base names remain, sorted
    assert base_topics(kafka_topics) == ["emails", "orders", "plain"]


def test_the_ledger_commits_only_the_contiguous_handled_prefix() -> None:
    # Given offsets 10-13 fetched from one partition
    ledger = OffsetLedger()
    for offset in (10, 11, 12, 13):
        assert ledger.fetched(offset)

    # When 11 and 12 are settled before 10
    ledger.settled(11)
    ledger.settled(12)

    # Then the position stays at 10; settling 10 moves it past 12, and 13 past the end
    assert ledger.position == 10
    ledger.settled(10)
    assert ledger.position == 13
    ledger.settled(13)
    assert (ledger.position, ledger.unsettled) == (14, 0)
    # And a record fetched again (a refetch after a pause) is ignored
    assert not ledger.fetched(12)


class _Consumed:
    """What ``Consumer.consume()`` returns for one record or event (the methods read)."""

    def __init__(self, topic: str, partition: int, offset: int, error: object = None) -> None:
        self._where = (topic, partition, offset)
        self._error = error

    def error(self) -> object:
        return self._error

    def topic(self) -> str:
        return self._where[0]

    def partition(self) -> int:
        return self._where[1]

    def offset(self) -> int:
        return self._where[2]


def test_a_fetch_is_split_in_runs_of_one_partition_and_its_events() -> None:
    # Given a fetch with records of two partitions, one coming back after the other, and an
    # end-of-partition event among them
    a0, a1 = _Consumed("orders", 0, 5), _Consumed("orders", 0, 6)
    b0 = _Consumed("orders.prio3", 0, 7)
    end = _Consumed("orders.prio3", 0, 8, error="end of partition")
    a2 = _Consumed("orders", 0, 7)

    # When it is split
    runs, events = split_runs([a0, a1, b0, end, a2])

    # Then each stretch of one partition is a run, in fetch order, and the event is apart
    assert runs == [(("orders", 0), [a0, a1]), (("orders.prio3", 0), [b0]), (("orders", 0), [a2])]
    assert events == [end]


def _unstarted_subscription() -> KafkaSubscription:
    """A subscription that never connects, for deliveries to point back to (needs a loop)."""
    producer = AsyncProducer(BOOTSTRAP, timeout=1.0, client_id="unstarted")
    return KafkaSubscription(
        topic="orders", group="g", prefetch=10, consumer_config={}, producer=producer, grace=1.0
    )


def _fetched(
    subscription: KafkaSubscription, part: Partition, *offsets: int, not_before: float | None = None
) -> list[KafkaDelivery]:
    """Deliveries of ``part`` at ``offsets``, as a fetch makes them."""
    return [
        KafkaDelivery(
            subscription,
            part,
            offset,
            replace(Message.build("orders", {"n": offset}), not_before=not_before),
        )
        for offset in offsets
    ]


async def test_ready_records_go_highest_priority_first_and_skip_revoked_partitions() -> None:
    # Given marked records on a lane of priority 0, one of priority 5, and a revoked lane
    ready = ReadyRecords()
    subscription = _unstarted_subscription()
    low, high = Partition("orders", 0, LANE, 0), Partition("orders.prio5", 0, LANE, 5)
    gone = Partition("orders.prio9", 0, LANE, 9)
    for part in (low, high, gone):
        part.marked = 100
    ready.add(low, _fetched(subscription, low, 1, 2, 3), time.time())
    ready.add(gone, _fetched(subscription, gone, 1), time.time())
    ready.add(high, _fetched(subscription, high, 7, 8), time.time())
    gone.revoked = True

    # When they are taken, at most four at once
    first = ready.take(4)
    rest = ready.take(4)

    # Then the higher lane comes first, the revoked record never, and the batch is bounded
    assert [(d.part.priority, d.offset) for d in first] == [(5, 7), (5, 8), (0, 1), (0, 2)]
    assert [d.offset for d in rest] == [3]
    assert ready.take(4) == []
    assert ready.blocked() == (None, None)


async def test_ready_records_stop_at_a_record_that_needs_its_mark() -> None:
    # Given records of which only the first two are covered by a durable mark
    ready = ReadyRecords()
    subscription = _unstarted_subscription()
    part = Partition("orders", 0, LANE, 0)
    part.marked = 11
    ready.add(part, _fetched(subscription, part, 10, 11, 12), time.time())

    # When they are taken
    taken = ready.take(10)

    # Then the unmarked one stays queued, and blocked() names it
    assert [d.offset for d in taken] == [10, 11]
    unmarked, wait = ready.blocked()
    assert unmarked is not None
    assert unmarked.offset == 12
    assert wait is None

    # And once the mark reaches it, it goes
    part.marked = 12
    assert [d.offset for d in ready.take(10)] == [12]


async def test_ready_records_hold_a_delayed_record_until_it_is_due() -> None:
    # Given a record of the delay topic due in an hour and one due already
    ready = ReadyRecords()
    subscription = _unstarted_subscription()
    part = Partition("orders.delay", 0, DELAYED, 0)
    part.marked = 100
    now = time.time()
    ready.add(part, _fetched(subscription, part, 1, not_before=now + 3600), now)
    ready.add(part, _fetched(subscription, part, 2, not_before=now - 1), now)

    # When records are taken
    taken = ready.take(10)

    # Then only the due one goes, and blocked() tells how long until the other is due
    assert [d.offset for d in taken] == [2]
    unmarked, wait = ready.blocked()
    assert unmarked is None
    assert wait is not None
    assert 3500 < wait <= 3600


def test_the_ledger_takes_a_run_of_fetched_offsets_at_once() -> None:
    # Given a ledger that has seen offsets 3 and 4
    ledger = OffsetLedger()
    assert ledger.next_offset == -1
    ledger.fetched_run([3, 4])
    assert ledger.next_offset == 5

    # When a run with a gap (a compacted or transactional log) follows
    ledger.fetched_run([5, 8])

    # Then every offset waits to be settled, the gap included in the committed prefix
    ledger.settled(3)
    ledger.settled(5)
    assert ledger.position == 4
    ledger.settled(4)
    assert ledger.position == 8
    assert not ledger.fetched(6)


def test_fetched_records_are_marked_at_fetch_within_reach_of_the_committed_position() -> None:
    # Given a partition committed at 100 whose previous owner left cleanly, and one whose
    # previous owner died with records up to 60 delivered
    book = MarkBook()
    clean, crashed = ("orders", 0), ("orders", 1)
    suspects = book.assigned(
        [TopicPartition(*clean, 100), TopicPartition(*crashed, 50, Mark(60).encode())]
    )
    assert list(suspects) == [crashed]

    # When records 100-150 of the clean one are fetched
    commit = book.mark_fetched(clean, 100, 150)

    # Then they and the next FETCH_MARK_STEP are marked by one commit of the committed
    # position, and count as marked
    reach = 150 + FETCH_MARK_STEP
    assert (commit.offset, Mark.parse(commit.metadata)) == (100, Mark(reach))
    assert book.reach(clean) == reach
    # And fetching them again, or the next records within that step, needs no new mark
    assert book.mark_fetched(clean, 120, 150) is None
    assert book.mark_fetched(clean, 151, reach) is None
    # And the first fetch past the step is marked a step further
    assert Mark.parse(book.mark_fetched(clean, reach + 1, reach + 9).metadata) == Mark(
        reach + 9 + FETCH_MARK_STEP
    )
    # And a fetch reaching past FETCH_MARK_AHEAD records beyond the position is marked only
    # that far (the rest waits for marks asked as deliveries come near)
    far = book.mark_fetched(clean, 151, 100 + FETCH_MARK_AHEAD + 500)
    assert Mark.parse(far.metadata) == Mark(100 + FETCH_MARK_AHEAD)
    # And the crashed owner's partition is not marked at fetch: its records are probed first
    assert book.mark_fetched(crashed, 50, 70) is None
    assert book.reach(crashed) == -1


def test_a_commit_past_everything_fetched_clears_a_mark_that_reached_further() -> None:
    # Given a clean partition committed at 100, whose records 100-150 were fetched and marked
    # FETCH_MARK_STEP records further
    book = MarkBook()
    key = ("orders", 0)
    book.assigned([TopicPartition(*key, 100)])
    book.mark_fetched(key, 100, 150)

    # When offsets are committed while some fetched records are unsettled, Then the mark goes
    # with them
    [busy] = book.with_marks([TopicPartition(*key, 140)])
    assert Mark.parse(busy.metadata) == Mark(150 + FETCH_MARK_STEP)
    # And once everything fetched is settled, the commit clears it: a crash of an idle
    # consumer leaves no suspects behind
    [idle] = book.with_marks([TopicPartition(*key, 151)])
    assert Mark.parse(idle.metadata) is None
    # And the next fetch is marked afresh
    assert Mark.parse(book.mark_fetched(key, 151, 160).metadata) == Mark(160 + FETCH_MARK_STEP)


def test_settings_build_a_kafka_broker() -> None:
    # Given Kafka settings, When the registry builds the broker, Then they are applied
    settings = Settings(
        queue_type="kafka", kafka_bootstrap_servers="k1:9092,k2:9092", kafka_partitions=6
    )
    broker = create_broker(settings)
    assert isinstance(broker, KafkaBroker)
    assert (broker.bootstrap_servers, broker.partitions) == ("k1:9092,k2:9092", 6)


async def test_an_unreachable_cluster_is_reported_as_unavailable() -> None:
    # Given a broker pointed at a port where no Kafka listens
    broker = KafkaBroker("127.0.0.1:1")

    # When it connects, Then it says the cluster is unavailable
    with pytest.raises(BrokerUnavailable, match="unavailable"):
        await broker.connect()
    with pytest.raises(BrokerUnavailable, match="not connected"):
        await broker.publish([Message.build("t", 1)])


def test_visibility_timeout_maps_onto_the_group_session() -> None:
    # Given a short and a long visibility timeout
    short = KafkaBroker(visibility_timeout=1.0).consumer_config("t", "g")
    long = KafkaBroker(visibility_timeout=45.0).consumer_config("t", "g")

    # Then sessions never go below Kafka's 6 s minimum, and otherwise follow the timeout
    assert short["session.timeout.ms"] == 6000
    assert long["session.timeout.ms"] == 45000
    assert long["heartbeat.interval.ms"] < long["session.timeout.ms"] / 3
    assert (short["enable.auto.commit"], short["group.id"]) == (False, "t:g")


# ---------------------------------------------------------------- against Kafka


async def test_a_plain_json_record_from_any_producer_is_a_message(
    kafka: Callable[..., KafkaBroker],
) -> None:
    # Given a consumer, and a plain producer writing JSON without any queuekit header
    broker = await kafka()
    topic = unique_topic("kafka-plain")
    sub = await broker.subscribe(topic)
    producer = Producer({"bootstrap.servers": BOOTSTRAP})
    producer.produce(topic, orjson.dumps({"from": "kcat"}), key=b"k-1")
    assert producer.flush(10) == 0

    # When it is consumed and nacked once
    first = await next_delivery(sub)
    await first.nack()
    second = await next_delivery(sub)
    await second.ack()

    # Then it is a first delivery of priority 0 with a stable id, and the retry keeps the id
    assert first.message.json() == {"from": "kcat"}
    assert (first.attempt, first.message.priority, first.message.key) == (1, 0, "k-1")
    assert len(first.message.id) == 32
    assert (second.message.id, second.attempt) == (first.message.id, 2)


async def test_an_idle_consumer_gets_a_message_without_waiting_for_a_batch_to_fill(
    kafka: Callable[..., KafkaBroker], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an idle consumer whose thread would wait 3 s for a batch of records
    monkeypatch.setattr(consumer_thread, "CONSUME_TIMEOUT", 3.0)
    monkeypatch.setattr(consumer_thread, "BUSY_CONSUME_TIMEOUT", 3.0)
    broker = await kafka()
    topic = unique_topic("kafka-idle")
    sub = await broker.subscribe(topic)
    await publish_json(broker, topic, ["warm-up"])
    await (await next_delivery(sub)).ack()

    # When one message is published
    await publish_json(broker, topic, ["alone"])

    # Then it is delivered as soon as it is fetched, well within that wait
    delivery = await next_delivery(sub, within=1.5)
    assert delivery.message.json() == "alone"
    await delivery.ack()


async def test_messages_with_one_key_are_delivered_in_publish_order(
    kafka: Callable[..., KafkaBroker],
) -> None:
    # Given 40 messages over two keys, published in four concurrent batches
    broker = await kafka()
    topic = unique_topic("kafka-order")
    sub = await broker.subscribe(topic, prefetch=40)
    batches = [
        [Message.build(topic, [batch, n], key=f"key-{n % 2}") for n in range(10)]
        for batch in range(4)
    ]
    for batch in batches:
        await broker.publish(batch)

    # When they are consumed
    deliveries = await collect(sub, 40)
    for delivery in deliveries:
        await delivery.ack()

    # Then each key's messages come in the order they were published
    published = [m.id for batch in batches for m in batch]
    for key in ("key-0", "key-1"):
        got = [d.message.id for d in deliveries if d.message.key == key]
        assert got == [i for i in published if i in set(got)]


async def test_a_retried_message_does_not_block_the_messages_behind_it(
    kafka: Callable[..., KafkaBroker],
) -> None:
    # Given five messages of one key (one partition) and two groups
    broker = await kafka()
    topic = unique_topic("kafka-poison")
    failing = await broker.subscribe(topic, "failing", prefetch=1)
    healthy = await broker.subscribe(topic, "healthy", prefetch=5)
    sent = await publish_json(broker, topic, range(5), key="same-partition")

    # When the failing group nacks the first one for a minute, handling one at a time
    poison = await next_delivery(failing)
    assert poison.message.id == sent[0].id
    await poison.nack(60)
    behind = []
    for _ in range(4):
        delivery = await next_delivery(failing)
        behind.append(delivery.message.id)
        await delivery.ack()

    # Then the four behind it are handled meanwhile, the retry waits in the group's retry
    # topic, and the other group got every message once, without the retry
    assert behind == [m.id for m in sent[1:]]
    await assert_no_delivery(failing, within=0.5)
    stats = await eventually(
        lambda: broker.topic_stats(topic),
        lambda s: {g.group: (g.depth, g.delayed) for g in s.groups}.get("failing") == (0, 1),
    )
    assert retry_topic(topic, "failing") == f"{topic}.failing.retry"
    healthy_ids = [d.message.id for d in await collect(healthy, 5)]
    assert sorted(healthy_ids) == sorted(m.id for m in sent)
    await assert_no_delivery(healthy, within=0.3)
    assert stats.dead_letters == 0


async def test_offsets_are_committed_only_up_to_the_first_unhandled_message(
    kafka: Callable[..., KafkaBroker],
) -> None:
    # Given three messages of one partition, all in flight at once
    broker = await kafka()
    topic = unique_topic("kafka-prefix")
    await publish_json(broker, topic, ["a", "b", "c"], key="one-partition")
    sub = await broker.subscribe(topic, "workers", prefetch=3)
    first, second, third = await collect(sub, 3)
    assert isinstance(first, KafkaDelivery)
    partition = (first.part.topic, first.part.partition)
    start = first.offset

    # When the second and third are acked before the first
    await second.ack()
    await third.ack()

    # Then the commit stops at the first; once it is acked, it moves past all three
    def committed() -> int | None:
        return committed_offsets(topic, "workers").get(partition)

    await eventually(lambda: asyncio.to_thread(committed), lambda o: o == start)
    await first.ack()
    await eventually(lambda: asyncio.to_thread(committed), lambda o: o == start + 3)


async def test_a_delayed_message_waits_in_kafka_not_in_a_consumer(
    kafka: Callable[..., KafkaBroker],
) -> None:
    # Given a message delayed by 2 s, fetched by a consumer that then goes away
    producer = await kafka()
    topic = unique_topic("kafka-delay")
    gone = await producer.subscribe(topic)
    published_at = time.time()
    [sent] = await publish_json(producer, topic, ["later"], delay=2.0)
    await assert_no_delivery(gone, within=0.5)
    await gone.close()

    # When a consumer on a new connection subscribes
    sub = await (await kafka()).subscribe(topic)

    # Then it gets the message, not before its time
    delivery = await next_delivery(sub)
    await delivery.ack()
    assert delivery.message.id == sent.id
    assert time.time() >= published_at + 2.0 - 0.05


CHILD = """
import asyncio, sys
from queuekit.backends.kafka import KafkaBroker

async def main(topic: str, out_path: str) -> None:
    async with KafkaBroker(sys.argv[3], visibility_timeout=6.0) as broker:
        sub = await broker.subscribe(topic, "workers", prefetch=4)
        with open(out_path, "a", buffering=1) as out:
            print("ready", flush=True)
            async for delivery in sub:
                await asyncio.sleep(0.02)  # the handler's work
                out.write(delivery.message.id + "\\n")
                await delivery.ack()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


def _handled(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


async def _wait_for(check: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(0.05)


async def test_a_killed_consumer_process_leaves_its_messages_to_the_group(
    kafka: Callable[..., KafkaBroker], tmp_path: Path
) -> None:
    # Given two consumer processes of one group
    broker = await kafka()
    topic = unique_topic("kafka-kill")
    await broker.publish([Message.build(topic, "warm-up")])  # creates the topics
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    outputs = [tmp_path / "victim.txt", tmp_path / "survivor.txt"]
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", CHILD, topic, str(out), BOOTSTRAP,
            stdout=asyncio.subprocess.PIPE, env=env,
        )
        for out in outputs
    ]  # fmt: skip
    try:
        for child in children:
            assert child.stdout is not None
            async with asyncio.timeout(30):
                assert (await child.stdout.readline()).strip() == b"ready"

        # When 200 messages are published and one process is killed (SIGKILL) mid-run
        sent = await publish_json(broker, topic, range(200))
        victim = children[0]
        await _wait_for(lambda: len(_handled(outputs[0])) >= 10, 30, "the victim handles some")
        victim.send_signal(signal.SIGKILL)
        await victim.wait()
        handled_by_victim = set(_handled(outputs[0])) & {m.id for m in sent}  # not warm-up

        # Then the survivor handles everything the victim had not, within the session timeout
        expected = {m.id for m in sent}
        await _wait_for(
            lambda: expected <= set(_handled(outputs[0])) | set(_handled(outputs[1])),
            45,
            "every message handled by one of the processes",
        )
        assert handled_by_victim < expected
        assert set(_handled(outputs[1])) - handled_by_victim
    finally:
        for child in children:
            if child.returncode is None:
                child.kill()
                await child.wait()


CRASHING_CHILD = """
import asyncio, os, signal, sys
from queuekit.backends.kafka import KafkaBroker

async def main(topic: str, out_path: str) -> None:
    async with KafkaBroker(sys.argv[3], visibility_timeout=6.0) as broker:
        sub = await broker.subscribe(topic, "crashing", prefetch=2)
        with open(out_path, "a", buffering=1) as out:
            async for delivery in sub:
                body = delivery.message.json()
                out.write(f"{body} {delivery.attempt}\\n")
                if body == "poison" and delivery.attempt < 3:
                    os.kill(os.getpid(), signal.SIGKILL)  # the message kills its consumer
                await delivery.ack()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_a_message_that_kills_its_consumer_counts_an_attempt_per_crash(
    kafka: Callable[..., KafkaBroker], tmp_path: Path
) -> None:
    # Given a poison message and an innocent one behind it in the same partition
    broker = await kafka()
    topic = unique_topic("kafka-crash")
    await publish_json(broker, topic, ["poison", "fine"], key="one-partition")
    out = tmp_path / "attempts.txt"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}

    # When consumer processes handle it, one after the other, and the first two are killed
    # (SIGKILL, no goodbye) while handling the poison
    for expected_exit in (-signal.SIGKILL, -signal.SIGKILL):
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", CRASHING_CHILD, topic, str(out), BOOTSTRAP, env=env
        )
        async with asyncio.timeout(40):
            assert await child.wait() == expected_exit
    survivor = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASHING_CHILD, topic, str(out), BOOTSTRAP, env=env
    )
    try:
        await _wait_for(lambda: "fine" in out.read_text().split()[-2:], 40, "fine handled last")
    finally:
        survivor.kill()
        await survivor.wait()

    # Then the poison's attempts count every crash, and the innocent one is not blamed
    lines = [line.split() for line in out.read_text().splitlines()]
    assert [int(n) for body, n in lines if body == "poison"] == [1, 2, 3]
    assert max(int(n) for body, n in lines if body == "fine") <= 2


@pytest.mark.timeout(300)
async def test_a_kafka_restart_loses_nothing_that_was_acknowledged(
    kafka: Callable[..., KafkaBroker],
) -> None:
    # Given a consumer that handled part of what was published
    broker = await kafka(publish_timeout=120.0, visibility_timeout=6.0)
    topic = unique_topic("kafka-restart")
    sub = await broker.subscribe(topic, prefetch=100)
    before = await publish_json(broker, topic, range(30))
    seen: dict[str, Delivery] = {}
    for delivery in await collect(sub, 10):
        seen[delivery.message.id] = delivery
        await delivery.ack()

    # When Kafka restarts and publishing goes on
    await asyncio.to_thread(stop_own_broker, "kafka")
    await asyncio.to_thread(start_broker, "kafka")
    after = await publish_json(broker, topic, range(30, 60))

    # Then every message published before and after is delivered (acked ones at most again)
    expected = {m.id for m in before + after}
    async with asyncio.timeout(120):
        while not expected <= set(seen):
            delivery = await anext(sub)
            seen[delivery.message.id] = delivery
            await delivery.ack()
    await broker.ping()
