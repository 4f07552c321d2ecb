"""Routes (where a message goes) and the declarations they need, declared once and cached.

Everything is durable. Group queues are classic queues with ``x-max-priority: 9`` (quorum
queues have no priorities on RabbitMQ 3.10). Delay tiers are classic queues whose queue-wide
``x-message-ttl`` makes every message expire in arrival order (no head-of-line blocking), then
RabbitMQ dead-letters it to where it was going: the topic's exchange (all groups) or one group's
queue. An unused delay tier deletes itself (``x-expires``); publishers re-declare a tier at
least every ``TIER_REDECLARE_SECONDS`` so a tier never expires while it holds a message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiormq

from queuekit.backends.rabbitmq import names
from queuekit.message import DEFAULT_GROUP

TOPIC_MARKER = "x-queuekit"
"""Argument that marks a topic's exchange (``list_topics`` looks for it)."""
GROUP_QUEUE_ARGUMENTS: dict[str, Any] = {"x-queue-type": "classic", "x-max-priority": 9}
DEAD_LETTER_QUEUE_ARGUMENTS: dict[str, Any] = {"x-queue-type": "classic", "x-queue-mode": "lazy"}
TIER_REDECLARE_SECONDS = 600.0
_TIER_EXPIRY_MARGIN_MS = 3 * int(TIER_REDECLARE_SECONDS * 1000)


@dataclass(frozen=True, slots=True)
class Route:
    """Where a message goes.

    Attributes:
        topic: its topic.
        group: one group only, or None for every group of the topic.
        delay_ms: wait in this delay tier first (0: no delay).
        dead_letter: to the topic's dead-letter queue instead.
    """

    topic: str
    group: str | None = None
    delay_ms: int = 0
    dead_letter: bool = False

    @property
    def exchange(self) -> str:
        """The exchange to publish to ("" is RabbitMQ's default exchange: straight to a queue)."""
        if self.group is None and not self.delay_ms and not self.dead_letter:
            return names.exchange_name(self.topic)
        return ""

    @property
    def routing_key(self) -> str:
        """The routing key to publish with (a queue name on the default exchange)."""
        if self.dead_letter:
            return names.dead_letter_queue(self.topic)
        if self.delay_ms:
            return names.delay_queue(self.topic, self.group, self.delay_ms)
        if self.group is not None:
            return names.group_queue(self.topic, self.group)
        return ""


def group_queue_arguments() -> dict[str, Any]:
    """Arguments of a group queue (a copy)."""
    return dict(GROUP_QUEUE_ARGUMENTS)


def delay_queue_arguments(topic: str, group: str | None, delay_ms: int) -> dict[str, Any]:
    """Arguments of a delay tier: expire after ``delay_ms`` into the group or the topic."""
    if group is None:
        target_exchange, target_key = names.exchange_name(topic), ""
    else:
        target_exchange, target_key = "", names.group_queue(topic, group)
    return {
        "x-queue-type": "classic",
        "x-message-ttl": delay_ms,
        "x-dead-letter-exchange": target_exchange,
        "x-dead-letter-routing-key": target_key,
        "x-expires": delay_ms + _TIER_EXPIRY_MARGIN_MS,
    }


ChannelSource = Callable[[], Awaitable[aiormq.abc.AbstractChannel]]


class Topology:
    """Declares what routes need, once per broker client (delay tiers: once per refresh).

    ``channel()`` returns a ready channel for declarations (it may be re-opened after a
    connection loss); ``fresh_channel()`` a new one that the caller closes (a passive declare
    of a missing exchange closes its channel). Concurrent ``ensure`` calls for one route share
    one declaration.

    A topic whose exchange does not exist yet gets its default group's queue together with the
    exchange, so that nothing published to it is routed into the void.
    """

    def __init__(self, channel: ChannelSource, fresh_channel: ChannelSource) -> None:
        self._channel = channel
        self._fresh_channel = fresh_channel
        self._declared: dict[Route, float] = {}
        self._pending: dict[Route, asyncio.Future[None]] = {}

    def forget(self, route: Route) -> None:
        """Declare ``route`` again next time (its queue or exchange may have been deleted)."""
        self._declared.pop(route, None)

    def forget_topic(self, topic: str) -> None:
        """Forget every route of ``topic``."""
        for route in [r for r in self._declared if r.topic == topic]:
            del self._declared[route]

    def is_fresh(self, route: Route) -> bool:
        """Whether ``route`` is declared (and, for a delay tier, recently enough)."""
        at = self._declared.get(route)
        if at is None:
            return False
        return not route.delay_ms or time.monotonic() - at < TIER_REDECLARE_SECONDS

    async def ensure(self, route: Route) -> None:
        """Declare everything ``route`` needs, unless done already."""
        if self.is_fresh(route):
            return
        pending = self._pending.get(route)
        if pending is None:
            pending = asyncio.ensure_future(self._declare(route))
            self._pending[route] = pending
            pending.add_done_callback(lambda _: self._pending.pop(route, None))
        await asyncio.shield(pending)

    async def _declare(self, route: Route) -> None:
        channel = await self._channel()
        topic = route.topic
        if route.dead_letter:
            await channel.queue_declare(
                names.dead_letter_queue(topic),
                durable=True,
                arguments=dict(DEAD_LETTER_QUEUE_ARGUMENTS),
            )
        else:
            # Only publishing to all groups gives a new topic its default group.
            await self._declare_exchange(channel, topic, publishing=route.group is None)
            if route.group is not None:
                await self._declare_group(channel, topic, route.group)
            if route.delay_ms:
                await channel.queue_declare(
                    names.delay_queue(topic, route.group, route.delay_ms),
                    durable=True,
                    arguments=delay_queue_arguments(topic, route.group, route.delay_ms),
                )
        self._declared[route] = time.monotonic()

    async def declare_default_group(self, topic: str) -> None:
        """Give ``topic`` its default group's queue (used when a publish found no queue)."""
        self.forget(Route(topic, DEFAULT_GROUP))
        await self.ensure(Route(topic, DEFAULT_GROUP))

    async def _declare_exchange(
        self, channel: aiormq.abc.AbstractChannel, topic: str, *, publishing: bool
    ) -> None:
        if Route(topic) in self._declared:
            return
        is_new = publishing and not await self._exchange_exists(topic)
        await channel.exchange_declare(
            names.exchange_name(topic),
            exchange_type="fanout",
            durable=True,
            arguments={TOPIC_MARKER: "topic"},
        )
        if is_new:
            await self._declare_group(channel, topic, DEFAULT_GROUP)
        self._declared[Route(topic)] = time.monotonic()

    async def _exchange_exists(self, topic: str) -> bool:
        probe = await self._fresh_channel()
        try:
            await probe.exchange_declare(names.exchange_name(topic), passive=True)
        except aiormq.exceptions.ChannelNotFoundEntity:
            return False
        finally:
            if not probe.is_closed:
                await probe.close()
        return True

    async def _declare_group(
        self, channel: aiormq.abc.AbstractChannel, topic: str, group: str
    ) -> None:
        route = Route(topic, group)
        if route in self._declared:
            return
        queue = names.group_queue(topic, group)
        await channel.queue_declare(queue, durable=True, arguments=group_queue_arguments())
        await channel.queue_bind(queue, names.exchange_name(topic), routing_key="")
        self._declared[route] = time.monotonic()
