"""Consuming one group's queue: :class:`RabbitMQSubscription` and :class:`RabbitMQDelivery`.

Each subscription has its own channel with ``basic.qos(prefetch)``, so RabbitMQ never has more
than ``prefetch`` unacknowledged deliveries out to it. Before a delivery is handed out:

* ``redelivered`` (its consumer died or its channel closed without settling it): the message
  is published again to the group's queue with ``x-queuekit-attempt`` one higher, and the
  original acknowledged. The copy is what the group gets next, so the attempt count survives
  any number of crashes and a message that kills its worker every time reaches its last
  attempt (then the worker dead-letters it) instead of looping forever.
* due later (it came back early from the longest delay tier, or clocks differ): delayed
  again for the rest of the time, with the same attempt.

Settling: ``ack`` is a ``basic.ack``; ``nack`` and ``dead_letter`` publish a copy (to a delay
tier or the group's queue, or to ``<topic>.dlq``) with confirms, then ack the original.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import math
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

import aio_pika
import aiormq
from aiormq.abc import DeliveredMessage

from queuekit.backends.rabbitmq import names, wire
from queuekit.backends.rabbitmq.acks import AckBatcher
from queuekit.backends.rabbitmq.failures import CLIENT_ERRORS
from queuekit.backends.rabbitmq.publisher import Outgoing
from queuekit.backends.rabbitmq.topology import Route
from queuekit.broker import Delivery, Subscription
from queuekit.errors import BrokerError, ConnectionLost
from queuekit.message import Message, dead_letter_headers

if TYPE_CHECKING:
    from queuekit.backends.rabbitmq.broker import RabbitMQBroker

log = logging.getLogger(__name__)


class RabbitMQDelivery(Delivery):
    """One delivery from a group's queue."""

    __slots__ = ("_delivered", "_message", "_settled", "_subscription")

    def __init__(
        self,
        subscription: RabbitMQSubscription,
        delivered: DeliveredMessage,
        message: Message,
    ) -> None:
        self._subscription = subscription
        self._delivered = delivered
        self._message = message
        self._settled = False

    @property
    def message(self) -> Message:
        return self._message

    @property
    def group(self) -> str:
        return self._subscription.group

    def _begin_settle(self) -> None:
        if self._settled:
            raise RuntimeError(f"delivery of message {self._message.id} was already settled")
        self._settled = True

    async def ack(self) -> None:
        self._begin_settle()
        await self._subscription.ack(self._delivered)

    async def nack(self, delay: float = 0.0) -> None:
        if not delay >= 0 or math.isinf(delay):
            raise ValueError(f"nack delay must be a finite number of seconds >= 0, not {delay!r}")
        self._begin_settle()
        message = self._message
        if delay > 0:
            route = Route(message.topic, self.group, names.delay_tier_ms(delay))
            props = wire.properties(message, attempt=message.attempt + 1, due=time.time() + delay)
        else:
            route = Route(message.topic, self.group)
            props = wire.properties(message, attempt=message.attempt + 1)
        await self._subscription.settle(self._delivered, Outgoing(route, message.payload, props))

    async def dead_letter(self, reason: str, *, error: str | None = None) -> None:
        self._begin_settle()
        message = self._message
        headers = dead_letter_headers(
            message, reason=reason, error=error, group=self.group, attempts=message.attempt
        )
        stripped = Message(
            topic=message.topic,
            payload=message.payload,
            id=message.id,
            headers=headers,
            key=message.key,
            priority=message.priority,
            not_before=message.not_before,
            created_at=message.created_at,
        )
        props = wire.properties(stripped, attempt=message.attempt)
        route = Route(message.topic, dead_letter=True)
        await self._subscription.settle(self._delivered, Outgoing(route, message.payload, props))


class RabbitMQSubscription(Subscription):
    """A consumer of one (topic, group) queue on its own channel.

    The channel is a robust one: after a reconnect it gets its ``basic.qos`` back from
    aio-pika and its consumer back from :meth:`_consume` (a reopen callback).
    """

    def __init__(
        self,
        broker: RabbitMQBroker,
        topic: str,
        group: str,
        channel: aio_pika.abc.AbstractRobustChannel,
    ) -> None:
        self._broker = broker
        self.topic = topic
        self.group = group
        self._queue_name = names.group_queue(topic, group)
        self._channel = channel
        self._consumer_tag: str | None = None
        self._consumer_channel: aiormq.abc.AbstractChannel | None = None
        self._acks: AckBatcher | None = None
        self._buffer: collections.deque[DeliveredMessage] = collections.deque()
        self._wakeup = asyncio.Event()
        self._closed = False
        self._unsettled = 0
        self._background: set[asyncio.Task[None]] = set()
        self._replacing: set[asyncio.Task[None]] = set()
        self._channel_closer: asyncio.TimerHandle | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    async def start(self) -> None:
        """Start consuming (RabbitMQ starts pushing up to ``prefetch`` messages)."""
        await self._consume()
        self._channel.reopen_callbacks.add(self._on_reopen)

    async def _on_reopen(self, _channel: object) -> None:
        if not self._closed:
            await self._consume()

    async def _consume(self) -> None:
        channel = await self._channel.get_underlay_channel()
        channel.on_consumer_cancel_callbacks.add(self._on_cancelled)
        if self._acks is None or self._acks.channel is not channel:
            self._acks = AckBatcher(channel)
        ok = await channel.basic_consume(self._queue_name, self._on_message, no_ack=False)
        self._consumer_channel = channel
        self._consumer_tag = ok.consumer_tag

    def _on_cancelled(self, frame: aiormq.spec.Basic.Cancel) -> None:
        """RabbitMQ cancelled the consumer (its queue was deleted): declare it, consume again."""
        if frame.consumer_tag == self._consumer_tag and not self._closed:
            self._spawn(self._consume_again())

    async def _consume_again(self) -> None:
        route = Route(self.topic, self.group)
        try:
            self._broker.topology.forget(route)
            await self._broker.topology.ensure(route)
            await self._consume()
        except CLIENT_ERRORS:
            log.exception(
                "could not consume %s again after RabbitMQ cancelled it", self._queue_name
            )

    async def _on_message(self, delivered: DeliveredMessage) -> None:
        acks, tag = self._acks, delivered.delivery_tag
        if acks is not None and tag is not None and acks.channel is delivered.channel:
            acks.opened(tag)
        if self._closed:
            self._spawn(self._give_back(delivered))
            return
        self._buffer.append(delivered)
        self._wakeup.set()

    async def __anext__(self) -> RabbitMQDelivery:
        while True:
            if self._closed:
                raise StopAsyncIteration
            if self._replacing:
                # A recount copy may already be here: hand nothing out before its original
                # is acked, or a crash now would leave both to be delivered again.
                await asyncio.wait(set(self._replacing))
                continue
            if not self._buffer:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            ready = self.take_ready(1)
            if ready:
                return ready[0]

    def take_ready(self, limit: int) -> list[RabbitMQDelivery]:
        """The deliveries :meth:`__anext__` would hand out now, up to ``limit``: none while
        a recount copy is being made (see there)."""
        taken: list[RabbitMQDelivery] = []
        buffer = self._buffer
        while buffer and len(taken) < limit and not self._closed and not self._replacing:
            delivery = self._prepare(buffer.popleft())
            if delivery is not None:
                taken.append(delivery)
        self._unsettled += len(taken)
        return taken

    def _prepare(self, delivered: DeliveredMessage) -> RabbitMQDelivery | None:
        """The delivery to hand out, or None if ``delivered`` was dealt with otherwise."""
        if delivered.channel.is_closed:
            return None  # its channel died: RabbitMQ has put it back in the queue already
        message, due = wire.decode(self.topic, delivered.body, delivered.header.properties)
        if delivered.redelivered:
            props = wire.properties(message, attempt=message.attempt + 1)
            copy = Outgoing(Route(self.topic, self.group), message.payload, props)
            self._spawn(self._replace(delivered, copy), replacing=True)
            return None
        if due is not None and (remaining := due - time.time()) > 0:
            route = Route(self.topic, self.group, names.delay_tier_ms(remaining))
            props = wire.properties(message, attempt=message.attempt, due=due)
            self._spawn(self._replace(delivered, Outgoing(route, message.payload, props)))
            return None
        return RabbitMQDelivery(self, delivered, message)

    async def ack(self, delivered: DeliveredMessage) -> None:
        """Queue the acknowledgement of ``delivered`` (sent with others at the end of this
        event-loop turn, see acks.py).

        Raises:
            ConnectionLost: the channel that received ``delivered`` is gone, so it cannot be
                acknowledged; RabbitMQ delivers it again (with attempt + 1).
        """
        try:
            acks, tag = self._acks, delivered.delivery_tag
            if delivered.channel.is_closed:
                raise _gone(self._queue_name)
            if acks is not None and tag is not None and acks.channel is delivered.channel:
                acks.ack(tag)
            else:
                try:
                    await self._ack(delivered)
                except _CHANNEL_GONE as exc:
                    raise _gone(self._queue_name) from exc
        finally:
            self._unsettled -= 1
            if self._closed and self._unsettled <= 0:
                self._spawn(self._close_channel())

    async def settle(self, delivered: DeliveredMessage, copy: Outgoing | None) -> None:
        """Publish ``copy`` (if any, confirmed), then acknowledge ``delivered``.

        Raises:
            ConnectionLost: the channel that received ``delivered`` is gone, so it cannot be
                acknowledged; RabbitMQ delivers it again (with attempt + 1).
            BrokerError: the copy could not be published; the original is given back.
        """
        try:
            if copy is not None:
                try:
                    await self._broker.publisher.publish([copy])
                except BrokerError:
                    await self._requeue(delivered)
                    raise
            try:
                await self._ack(delivered)
            except _CHANNEL_GONE as exc:
                raise _gone(self._queue_name) from exc
        finally:
            self._unsettled -= 1
            if self._closed and self._unsettled <= 0:
                self._spawn(self._close_channel())

    async def _replace(self, delivered: DeliveredMessage, copy: Outgoing) -> None:
        """Put ``copy`` in place of ``delivered``: publish it (confirmed), then ack the original."""
        try:
            await self._broker.publisher.publish([copy])
            await self._ack(delivered, drain=True)
        except (BrokerError, *_CHANNEL_GONE):
            log.warning("could not move a delivery of %s; RabbitMQ keeps it", self._queue_name)
            await self._requeue(delivered)

    async def _give_back(self, delivered: DeliveredMessage) -> None:
        """Return a prefetched message that was never handed out, its attempt unchanged."""
        if delivered.channel.is_closed:
            return
        if delivered.redelivered:
            await self._requeue(delivered)  # still to be counted by the consumer that gets it
            return
        props = delivered.header.properties
        copy = Outgoing(Route(self.topic, self.group), delivered.body, props)
        await self._replace(delivered, copy)

    def _release(self, delivered: DeliveredMessage) -> None:
        """``delivered`` is settled by a frame of its own, sent now (see acks.py)."""
        acks, tag = self._acks, delivered.delivery_tag
        if acks is not None and tag is not None and acks.channel is delivered.channel:
            acks.release(tag)

    async def _ack(self, delivered: DeliveredMessage, *, drain: bool = False) -> None:
        """Acknowledge ``delivered`` alone; with ``drain``, return once the ack is in the socket."""
        tag = delivered.delivery_tag
        assert tag is not None  # deliveries of a consumer always have one
        self._release(delivered)
        await delivered.channel.basic_ack(tag, wait=drain)

    async def _requeue(self, delivered: DeliveredMessage) -> None:
        tag = delivered.delivery_tag
        if tag is None or delivered.channel.is_closed:
            return
        self._release(delivered)
        with contextlib.suppress(*_CHANNEL_GONE):
            await delivered.channel.basic_nack(tag, requeue=True, wait=False)

    def _spawn(self, coroutine: Coroutine[Any, Any, None], *, replacing: bool = False) -> None:
        task = asyncio.ensure_future(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        if replacing:
            self._replacing.add(task)
            task.add_done_callback(self._replacing.discard)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._wakeup.set()
        self._channel.reopen_callbacks.discard(self._on_reopen)
        channel, tag = self._consumer_channel, self._consumer_tag
        if channel is not None and tag is not None and not channel.is_closed:
            with contextlib.suppress(*_CHANNEL_GONE, asyncio.TimeoutError):
                await channel.basic_cancel(tag, timeout=5)
        buffered, self._buffer = list(self._buffer), collections.deque()
        for delivered in buffered:
            self._spawn(self._give_back(delivered))
        if self._background:
            await asyncio.wait(list(self._background), timeout=self._broker.publish_timeout)
        self._broker.forget_subscription(self)
        if self._unsettled <= 0:
            await self._close_channel()
        else:
            # deliveries handed out stay leased until settled, or until visibility_timeout
            self._channel_closer = asyncio.get_running_loop().call_later(
                self._broker.visibility_timeout, lambda: self._spawn(self._close_channel())
            )

    def abandon(self) -> None:
        """Its broker closed the connection (RabbitMQ redelivers what was unsettled)."""
        self._closed = True
        self._wakeup.set()
        if self._channel_closer is not None:
            self._channel_closer.cancel()
            self._channel_closer = None

    async def _close_channel(self) -> None:
        if self._channel_closer is not None:
            self._channel_closer.cancel()
            self._channel_closer = None
        if self._acks is not None:
            await self._acks.drain()  # queued acks go out before the channel closes
        if not self._channel.is_closed:
            with contextlib.suppress(*_CHANNEL_GONE, asyncio.TimeoutError):
                await self._channel.close()


_CHANNEL_GONE = (aiormq.exceptions.ChannelInvalidStateError, aiormq.exceptions.AMQPError)


def _gone(queue: str) -> ConnectionLost:
    return ConnectionLost(
        f"a delivery of {queue} cannot be acknowledged: its channel was closed; "
        "RabbitMQ will deliver it again"
    )
