"""The Redis Streams broker: publish with group commit, subscribe, and the Admin operations."""

from __future__ import annotations

import math
import os
import re
import socket
import time
import uuid
from collections.abc import Sequence
from typing import ClassVar

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from queuekit.backends.redis_streams import admin, entries
from queuekit.backends.redis_streams.connection import (
    check_persistence,
    create_client,
    mapped_errors,
    pack_commands,
    run_packed,
)
from queuekit.backends.redis_streams.keys import DELAYED_KEY, TOPICS_KEY, TopicKeys
from queuekit.backends.redis_streams.scripts import Scripts, run
from queuekit.backends.redis_streams.settle import Settler
from queuekit.backends.redis_streams.subscription import RedisSubscription
from queuekit.batching import GroupCommitter
from queuekit.broker import Admin, Broker, Features, TopicStats
from queuekit.errors import BrokerUnavailable, PublishError
from queuekit.message import (
    DEFAULT_GROUP,
    DeadLetter,
    Message,
    check_fields,
    validate_group,
    validate_topic,
)

_XADD = b"XADD"
_ZADD = b"ZADD"
_SADD = b"SADD"
_NEW_ID = b"*"
_TOPICS = TOPICS_KEY.encode()


class RedisStreamsBroker(Broker, Admin):
    """Queues on Redis Streams (Redis 7+): a stream per priority lane, a group per group.

    Args:
        url: ``redis://[user:password@]host:port/db`` (``rediss://`` for TLS).
        visibility_timeout: seconds after which the entries of a consumer that went away
            are claimed by another consumer of its group.
        require_durability: refuse to connect to a Redis without AOF persistence (else a
            warning is logged).
        max_batch: most messages (or settlements) written in one round trip.
        trim_interval: seconds between two trims of a topic by each of its consumers.
    """

    backend: ClassVar[str] = "redis"
    features: ClassVar[Features] = Features(
        durable=True,
        delayed_delivery=True,
        priorities=True,
        strict_priority=True,
        ordering_per_key=False,
        crash_safe_attempts=True,
        cross_process=True,
    )

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        visibility_timeout: float = 30.0,
        require_durability: bool = False,
        max_batch: int = 1000,
        trim_interval: float = 10.0,
    ) -> None:
        if not visibility_timeout > 0 or math.isinf(visibility_timeout):
            raise ValueError("visibility_timeout must be a positive number of seconds")
        if max_batch < 1 or not trim_interval > 0:
            raise ValueError("max_batch and trim_interval must be positive")
        self.url = url
        self.visibility_timeout = visibility_timeout
        self.require_durability = require_durability
        self.max_batch = max_batch
        self.trim_interval = trim_interval
        self.visibility_ms = max(1, int(visibility_timeout * 1000))
        self.claim_interval = min(max(visibility_timeout / 4, 0.05), 1.0)
        self.extend_interval = visibility_timeout / 3
        # Consumers with nothing pending and idle this long are forgotten when trimming.
        self.consumer_idle_ms = max(60_000, 10 * self.visibility_ms)
        host = re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname())
        self.client_name = f"queuekit-{host}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._client: Redis | None = None
        self._scripts: Scripts | None = None
        self._settler: Settler | None = None
        self._publisher: GroupCommitter[Message] | None = None
        self._subscriptions: set[RedisSubscription] = set()
        self._known_topics: set[str] = set()  # validated, and published or subscribed to

    # -- connection

    @property
    def client(self) -> Redis:
        if self._client is None:
            raise BrokerUnavailable("redis broker is not connected")
        return self._client

    @property
    def scripts(self) -> Scripts:
        if self._scripts is None:
            raise BrokerUnavailable("redis broker is not connected")
        return self._scripts

    @property
    def settler(self) -> Settler:
        if self._settler is None:
            raise BrokerUnavailable("redis broker is not connected")
        return self._settler

    async def connect(self) -> None:
        if self._client is not None:
            return
        client = create_client(self.url, self.client_name)
        where = _redacted(self.url)
        try:
            with mapped_errors(f"connecting to {where}", connected_before=False):
                await client.ping()
                await check_persistence(client, require=self.require_durability, where=where)
        except BaseException:
            await client.aclose()
            raise
        self._client = client
        self._scripts = Scripts.register(client)
        self._settler = Settler(client)
        self._publisher = GroupCommitter(self._write, max_batch=self.max_batch)

    async def close(self) -> None:
        client = self._client
        if client is None:
            return
        for subscription in list(self._subscriptions):
            await subscription.close()
        try:
            if self._publisher is not None:
                await self._publisher.drain()
            await self.settler.drain()
        finally:
            self._client = self._scripts = self._settler = self._publisher = None
            await client.aclose()

    async def ping(self) -> None:
        with mapped_errors("pinging"):
            await self.client.ping()

    # -- publishing

    async def publish(self, messages: Sequence[Message]) -> None:
        publisher = self._publisher
        if publisher is None:
            raise BrokerUnavailable("redis broker is not connected")
        for message in messages:
            if message.topic not in self._known_topics:
                self._known_topics.add(validate_topic(message.topic))
            check_fields(message)
        with mapped_errors("publishing"):
            await publisher.submit(messages)

    async def _write(self, messages: Sequence[Message]) -> None:
        """One round trip: the XADDs of the whole batch, pipelined.

        Ready messages are XADDed to their priority lane, delayed ones ZADDed to the
        topic's delayed set. Plain commands, not a Lua script: Redis runs a script's
        ``XADD`` at about twice the cost of the command itself (the arguments cross into
        Lua and back), and the replies are cheap to read (see ``run_packed``). Not a
        ``MULTI`` either: Redis would run the whole batch at once when it comes to the
        ``EXEC``, and every consumer's read would wait behind it; pipelined, the commands
        interleave with other clients'. If Redis refuses some, the others are stored all
        the same and :class:`PublishError` says so (the contract allows it).
        """
        now = time.time()
        commands: list[list[bytes]] = []
        lanes: dict[str, tuple[bytes, ...]] = {}
        for message in messages:
            keys = lanes.get(message.topic)
            if keys is None:
                keys = lanes[message.topic] = TopicKeys(message.topic).publish_keys
            fields = entries.encode(message)
            if message.not_before is not None and message.not_before > now:
                due_ms = b"%d" % math.ceil(message.not_before * 1000)
                member = entries.pack(message.priority, fields)
                commands.append([_ZADD, keys[DELAYED_KEY], due_ms, member])
            else:
                commands.append([_XADD, keys[message.priority], _NEW_ID, *fields])
        commands.append([_SADD, _TOPICS, *(topic.encode() for topic in lanes)])
        replies = await run_packed(self.client, pack_commands(commands), len(commands))
        refused = [reply for reply in replies if isinstance(reply, redis_errors.ResponseError)]
        if refused:
            raise PublishError(
                f"Redis refused {len(refused)} of {len(commands)} writes of a published "
                f"batch: {refused[0]}"
            )

    # -- consuming

    async def subscribe(
        self, topic: str, group: str = DEFAULT_GROUP, *, prefetch: int = 16
    ) -> RedisSubscription:
        self.client  # noqa: B018  (raises BrokerUnavailable when not connected)
        validate_topic(topic)
        validate_group(group)
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 1:
            raise ValueError("prefetch must be a positive integer")
        await self.ensure_group(topic, group)
        self._known_topics.add(topic)
        consumer = f"{self.client_name}-{uuid.uuid4().hex[:8]}"
        subscription = RedisSubscription(self, topic, group, prefetch, consumer)
        self._subscriptions.add(subscription)
        return subscription

    async def ensure_group(self, topic: str, group: str) -> None:
        """Create ``group`` on every stream of ``topic`` (at their start) and register both."""
        keys = TopicKeys(topic)
        with mapped_errors(f"creating group {group} of {topic}"):
            await run(self.scripts.ensure_group, [keys.groups, *keys.read_order(group)], [group])
            await self.client.sadd(TOPICS_KEY, topic)

    @property
    def used_topics(self) -> frozenset[str]:
        """The queuekit topics this instance published to or subscribed to."""
        return frozenset(self._known_topics)

    def forget(self, subscription: RedisSubscription) -> None:
        self._subscriptions.discard(subscription)

    # -- Admin

    async def list_topics(self) -> list[str]:
        with mapped_errors("listing topics"):
            return await admin.list_topics(self.client)

    async def topic_stats(self, topic: str) -> TopicStats:
        validate_topic(topic)
        with mapped_errors(f"reading stats of {topic}"):
            return await admin.topic_stats(self.client, self.scripts, topic)

    async def purge(self, topic: str) -> int:
        validate_topic(topic)
        with mapped_errors(f"purging {topic}"):
            return await admin.purge(
                self.client, self.scripts, topic, consumer_idle_ms=self.consumer_idle_ms
            )

    async def trim(self, topic: str) -> int:
        """Delete the entries of ``topic`` every group has acknowledged; return how many.

        Consumers run it every ``trim_interval`` seconds; it never deletes an entry some
        group has not yet received or acknowledged.
        """
        validate_topic(topic)
        with mapped_errors(f"trimming {topic}"):
            return await admin.trim(
                self.client, self.scripts, topic, consumer_idle_ms=self.consumer_idle_ms
            )

    async def dead_letters(self, topic: str, limit: int = 100) -> list[DeadLetter]:
        validate_topic(topic)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
            raise ValueError("limit must be a non-negative integer")
        with mapped_errors(f"listing dead letters of {topic}"):
            return await admin.dead_letters(self.client, topic, limit)

    async def replay_dead_letters(self, topic: str, ids: Sequence[str] | None = None) -> int:
        validate_topic(topic)
        with mapped_errors(f"replaying dead letters of {topic}"):
            return await admin.replay_dead_letters(self.client, topic, ids)

    async def purge_dead_letters(self, topic: str) -> int:
        validate_topic(topic)
        with mapped_errors(f"purging dead letters of {topic}"):
            return await admin.purge_dead_letters(self.scripts, topic)

    async def delete_topic(self, topic: str) -> None:
        """Delete every key of ``topic``: its lanes, delayed set, groups, retries and dead
        letters (see :meth:`Admin.delete_topic`)."""
        validate_topic(topic)
        with mapped_errors(f"deleting {topic}"):
            await admin.delete_topic(self.client, topic)


def _redacted(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    scheme, sep, rest = url.partition("://")
    if "@" not in rest:
        return url
    credentials, _, location = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user + ':***' if user else '***'}@{location}"
