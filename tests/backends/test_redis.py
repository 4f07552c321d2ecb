"""Redis Streams specifics; the shared behaviour is in tests/conformance/test_redis.py.

Most tests use the shared Redis of scripts/brokers (unique topics, nothing flushed). The
restart and persistence tests start a private redis-server of their own in a temporary
directory, so they never disturb the shared one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from redis.asyncio import Redis

from brokers import port_open, require_broker
from queuekit.backends import create_broker
from queuekit.backends.redis_streams import RedisStreamsBroker, from_settings
from queuekit.backends.redis_streams import subscription as redis_subscription
from queuekit.backends.redis_streams.keys import TopicKeys
from queuekit.broker import Delivery, Subscription
from queuekit.errors import BrokerUnavailable, ConfigError
from queuekit.message import Message
from queuekit.settings import Settings
from queuekit.testing.conformance import (
    assert_no_delivery,
    delete_used_topics,
    group_stats,
    unique_topic,
)

T = TypeVar("T")

REDIS_URL = "redis://127.0.0.1:6379/0"
WAIT = 10.0


# -- helpers


async def next_of(sub: Subscription, within: float = WAIT) -> Delivery:
    async with asyncio.timeout(within):
        return await anext(sub)


async def poll(probe: Callable[[], Awaitable[T]], check: Callable[[T], bool], within: float) -> T:
    """Poll ``probe`` until ``check`` holds, for at most ``within`` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if check(value):
            return value
        assert time.monotonic() < deadline, f"condition not met in {within} s: {value!r}"
        await asyncio.sleep(0.02)


async def prefetching_consumer(
    make_broker: Callable[..., Awaitable[RedisStreamsBroker]], topic: str, count: int
) -> tuple[RedisStreamsBroker, list[Message], Subscription]:
    """``count`` messages published to ``topic``, and a consumer prefetching all of them.

    Its broker has a visibility timeout of 60 s: nothing is redelivered during a test.
    """
    broker = await make_broker(visibility_timeout=60.0)
    sent = [Message.build(topic, n) for n in range(count)]
    await broker.publish(sent)
    return broker, sent, await broker.subscribe(topic, prefetch=count)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PrivateRedis:
    """A redis-server of this test only, in ``directory``, that can be restarted."""

    def __init__(self, directory: Path, *, aof: bool) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._args = [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(directory),
            "--save",
            "",
            "--appendonly",
            "yes" if aof else "no",
            # With the default everysec, Redis acknowledges writes still waiting for a slow
            # fsync, so a kill -9 on a busy disk can lose them: the crash case needs always.
            "--appendfsync",
            "always",
        ]
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(
            self._args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + WAIT
        while not port_open("127.0.0.1", self.port, timeout=0.2):
            assert self._process.poll() is None, "redis-server exited at start"
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.01)

    def stop(self, *, crash: bool = False) -> None:
        """SIGTERM (Redis flushes its AOF and exits), or SIGKILL when ``crash``."""
        if self._process is not None and self._process.poll() is None:
            if crash:
                self._process.kill()
            else:
                self._process.terminate()
            self._process.wait(timeout=WAIT)
        self._process = None


@pytest.fixture
def private_redis_factory(tmp_path: Path) -> Iterator[Callable[[bool], PrivateRedis]]:
    if shutil.which("redis-server") is None:
        require_broker("redis-server (binary)", "127.0.0.1", 0)
    made: list[PrivateRedis] = []

    def make(aof: bool) -> PrivateRedis:
        server = PrivateRedis(tmp_path, aof=aof)
        server.start()
        made.append(server)
        return server

    yield make
    for server in made:
        server.stop()


@pytest.fixture
async def make_broker() -> AsyncIterator[Callable[..., Awaitable[RedisStreamsBroker]]]:
    require_broker("redis", "127.0.0.1", 6379)
    made: list[RedisStreamsBroker] = []

    async def make(url: str = REDIS_URL, **options: Any) -> RedisStreamsBroker:
        options.setdefault("visibility_timeout", 1.0)
        broker = RedisStreamsBroker(url, **options)
        await broker.connect()
        made.append(broker)
        return broker

    yield make
    for broker in reversed(made):
        await broker.close()
    # The tests' topics are unique: nothing of them should stay in the shared Redis.
    await delete_used_topics(made, lambda: RedisStreamsBroker(REDIS_URL))


@pytest.fixture
async def raw() -> AsyncIterator[Redis]:
    """A plain redis-py client, as any other program would use."""
    require_broker("redis", "127.0.0.1", 6379)
    client = Redis.from_url(REDIS_URL)
    yield client
    await client.aclose()


@pytest.fixture
def topic() -> str:
    return unique_topic("redis")


# -- configuration


def test_registry_builds_a_redis_broker_from_settings() -> None:
    # Given settings choosing Redis
    settings = Settings(
        queue_type="redis",
        redis_url="redis://10.0.0.7:6380/2",
        visibility_timeout=12.5,
        redis_require_durability=True,
    )

    # When the registry builds the broker
    broker = create_broker(settings)

    # Then it is a Redis broker configured from them, not yet connected
    assert isinstance(broker, RedisStreamsBroker)
    assert (broker.url, broker.visibility_timeout) == ("redis://10.0.0.7:6380/2", 12.5)
    assert broker.require_durability
    assert from_settings(settings) is not broker


async def test_an_unreachable_redis_is_unavailable() -> None:
    # Given a port nothing listens on
    broker = RedisStreamsBroker(f"redis://127.0.0.1:{free_port()}/0")

    # When connecting, Then BrokerUnavailable says where
    with pytest.raises(BrokerUnavailable, match=r"127\.0\.0\.1"):
        await broker.connect()


async def test_a_malformed_url_is_a_config_error() -> None:
    broker = RedisStreamsBroker("http://not-redis")
    with pytest.raises(ConfigError, match="REDIS_URL"):
        await broker.connect()


# -- interoperability


async def test_a_plain_xadd_with_only_a_payload_is_a_message(
    make_broker: Callable[..., Awaitable[RedisStreamsBroker]], raw: Redis, topic: str
) -> None:
    # Given a consumer, and entries added by a plain client with nothing but a payload
    broker = await make_broker()
    sub = await broker.subscribe(topic)
    keys = TopicKeys(topic)
    plain_id = await raw.xadd(f"queuekit:{{{topic}}}", {"payload": '{"a":1}'})
    urgent_id = await raw.xadd(f"queuekit:{{{topic}}}:p7", {"payload": '{"b":2}'})

    # When they are consumed
    first, second = await next_of(sub), await next_of(sub)
    await first.ack()
    await second.ack()

    # Then each is a valid message: its id names the stream and entry (unique even when
    # two streams generate the same entry id), its priority is its lane's, attempt 1
    messages = {d.message.id: d.message for d in (first, second)}
    plain = messages[f"queuekit:{{{topic}}}/{plain_id.decode()}"]
    urgent = messages[f"queuekit:{{{topic}}}:p7/{urgent_id.decode()}"]
    assert keys.base == f"queuekit:{{{topic}}}"
    assert (plain.priority, plain.attempt, plain.key) == (0, 1, None)
    assert urgent.priority == 7
    assert dict(plain.headers) == {}
    assert abs(plain.created_at - time.time()) < 60


async def test_an_entry_without_payload_is_dead_lettered_and_does_not_block(
    make_broker: Callable[..., Awaitable[RedisStreamsBroker]], raw: Redis, topic: str
) -> None:
    # Given an entry that is not a message, followed by one that is
    broker = await make_broker()
    sub = await broker.subscribe(topic, prefetch=1)
    await raw.xadd(f"queuekit:{{{topic}}}", {"body": "no payload field"})
    [good] = [Message.build(topic, "good")]
    await broker.publish([good])

    # When the consumer reads the topic
    delivery = await next_of(sub)
    await delivery.ack()

    # Then the good message arrives, and the bad entry is a readable dead letter
    assert delivery.message.id == good.id
    [letter] = await poll(lambda: broker.dead_letters(topic), lambda dl: len(dl) == 1, WAIT)
    assert letter.reason == "malformed-entry"
    assert letter.message.json() == {"body": "no payload field"}


# -- leases


async def test_a_handler_slower_than_the_visibility_timeout_keeps_its_message(
    make_broker: Callable[..., Awaitable[RedisStreamsBroker]], topic: str
) -> None:
    # Given two consumers of one group with a 0.3 s visibility timeout, one holding a message
    holder_broker = await make_broker(visibility_timeout=0.3)
    rival_broker = await make_broker(visibility_timeout=0.3)
    holder = await holder_broker.subscribe(topic, "slow")
    rival = await rival_broker.subscribe(topic, "slow")
    [sent] = [Message.build(topic, "slow job")]
    await holder_broker.publish([sent])
    held = await next_of(holder)

    # When its handler runs for five visibility timeouts
    await assert_no_delivery(rival, within=1.5)

    # Then nobody else got it, and it settles as the first attempt
    await held.ack()
    assert (held.message.id, held.attempt) == (sent.id, 1)
    await poll(
        lambda: holder_broker.topic_stats(topic),
        lambda s: (group_stats(s, "slow").depth, group_stats(s, "slow").in_flight) == (0, 0),
        WAIT,
    )


async def test_closing_gives_prefetched_messages_back_at_once_uncounted(
    make_broker: Callable[..., Awaitable[RedisStreamsBroker]], topic: str
) -> None:
    # Given a consumer (visibility timeout 60 s) that prefetched five messages and used one
    first_broker, sent, first = await prefetching_consumer(make_broker, topic, 5)
    used = await next_of(first)
    await used.ack()
    await poll(lambda: first_broker.topic_stats(topic), lambda s: s.in_flight == 4, WAIT)

    # When it closes
    await first.close()

    # Then another consumer gets the other four long before the visibility timeout, as
    # first attempts
    second = await (await make_broker(visibility_timeout=60.0)).subscribe(topic, prefetch=5)
    rest = [await next_of(second, within=5.0) for _ in range(4)]
    for delivery in rest:
        await delivery.ack()
    assert sorted(d.message.id for d in rest) == sorted(
        m.id for m in sent if m.id != used.message.id
    )
    assert {d.attempt for d in rest} == {1}


async def test_acks_are_applied_at_once_while_the_consumer_waits_for_new_messages(
    make_broker: Callable[..., Awaitable[RedisStreamsBroker]], topic: str
) -> None:
    # Given a consumer (visibility timeout 60 s) holding three messages, nothing else to read
    broker, _, sub = await prefetching_consumer(make_broker, topic, 3)
    held = [await next_of(sub) for _ in range(3)]

    for still_held, delivery in zip((2, 1, 0), held, strict=True):
        # When it acknowledges them one by one (its fetch loop blocks in a read of up to 1 s
        # as soon as there is room)
        await delivery.ack()

        # Then each ack reaches Redis within a round trip, not after that read
        await poll(lambda: broker.topic_stats(topic), lambda s, n=still_held: s.in_flight == n, 0.5)


async def test_acks_queued_when_closing_are_applied_before_the_rest_is_given_back(
    make_broker: Callable[..., Awaitable[RedisStreamsBroker]], topic: str
) -> None:
    # Given a consumer (visibility timeout 60 s) that prefetched five messages and used two
    _, sent, first = await prefetching_consumer(make_broker, topic, 5)
    used = [await next_of(first) for _ in range(2)]

    # When it acknowledges both and closes at once
    for delivery in used:
        await delivery.ack()
    await first.close()

    # Then another consumer gets the other three only: the acked two were not given back
    second = await (await make_broker(visibility_timeout=60.0)).subscribe(topic, prefetch=5)
    rest = [await next_of(second, within=5.0) for _ in range(3)]
    await assert_no_delivery(second, within=1.5)
    assert sorted(d.message.id for d in rest) == sorted(m.id for m in sent[2:])


# -- retries, delays and attempts


async def test_a_delayed_retry_waits_in_redis_not_in_the_consumer(
    make_broker: Callable[..., Awaitable[RedisStreamsBroker]], raw: Redis, topic: str
) -> None:
    # Given a message nacked with a delay by a consumer whose process then goes away
    gone = await make_broker()
    [sent] = [Message.build(topic, "retry me")]
    await gone.publish([sent])
    delivery = await next_of(await gone.subscribe(topic, "billing"))
    await delivery.nack(0.5)
    await gone.close()

    # Then the retry waits in the group's delayed set in Redis
    assert await raw.zcard(TopicKeys(topic).group_delayed("billing")) == 1

    # And a new broker instance receives it when due, as attempt 2
    fresh = await make_broker()
    retry = await next_of(await fresh.subscribe(topic, "billing"))
    await retry.ack()
    assert (retry.message.id, retry.attempt) == (sent.id, 2)
    assert await raw.zcard(TopicKeys(topic).group_delayed("billing")) == 0


WORKER_SCRIPT = """
import os, signal, sys
from queuekit.settings import Settings
from queuekit.worker import App, run_worker_sync

app = App("crasher")

@app.handler({topic!r}, retries=2, idempotency_key=False, timeout=None)
def crash(payload):
    os.kill(os.getpid(), signal.SIGKILL)

settings = Settings(
    queue_type="redis",
    redis_url={url!r},
    visibility_timeout=0.5,
    worker_metrics_port=0,
    idempotency_store="memory",
    shutdown_grace_seconds=1,
    log_level="WARNING",
)
sys.exit(run_worker_sync(app, settings, serve_health=False))
"""


async def test_a_message_that_kills_its_worker_ends_in_the_dead_letter_stream(
    make_broker: Callable[..., Awaitable[RedisStreamsBroker]], tmp_path: Path, topic: str
) -> None:
    # Given a worker process whose handler SIGKILLs its own process, allowing 3 attempts
    script = tmp_path / "crasher.py"
    script.write_text(textwrap.dedent(WORKER_SCRIPT.format(topic=topic, url=REDIS_URL)))
    broker = await make_broker()
    [poison] = [Message.build(topic, "poison")]
    await broker.publish([poison])

    # When workers are started one after another until the message is dead-lettered
    kills = 0
    deadline = time.monotonic() + 40
    while not await broker.dead_letters(topic):
        assert time.monotonic() < deadline, f"not dead-lettered after {kills} kills"
        worker = await asyncio.create_subprocess_exec(sys.executable, str(script))
        try:
            async with asyncio.timeout(8):
                while worker.returncode is None and not await broker.dead_letters(topic):
                    await poll_process(worker)
        finally:
            if worker.returncode is None:
                worker.terminate()
            await worker.wait()
        kills += worker.returncode == -9

    # Then it died three times, and the fourth delivery went to the dead-letter stream
    [letter] = await broker.dead_letters(topic)
    assert kills == 3
    assert (letter.message.id, letter.attempts) == (poison.id, 4)
    assert letter.reason == "max_attempts_exceeded"


async def poll_process(process: asyncio.subprocess.Process) -> None:
    """Wait up to 0.1 s for ``process`` to exit (a bounded step of a polling loop)."""
    try:
        async with asyncio.timeout(0.1):
            await process.wait()
    except TimeoutError:
        return


# -- trimming and stats


async def test_trimming_deletes_only_what_every_group_acknowledged(
    make_broker: Callable[..., Awaitable[RedisStreamsBroker]], raw: Redis, topic: str
) -> None:
    # Given two groups and ten messages: "fast" acked them all, "slow" acked three and
    # holds the fourth
    broker = await make_broker()
    fast = await broker.subscribe(topic, "fast", prefetch=10)
    slow = await broker.subscribe(topic, "slow", prefetch=4)
    await broker.publish([Message.build(topic, n) for n in range(10)])
    for _ in range(10):
        await (await next_of(fast)).ack()
    held = [await next_of(slow) for _ in range(4)]
    for delivery in held[:3]:
        await delivery.ack()
    stream = TopicKeys(topic).base
    trimmed = 0

    async def trim() -> int:
        nonlocal trimmed
        trimmed += await broker.trim(topic)
        return trimmed

    # When the topic is trimmed (until the acks, which are applied asynchronously, count)
    await poll(trim, lambda total: total >= 3, WAIT)

    # Then only the three entries both groups acknowledged are gone
    assert trimmed == 3
    assert await raw.xlen(stream) == 7

    # And once "slow" has acknowledged everything, all but the last delivered entry go
    await held[3].ack()
    for _ in range(6):
        await (await next_of(slow)).ack()
    await poll(trim, lambda total: total >= 9, WAIT)
    assert trimmed == 9
    assert await raw.xlen(stream) == 1


async def test_a_topic_without_groups_is_never_trimmed(
    make_broker: Callable[..., Awaitable[RedisStreamsBroker]], raw: Redis, topic: str
) -> None:
    # Given messages nobody subscribed to yet
    broker = await make_broker()
    await broker.publish([Message.build(topic, n) for n in range(3)])

    # When trimming, Then they are kept for the first group to come
    assert await broker.trim(topic) == 0
    assert await raw.xlen(TopicKeys(topic).base) == 3


async def test_closing_right_after_an_ack_does_not_sit_out_the_blocking_read(
    make_broker: Callable[..., Awaitable[RedisStreamsBroker]],
    topic: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a consumer whose blocking reads may last a minute, which has just acked a delivery
    # (so its fetch loop is starting the next blocking read)
    monkeypatch.setattr(redis_subscription, "MAX_BLOCK", 60.0)
    broker = await make_broker()
    broker.claim_interval = 60.0
    sub = await broker.subscribe(topic)
    await broker.publish([Message.build(topic, "x")])
    await (await next_of(sub)).ack()

    # When it is closed at once, Then the close does not wait for that read to return
    # (Python 3.11's asyncio.wait_for, in redis-py's socket writes, used to swallow the
    # cancellation of the fetch loop)
    async with asyncio.timeout(WAIT):
        await sub.close()


async def test_deleting_a_topic_removes_every_key_of_it_and_nothing_else(
    make_broker: Callable[..., Awaitable[RedisStreamsBroker]], raw: Redis, topic: str
) -> None:
    # Given a topic with a group, a delayed message, a dead letter, and a neighbour topic
    # whose name starts with this one's
    broker = await make_broker()
    neighbour = topic + "-2"
    consumer = await broker.subscribe(topic)
    await broker.publish([Message.build(topic, n) for n in range(3)])
    await broker.publish([Message.build(topic, "later", delay=300), Message.build(neighbour, 1)])
    await (await next_of(consumer)).dead_letter("bad")
    await consumer.close()

    # When the topic is deleted
    await broker.delete_topic(topic)

    # Then none of its keys is left, and the neighbour's stream is untouched (what every
    # backend's deletion promises is in the conformance suite)
    assert [key async for key in raw.scan_iter(match=TopicKeys(topic).base + "*")] == []
    assert await raw.xlen(TopicKeys(neighbour).base) == 1
    await broker.delete_topic(neighbour)


async def test_stats_count_per_group_from_the_streams(
    make_broker: Callable[..., Awaitable[RedisStreamsBroker]], topic: str
) -> None:
    # Given two groups, "reports" holding two of five messages, "audit" not reading yet,
    # and a delayed message
    broker = await make_broker()
    reports = await broker.subscribe(topic, "reports", prefetch=2)
    await broker.subscribe(topic, "audit")
    await broker.publish([Message.build(topic, n, priority=n % 3) for n in range(5)])
    await broker.publish([Message.build(topic, "later", delay=300)])
    held = [await next_of(reports) for _ in range(2)]

    # When stats are read
    stats = await poll(
        lambda: broker.topic_stats(topic),
        lambda s: group_stats(s, "reports").in_flight == 2,
        WAIT,
    )

    # Then each group counts its own waiting, in-flight and delayed messages
    by_group = {g.group: g for g in stats.groups}
    assert sorted(by_group) == ["audit", "reports"]
    reporting, auditing = by_group["reports"], by_group["audit"]
    assert (reporting.depth, reporting.in_flight, reporting.delayed, reporting.lag) == (3, 2, 1, 6)
    assert (auditing.depth, auditing.in_flight, auditing.delayed, auditing.lag) == (5, 0, 1, 6)
    assert reporting.consumers == 1
    assert len(held) == 2


# -- connections


async def client_ids(raw: Redis, name: str, command: str | None = None) -> list[str]:
    """Ids of the connections named ``name`` (running ``command``, if given)."""
    listing = (await raw.execute_command("CLIENT", "LIST")).decode()
    return [
        fields["id"]
        for fields in (
            dict(pair.split("=", 1) for pair in line.split()) for line in listing.splitlines()
        )
        if fields.get("name") == name and command in (None, fields.get("cmd"))
    ]


async def test_a_consumer_resumes_after_its_connections_are_killed(
    make_broker: Callable[..., Awaitable[RedisStreamsBroker]], raw: Redis, topic: str
) -> None:
    # Given a consumer blocked in XREADGROUP on a topic
    broker = await make_broker()
    sub = await broker.subscribe(topic)
    waiting = asyncio.create_task(next_of(sub))
    await poll(lambda: client_ids(raw, broker.client_name, "xreadgroup"), bool, WAIT)

    # When Redis drops every connection of that broker
    for client_id in await client_ids(raw, broker.client_name):
        await raw.execute_command("CLIENT", "KILL", "ID", client_id)

    # Then publishing and consuming carry on over new connections
    [sent] = [Message.build(topic, "after the drop")]
    await broker.publish([sent])
    delivery = await waiting
    await delivery.ack()
    assert delivery.message.id == sent.id


async def test_a_consumer_recreates_its_group_when_the_streams_vanish(
    make_broker: Callable[..., Awaitable[RedisStreamsBroker]], raw: Redis, topic: str
) -> None:
    # Given a consumer that has read one message
    broker = await make_broker()
    sub = await broker.subscribe(topic)
    await broker.publish([Message.build(topic, "before")])
    await (await next_of(sub)).ack()

    # When every key of the topic disappears (as after a restart without persistence)
    keys = TopicKeys(topic)
    await raw.delete(*keys.lanes, keys.retry("default"), keys.groups)

    # Then the consumer recreates its group and gets what is published next
    [sent] = [Message.build(topic, "after")]
    await broker.publish([sent])
    delivery = await next_of(sub)
    await delivery.ack()
    assert delivery.message.id == sent.id


@pytest.mark.parametrize("crash", [False, True], ids=["restart", "kill-9"])
async def test_nothing_acknowledged_is_lost_across_a_redis_restart(
    private_redis_factory: Callable[[bool], PrivateRedis], crash: bool
) -> None:
    # Given a private Redis with AOF, a producer and a consumer acking what it gets
    server = private_redis_factory(True)
    topic = unique_topic("restart")
    producer = RedisStreamsBroker(server.url, visibility_timeout=2.0)
    consumer = RedisStreamsBroker(server.url, visibility_timeout=2.0)
    await producer.connect()
    await consumer.connect()
    sub = await consumer.subscribe(topic, prefetch=50)
    received: set[str] = set()

    async def consume() -> None:
        async for delivery in sub:
            received.add(delivery.message.id)
            # An ack that fails leaves the message to come back: at-least-once allows it
            with contextlib.suppress(BrokerUnavailable):
                await delivery.ack()

    async def publish_acknowledged(count: int) -> list[str]:
        acknowledged: list[str] = []
        deadline = time.monotonic() + 30
        while len(acknowledged) < count:
            batch = [Message.build(topic, {"n": len(acknowledged) + i}) for i in range(10)]
            try:
                await producer.publish(batch)
            except BrokerUnavailable:
                assert time.monotonic() < deadline, "Redis did not come back"
                await asyncio.sleep(0.05)  # retry pacing while Redis restarts
                continue
            acknowledged += [m.id for m in batch]
        return acknowledged

    consuming = asyncio.create_task(consume())
    try:
        # When Redis restarts (or is killed and started again) in the middle of the run
        before = await publish_acknowledged(200)
        server.stop(crash=crash)
        server.start()
        after = await publish_acknowledged(200)

        # Then every message acknowledged as published is delivered
        expected = set(before) | set(after)
        await poll(lambda: _done(received, expected), bool, 30)
        # And nothing is left waiting or stuck in flight
        await poll(lambda: consumer.topic_stats(topic), lambda s: s.depth + s.in_flight == 0, WAIT)
    finally:
        await sub.close()
        await asyncio.wait_for(consuming, WAIT)
        await producer.close()
        await consumer.close()


async def _done(received: set[str], expected: set[str]) -> bool:
    return expected <= received


async def test_redis_without_persistence_is_warned_about_or_refused(
    private_redis_factory: Callable[[bool], PrivateRedis], caplog: pytest.LogCaptureFixture
) -> None:
    # Given a Redis with neither AOF nor RDB snapshots
    server = private_redis_factory(False)

    # When a broker connects, Then it warns that a restart loses every stream
    with caplog.at_level(logging.WARNING, logger="queuekit.redis"):
        async with RedisStreamsBroker(server.url):
            pass
    assert "persists nothing" in caplog.text

    # And with require_durability it refuses to connect
    strict = RedisStreamsBroker(server.url, require_durability=True)
    with pytest.raises(ConfigError, match="appendonly yes"):
        await strict.connect()


def test_names_of_keys_are_documented() -> None:
    # Given the key layout of a topic and a group, Then it matches docs/backends/redis.md
    keys = TopicKeys("orders")
    assert keys.lanes[0] == "queuekit:{orders}"
    assert keys.lanes[9] == "queuekit:{orders}:p9"
    assert keys.delayed == "queuekit:{orders}:delayed"
    assert keys.retry("billing") == "queuekit:{orders}:group:billing:retry"
    assert keys.group_delayed("billing") == "queuekit:{orders}:group:billing:delayed"
    assert keys.dlq == "queuekit:{orders}:dlq"
    doc = (Path(__file__).parents[2] / "docs" / "backends" / "redis.md").read_text()
    for key in (*keys.lanes[:2], keys.delayed, keys.dlq):
        assert key.replace("orders", "<topic>") in doc
