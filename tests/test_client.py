"""The Python producer: Producer, send_message and send_message_sync on a MemoryBroker."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Iterator, Sequence

import orjson
import pytest

from queuekit.backends.memory import MemoryBroker
from queuekit.client import (
    Producer,
    close_default_producer,
    close_default_producer_sync,
    get_default_producer,
    send_message,
    send_message_sync,
)
from queuekit.errors import (
    BrokerUnavailable,
    ConfigError,
    InvalidMessage,
    InvalidTopic,
    PayloadTooLarge,
    PublishError,
)
from queuekit.message import Message
from queuekit.metrics import Metrics
from queuekit.settings import Settings

MEMORY = Settings(queue_type="memory")


class RecordingBroker(MemoryBroker):
    """A MemoryBroker recording the size of each publish call."""

    def __init__(self) -> None:
        super().__init__()
        self.publish_sizes: list[int] = []

    async def publish(self, messages: Sequence[Message]) -> None:
        self.publish_sizes.append(len(messages))
        await super().publish(messages)


class UnconfirmingBroker(MemoryBroker):
    """A MemoryBroker that never confirms a publish (a broker that stopped answering)."""

    async def publish(self, messages: Sequence[Message]) -> None:
        await asyncio.Event().wait()


@pytest.fixture
async def broker() -> AsyncIterator[RecordingBroker]:
    broker = RecordingBroker()
    await broker.connect()
    yield broker
    await broker.close()


@pytest.fixture
async def default_producers() -> AsyncIterator[None]:
    """Close the test loop's default producers afterwards."""
    yield
    await close_default_producer()


@pytest.fixture
def background_loop() -> Iterator[None]:
    """Stop send_message_sync's background loop afterwards."""
    yield
    close_default_producer_sync()


async def take(broker: MemoryBroker, topic: str, count: int) -> list[Message]:
    """The next ``count`` messages of ``topic`` (default group), acked; fails after 5 s."""
    messages: list[Message] = []
    async with await broker.subscribe(topic, prefetch=count) as subscription:
        async with asyncio.timeout(5):
            while len(messages) < count:
                delivery = await anext(subscription)
                messages.append(delivery.message)
                await delivery.ack()
    return messages


async def test_send_publishes_and_counts(broker: RecordingBroker) -> None:
    # Given a producer counting on a registry
    metrics = Metrics(backend="memory")
    producer = Producer(broker, metrics=metrics)

    # When a message is sent with every option
    message_id = await producer.send(
        "emails", {"to": "a"}, priority=3, key="k", headers={"h": "v"}, message_id="m-1"
    )

    # Then the broker holds it as sent, and it is counted
    [message] = await take(broker, "emails", 1)
    assert message_id == message.id == "m-1"
    assert orjson.loads(message.payload) == {"to": "a"}
    assert (message.priority, message.key, dict(message.headers)) == (3, "k", {"h": "v"})
    labels = {"topic": "emails", "backend": "memory"}
    assert metrics.registry.get_sample_value("queue_messages_sent_total", labels) == 1


async def test_send_many_validates_everything_then_publishes_once(broker: RecordingBroker) -> None:
    producer = Producer(broker)

    # When a list with a bad second message is sent, nothing is published
    with pytest.raises(InvalidTopic, match="message 1"):
        await producer.send_many([{"topic": "a", "payload": 1}, {"topic": "b c", "payload": 2}])
    with pytest.raises(InvalidMessage, match="message 0: unknown message field"):
        await producer.send_many([{"topic": "a", "payload": 1, "prio": 2}])
    assert broker.publish_sizes == []

    # When a valid list is sent, it is published in one call, ids in order
    ids = await producer.send_many(
        [{"topic": "a", "payload": 1}, {"topic": "a", "payload": 2, "priority": 0, "delay": 0}]
    )
    assert broker.publish_sizes == [2]
    assert [m.id for m in await take(broker, "a", 2)] == ids


async def test_a_list_across_topics_is_counted_per_topic(broker: RecordingBroker) -> None:
    # Given a producer counting on a registry
    metrics = Metrics(backend="memory")
    producer = Producer(broker, metrics=metrics)

    # When one list with two messages for "a" and one for "b" is sent
    await producer.send_many(
        [{"topic": "a", "payload": 1}, {"topic": "b", "payload": 2}, {"topic": "a", "payload": 3}]
    )

    # Then each topic counts its own messages
    def sent(topic: str) -> float | None:
        labels = {"topic": topic, "backend": "memory"}
        return metrics.registry.get_sample_value("queue_messages_sent_total", labels)

    assert (sent("a"), sent("b")) == (2, 1)


async def test_invalid_messages_raise_clear_errors(broker: RecordingBroker) -> None:
    producer = Producer(broker, max_payload_bytes=10)
    with pytest.raises(PayloadTooLarge, match="limit is 10 bytes"):
        await producer.send("a", "x" * 20)
    with pytest.raises(InvalidMessage, match="priority"):
        await producer.send("a", 1, priority=10)
    with pytest.raises(InvalidMessage, match="JSON"):
        await producer.send("a", {1, 2})
    with pytest.raises(InvalidMessage, match="delay"):
        await producer.send("a", 1, delay=-1)
    with pytest.raises(InvalidMessage, match="delay"):
        await producer.send("a", 1, delay="soon")  # type: ignore[arg-type]
    with pytest.raises(InvalidTopic):
        await producer.send("a.dlq", 1)
    assert broker.publish_sizes == []


async def test_a_failed_publish_is_counted_and_raised(broker: RecordingBroker) -> None:
    metrics = Metrics(backend="memory")
    producer = Producer(broker, metrics=metrics)
    await broker.close()
    with pytest.raises(BrokerUnavailable):
        await producer.send_many([{"topic": "a", "payload": 1}, {"topic": "a", "payload": 2}])
    labels = {"topic": "a", "backend": "memory", "stage": "publish"}
    assert metrics.registry.get_sample_value("queue_errors_total", labels) == 2


async def test_an_unconfirmed_publish_times_out_as_a_publish_error() -> None:
    # Given a broker that never confirms, and a producer waiting at most 50 ms
    broker = UnconfirmingBroker()
    await broker.connect()
    producer = Producer(broker, publish_timeout=0.05)

    # When a message is sent, then it fails with PublishError
    with pytest.raises(PublishError, match="did not confirm"):
        await producer.send("a", 1)
    await broker.close()


@pytest.mark.usefixtures("default_producers")
async def test_send_message_takes_the_product_spec_mapping() -> None:
    # When a message is sent as a mapping, then with keywords, on the default producer
    first = await send_message({"topic": "emails", "payload": {"to": "a"}}, settings=MEMORY)
    second = await send_message(topic="emails", payload=None, priority=9, settings=MEMORY)

    # Then both are in the default producer's broker, the most urgent first
    producer = await get_default_producer(MEMORY)
    assert isinstance(producer.broker, MemoryBroker)
    messages = await take(producer.broker, "emails", 2)
    assert [m.id for m in messages] == [second, first]
    assert orjson.loads(messages[0].payload) is None


@pytest.mark.usefixtures("default_producers")
async def test_the_default_producer_is_created_once_and_closable() -> None:
    # When many first sends race
    ids = await asyncio.gather(
        *(send_message({"topic": "t", "payload": n}, settings=MEMORY) for n in range(20))
    )

    # Then one producer served them all, connected
    producer = await get_default_producer(MEMORY)
    assert len(set(ids)) == 20
    assert isinstance(producer.broker, MemoryBroker)
    assert (await producer.broker.topic_stats("t")).depth == 20

    # And closing it closes its broker; the next send makes a new producer
    await close_default_producer()
    with pytest.raises(BrokerUnavailable):
        await producer.broker.ping()
    assert await get_default_producer(MEMORY) is not producer


async def test_send_message_rejects_mixed_or_incomplete_arguments(broker: RecordingBroker) -> None:
    producer = Producer(broker)
    with pytest.raises(InvalidMessage, match="not both"):
        await send_message({"topic": "a", "payload": 1}, topic="a", producer=producer)
    with pytest.raises(InvalidMessage, match="needs topic= and payload="):
        await send_message(topic="a", producer=producer)
    with pytest.raises(InvalidMessage, match="needs payload"):
        await send_message({"topic": "a"}, producer=producer)
    with pytest.raises(ConfigError):
        await send_message({"topic": "a", "payload": 1}, settings=MEMORY, producer=producer)
    assert broker.publish_sizes == []


@pytest.mark.usefixtures("background_loop")
async def test_send_message_sync_from_several_threads(broker: RecordingBroker) -> None:
    # Given a producer, and four threads each sending five messages synchronously
    producer = Producer(broker)
    ids: list[str] = []
    errors: list[BaseException] = []

    def send_five(thread: int) -> None:
        try:
            for n in range(5):
                message = {"topic": "sync", "payload": [thread, n]}
                ids.append(send_message_sync(message, producer=producer))
        except BaseException as exc:
            errors.append(exc)

    # When they run (the test's loop waits in a worker thread, so it is not blocked)
    threads = [threading.Thread(target=send_five, args=(t,)) for t in range(4)]

    def run_threads() -> None:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)

    await asyncio.to_thread(run_threads)

    # Then all twenty are published
    assert errors == []
    assert sorted(m.id for m in await take(broker, "sync", 20)) == sorted(ids)


@pytest.mark.usefixtures("background_loop")
def test_send_message_sync_uses_a_default_producer_and_raises_clear_errors() -> None:
    message_id = send_message_sync({"topic": "plain", "payload": 1}, settings=MEMORY)
    assert len(message_id) == 32
    with pytest.raises(InvalidTopic):
        send_message_sync({"topic": "not valid", "payload": 1}, settings=MEMORY)
    close_default_producer_sync()
    assert not any(t.name == "queuekit-send-loop" for t in threading.enumerate())
