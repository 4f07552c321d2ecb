"""The RabbitMQ broker: one robust AMQP connection (aio-pika), a confirm channel for publishing,
a channel for declarations, and one channel per subscription.

See ``docs/backends/rabbitmq.md`` for how each feature maps onto RabbitMQ.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Awaitable, Sequence
from typing import ClassVar, TypeVar

import aio_pika
import aiormq

from queuekit.backends.rabbitmq import names, wire
from queuekit.backends.rabbitmq.admin import RabbitMQAdminOps
from queuekit.backends.rabbitmq.failures import CLIENT_ERRORS, broker_error
from queuekit.backends.rabbitmq.management import ManagementAPI, management_url_for, vhost_of
from queuekit.backends.rabbitmq.publisher import ConfirmPublisher, Outgoing
from queuekit.backends.rabbitmq.subscription import RabbitMQSubscription
from queuekit.backends.rabbitmq.topology import Route, Topology
from queuekit.broker import Admin, Broker, Features, TopicStats
from queuekit.errors import BrokerUnavailable
from queuekit.message import (
    DEFAULT_GROUP,
    DeadLetter,
    Message,
    check_fields,
    validate_group,
    validate_topic,
)

T = TypeVar("T")
_MAX_CACHED_TOPICS = 10_000


class RabbitMQBroker(Broker, Admin):
    """queuekit on RabbitMQ 3.10+ (classic queues; no plugin besides the management API).

    Args:
        url: the AMQP URL (``amqp://user:password@host:5672/vhost``).
        management_url: the management API (default: the same host and user on port 15672);
            needed by ``list_topics``, ``topic_stats`` and ``purge``.
        visibility_timeout: seconds a closed subscription keeps its unsettled deliveries
            before its channel closes and RabbitMQ redelivers them.
        publish_timeout: seconds a publish may wait for its confirms, reconnection included.
        reconnect_interval: seconds between reconnection attempts after a connection loss.
        max_batch: most messages in one confirm window.
    """

    backend: ClassVar[str] = "rabbitmq"
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
        url: str = "amqp://guest:guest@127.0.0.1:5672/",
        *,
        management_url: str | None = None,
        visibility_timeout: float = 30.0,
        publish_timeout: float = 30.0,
        reconnect_interval: float = 1.0,
        max_batch: int = 1000,
    ) -> None:
        for name, value in (
            ("visibility_timeout", visibility_timeout),
            ("publish_timeout", publish_timeout),
            ("reconnect_interval", reconnect_interval),
        ):
            if not value > 0 or math.isinf(value):
                raise ValueError(f"{name} must be a positive number of seconds")
        self.url = url
        self.management_url = management_url or management_url_for(url)
        self.visibility_timeout = visibility_timeout
        self.publish_timeout = publish_timeout
        self._reconnect_interval = reconnect_interval
        self._max_batch = max_batch
        self._connection: aio_pika.abc.AbstractRobustConnection | None = None
        self._publish_channel: aio_pika.abc.AbstractRobustChannel | None = None
        self._declare_channel: aio_pika.abc.AbstractRobustChannel | None = None
        self._publisher: ConfirmPublisher | None = None
        self._topology: Topology | None = None
        self._admin: RabbitMQAdminOps | None = None
        self._management: ManagementAPI | None = None
        self._subscriptions: set[RabbitMQSubscription] = set()
        self._topic_routes: dict[str, Route] = {}  # validated topics
        self._used: set[str] = set()

    # connection

    async def connect(self) -> None:
        if self._connection is not None:
            return
        try:
            connection = await aio_pika.connect_robust(
                self.url, reconnect_interval=self._reconnect_interval, timeout=10
            )
        except CLIENT_ERRORS as exc:
            raise BrokerUnavailable(
                f"cannot connect to RabbitMQ at {self._safe_url}: {exc!r}"
            ) from exc
        try:
            self._publish_channel = await connection.channel(publisher_confirms=True)
            self._declare_channel = await connection.channel(publisher_confirms=False)
        except CLIENT_ERRORS as exc:
            await connection.close()
            raise BrokerUnavailable(f"cannot open a RabbitMQ channel: {exc!r}") from exc
        self._connection = connection
        topology = Topology(self._declarations_channel, self._fresh_channel)
        self._publisher = ConfirmPublisher(
            self._confirm_channel, topology, timeout=self.publish_timeout, max_batch=self._max_batch
        )
        self._topology = topology
        self._management = ManagementAPI(self.management_url, vhost_of(self.url))
        self._admin = RabbitMQAdminOps(self._fresh_channel, self._management, self._publisher)

    async def close(self) -> None:
        connection = self._connection
        if connection is None:
            return
        try:
            if self._publisher is not None:
                await self._publisher.drain()
            for subscription in list(self._subscriptions):
                await subscription.close()
        finally:
            self._connection = None
            self._publisher = None
            self._admin = None
            for subscription in list(self._subscriptions):
                subscription.abandon()
            self._subscriptions.clear()
            if self._management is not None:
                await self._management.aclose()
                self._management = None
            await connection.close()

    async def ping(self) -> None:
        self._connected()
        try:
            async with asyncio.timeout(5):  # not wait_for: on 3.11 it can swallow a cancel
                channel = await self._declarations_channel()
            await channel.exchange_declare("amq.fanout", passive=True, timeout=5)
        except CLIENT_ERRORS as exc:
            raise BrokerUnavailable(f"RabbitMQ does not answer: {exc!r}") from exc

    @property
    def publisher(self) -> ConfirmPublisher:
        """The confirm publisher (raises BrokerUnavailable when not connected)."""
        self._connected()
        assert self._publisher is not None
        return self._publisher

    @property
    def topology(self) -> Topology:
        """What this client declared (raises BrokerUnavailable when not connected)."""
        self._connected()
        assert self._topology is not None
        return self._topology

    def forget_subscription(self, subscription: RabbitMQSubscription) -> None:
        """A subscription was closed."""
        self._subscriptions.discard(subscription)

    # Broker

    async def publish(self, messages: Sequence[Message]) -> None:
        publisher = self.publisher
        now = time.time()
        items = [self._outgoing(message, now) for message in messages]
        if items:
            await publisher.publish(items)

    def _outgoing(self, message: Message, now: float) -> Outgoing:
        route = self._topic_routes.get(message.topic)
        if route is None:
            route = Route(validate_topic(message.topic))
            if len(self._topic_routes) >= _MAX_CACHED_TOPICS:
                self._topic_routes.clear()
            self._topic_routes[message.topic] = route
            self._used.add(message.topic)
        check_fields(message)
        if message.not_before is not None and message.not_before > now:
            route = Route(message.topic, None, names.delay_tier_ms(message.not_before - now))
        return Outgoing(route, message.payload, wire.properties(message))

    async def subscribe(
        self, topic: str, group: str = DEFAULT_GROUP, *, prefetch: int = 16
    ) -> RabbitMQSubscription:
        connection = self._connected()
        validate_topic(topic)
        validate_group(group)
        if (
            isinstance(prefetch, bool)
            or not isinstance(prefetch, int)
            or not 1 <= prefetch <= 65535
        ):
            raise ValueError("prefetch must be an integer from 1 to 65535")
        queue = names.group_queue(topic, group)
        assert self._topology is not None
        channel: aio_pika.abc.AbstractRobustChannel | None = None
        try:
            await self._topology.ensure(Route(topic, group))
            channel = await connection.channel(publisher_confirms=False)
            await channel.set_qos(prefetch_count=prefetch)
            subscription = RabbitMQSubscription(self, topic, group, channel)
            await subscription.start()
        except CLIENT_ERRORS as exc:
            if channel is not None and not channel.is_closed:
                with contextlib.suppress(*CLIENT_ERRORS):
                    await channel.close()
            raise broker_error(exc, f"a consumer of {queue}") from exc
        self._subscriptions.add(subscription)
        self._used.add(topic)
        return subscription

    @property
    def used_topics(self) -> frozenset[str]:
        """The queuekit topics this instance published to or subscribed to."""
        return frozenset(self._used)

    # Admin

    async def list_topics(self) -> list[str]:
        return await self._admin_ops().list_topics()

    async def topic_stats(self, topic: str) -> TopicStats:
        return await self._guard(self._admin_ops().topic_stats(topic))

    async def purge(self, topic: str) -> int:
        return await self._guard(self._admin_ops().purge(topic))

    async def dead_letters(self, topic: str, limit: int = 100) -> list[DeadLetter]:
        return await self._guard(self._admin_ops().dead_letters(topic, limit))

    async def replay_dead_letters(self, topic: str, ids: Sequence[str] | None = None) -> int:
        return await self._guard(self._admin_ops().replay_dead_letters(topic, ids))

    async def purge_dead_letters(self, topic: str) -> int:
        return await self._guard(self._admin_ops().purge_dead_letters(topic))

    async def delete_topic(self, topic: str) -> None:
        """Delete the exchange and every queue of ``topic``: its group queues, delay tiers and
        dead-letter queue (see :meth:`Admin.delete_topic`); RabbitMQ cancels their consumers."""
        await self._guard(self._admin_ops().delete_topic(topic))
        self.topology.forget_topic(topic)
        self._topic_routes.pop(topic, None)

    # internals

    @property
    def _safe_url(self) -> str:
        return self.url.split("@")[-1]

    def _connected(self) -> aio_pika.abc.AbstractRobustConnection:
        if self._connection is None:
            raise BrokerUnavailable("RabbitMQ broker is not connected")
        return self._connection

    def _admin_ops(self) -> RabbitMQAdminOps:
        self._connected()
        assert self._admin is not None
        return self._admin

    async def _guard(self, operation: Awaitable[T]) -> T:
        try:
            return await operation
        except CLIENT_ERRORS as exc:
            raise broker_error(exc, "an admin operation") from exc

    async def _declarations_channel(self) -> aiormq.abc.AbstractChannel:
        assert self._declare_channel is not None
        await self._declare_channel.ready()
        return await self._declare_channel.get_underlay_channel()

    async def _confirm_channel(self) -> aiormq.abc.AbstractChannel:
        channel = self._publish_channel
        if channel is None or self._connection is None:
            raise BrokerUnavailable("RabbitMQ broker is not connected")
        await channel.ready()
        return await channel.get_underlay_channel()

    async def _fresh_channel(self) -> aiormq.abc.AbstractChannel:
        connection = self._connected()
        await connection.ready()
        transport = connection.transport
        if transport is None:
            raise BrokerUnavailable("RabbitMQ connection is not established")
        return await transport.connection.channel(publisher_confirms=False)
