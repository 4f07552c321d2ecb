"""Admin operations on RabbitMQ: topics, counts, purge, and the dead-letter queues.

Listing dead letters consumes up to ``limit`` of them on a private channel without
acknowledging, then closes the channel: RabbitMQ puts them back where they were, in order
(they are invisible to other readers of the dead-letter queue for that moment). Replaying
publishes each chosen dead letter to its failing group's queue (confirmed), then acks it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

import aiormq
from aiormq.abc import DeliveredMessage

from queuekit.backends.rabbitmq import names, wire
from queuekit.backends.rabbitmq.management import ManagementAPI
from queuekit.backends.rabbitmq.publisher import ConfirmPublisher, Outgoing
from queuekit.backends.rabbitmq.topology import Route
from queuekit.broker import GroupStats, TopicStats
from queuekit.message import DeadLetter, dlq_topic, parse_dead_letter, validate_topic

ChannelSource = Callable[[], Awaitable[aiormq.abc.AbstractChannel]]

MAX_WINDOW = 65535
"""Most messages one ``basic.qos`` window (and so one dead-letter listing) can hold."""
_REPLAY_CHUNK = 1000
_FETCH_TIMEOUT = 5.0


class RabbitMQAdminOps:
    """The :class:`~queuekit.broker.Admin` operations, on top of AMQP and the management API."""

    def __init__(
        self,
        fresh_channel: ChannelSource,
        management: ManagementAPI,
        publisher: ConfirmPublisher,
    ) -> None:
        self._fresh_channel = fresh_channel
        self._management = management
        self._publisher = publisher

    async def list_topics(self) -> list[str]:
        return sorted(await self._management.topic_exchanges())

    async def delete_topic(self, topic: str) -> int:
        """Delete ``topic``'s queues (groups, delay tiers, dead letters) and its exchange;
        return how many queues there were. Every queue of a topic is named ``<topic>:...``
        or ``<topic>.dlq``, and topic names contain no ``:``, so no other topic's is touched.
        """
        validate_topic(topic)
        queues = [row["name"] for row in await self._management.queues(topic + ":")]
        queues.append(names.dead_letter_queue(topic))
        channel = await self._fresh_channel()
        try:
            # Deleting what does not exist succeeds on RabbitMQ (3.2 and later).
            for queue in queues:
                await channel.queue_delete(queue)
            await channel.exchange_delete(names.exchange_name(topic))
        finally:
            await _close(channel)
        return len(queues)

    async def topic_stats(self, topic: str) -> TopicStats:
        validate_topic(topic)
        rows = {row["name"]: row for row in await self._management.queues(topic + ":")}
        groups = {name: g for name in rows if (g := names.parse_group_queue(topic, name))}
        delays = {name: t for name in rows if (t := names.parse_delay_queue(topic, name))}
        dlq = names.dead_letter_queue(topic)
        counts = await self._counts([*groups, *delays, dlq])
        delayed_for_all = sum(
            counts[q][0] for q, target in delays.items() if target == names.ALL_GROUPS
        )
        stats = []
        for queue, group in sorted(groups.items(), key=lambda item: item[1]):
            depth, consumers = counts[queue]
            delayed = delayed_for_all + sum(
                counts[q][0] for q, target in delays.items() if target == group
            )
            in_flight = int(rows[queue].get("messages_unacknowledged") or 0)
            stats.append(
                GroupStats(
                    group=group,
                    depth=depth,
                    in_flight=in_flight,
                    delayed=delayed,
                    lag=depth + in_flight + delayed,
                    consumers=consumers,
                )
            )
        return TopicStats(topic, tuple(stats), counts[dlq][0])

    async def purge(self, topic: str) -> int:
        validate_topic(topic)
        queues = [
            row["name"]
            for row in await self._management.queues(topic + ":")
            if names.parse_group_queue(topic, row["name"])
            or names.parse_delay_queue(topic, row["name"])
        ]
        return sum([await self._purge(queue) for queue in queues])

    async def purge_dead_letters(self, topic: str) -> int:
        return await self._purge(names.dead_letter_queue(validate_topic(topic)))

    async def dead_letters(self, topic: str, limit: int = 100) -> list[DeadLetter]:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError("limit must be a non-negative integer")
        queue = names.dead_letter_queue(validate_topic(topic))
        channel = await self._fresh_channel()
        try:
            waiting = await _message_count(channel, queue)
            wanted = min(limit, waiting, MAX_WINDOW)
            if wanted <= 0:
                return []
            fetched = await _Fetch.start(channel, queue, wanted)
            batch = await fetched.take(wanted)
            return [_dead_letter(topic, delivered) for delivered in batch]
        finally:
            await _close(channel)  # unacknowledged: RabbitMQ puts them back in order

    async def replay_dead_letters(self, topic: str, ids: Sequence[str] | None = None) -> int:
        queue = names.dead_letter_queue(validate_topic(topic))
        wanted = None if ids is None else set(ids)
        if wanted is not None and not wanted:
            return 0
        channel = await self._fresh_channel()
        replayed = 0
        try:
            waiting = await _message_count(channel, queue)
            if waiting <= 0:
                return 0
            # choosing by id holds the others unacked until the end: they need room
            window = _REPLAY_CHUNK if wanted is None else min(waiting, MAX_WINDOW)
            fetched = await _Fetch.start(channel, queue, window)
            seen = 0
            while seen < waiting and (wanted is None or wanted):
                batch = await fetched.take(min(window, waiting - seen))
                if not batch:
                    break
                seen += len(batch)
                chosen = []
                for delivered in batch:
                    letter = _dead_letter(topic, delivered)
                    if wanted is None or letter.message.id in wanted:
                        chosen.append((delivered, letter))
                        if wanted is not None:
                            wanted.discard(letter.message.id)
                await self._publisher.publish([_replay_copy(letter) for _, letter in chosen])
                for delivered, _ in chosen:
                    await _ack(delivered)
                replayed += len(chosen)
        finally:
            await _close(channel)
        return replayed

    async def _counts(self, queues: Sequence[str]) -> dict[str, tuple[int, int]]:
        """(ready messages, consumers) of each queue, exactly, from AMQP; (0, 0) if missing."""
        counts: dict[str, tuple[int, int]] = {}
        channel = await self._fresh_channel()
        try:
            for queue in queues:
                try:
                    ok = await channel.queue_declare(queue, passive=True)
                except aiormq.exceptions.ChannelNotFoundEntity:
                    counts[queue] = (0, 0)
                    channel = await self._fresh_channel()
                    continue
                counts[queue] = (ok.message_count or 0, ok.consumer_count or 0)
        finally:
            await _close(channel)
        return counts

    async def _purge(self, queue: str) -> int:
        channel = await self._fresh_channel()
        try:
            ok = await channel.queue_purge(queue)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return 0
        finally:
            await _close(channel)
        return ok.message_count or 0


class _Fetch:
    """A consumer that collects deliveries (unacknowledged) for :meth:`take`."""

    def __init__(self) -> None:
        self._buffer: list[DeliveredMessage] = []
        self._arrived = asyncio.Event()

    @classmethod
    async def start(cls, channel: aiormq.abc.AbstractChannel, queue: str, window: int) -> _Fetch:
        fetch = cls()
        await channel.basic_qos(prefetch_count=window)
        await channel.basic_consume(queue, fetch._on_message, no_ack=False)
        return fetch

    async def _on_message(self, delivered: DeliveredMessage) -> None:
        self._buffer.append(delivered)
        self._arrived.set()

    async def take(self, count: int) -> list[DeliveredMessage]:
        """Up to ``count`` deliveries: waits for them, at most ``_FETCH_TIMEOUT`` without one."""
        while len(self._buffer) < count:
            self._arrived.clear()
            try:
                async with asyncio.timeout(_FETCH_TIMEOUT):  # not wait_for (see broker.ping)
                    await self._arrived.wait()
            except TimeoutError:
                break  # the rest is held by another reader of the queue
        batch, self._buffer = self._buffer[:count], self._buffer[count:]
        return batch


def _dead_letter(topic: str, delivered: DeliveredMessage) -> DeadLetter:
    message, _ = wire.decode(dlq_topic(topic), delivered.body, delivered.header.properties)
    return parse_dead_letter(message)


def _replay_copy(letter: DeadLetter) -> Outgoing:
    message = replace(letter.message, not_before=None, attempt=1)
    route = Route(message.topic, letter.group)
    return Outgoing(route, message.payload, wire.properties(message))


async def _message_count(channel: aiormq.abc.AbstractChannel, queue: str) -> int:
    try:
        ok = await channel.queue_declare(queue, passive=True)
    except aiormq.exceptions.ChannelNotFoundEntity:
        return 0
    return ok.message_count or 0


async def _ack(delivered: DeliveredMessage) -> None:
    tag = delivered.delivery_tag
    assert tag is not None  # deliveries of a consumer always have one
    await delivered.channel.basic_ack(tag, wait=False)


async def _close(channel: aiormq.abc.AbstractChannel) -> None:
    if not channel.is_closed:
        with contextlib.suppress(aiormq.exceptions.AMQPError, asyncio.TimeoutError):
            await channel.close()
