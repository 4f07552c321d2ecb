"""Publishing with publisher confirms, a whole batch in one confirm window.

Concurrent ``publish`` calls are group-committed (:class:`~queuekit.batching.GroupCommitter`):
a batch is written to the channel at once and its confirms are awaited together, never one
round trip per message. A batch that the connection loss interrupted is published again (its
unconfirmed part) once the robust connection is back, until ``timeout``: nothing is reported
published unless RabbitMQ confirmed it, and a retried message may be stored twice
(at-least-once; consumers see the same message id).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import cast

import aiormq
from aiormq import spec
from aiormq.abc import DeliveredMessage

from queuekit.backends.rabbitmq.topology import Route, Topology
from queuekit.batching import GroupCommitter
from queuekit.errors import ConnectionLost, PublishError

ChannelSource = Callable[[float], Awaitable[aiormq.abc.AbstractChannel]]
"""Returns the confirm channel once it is usable, waiting at most the given seconds."""

_CONNECTION_ERRORS = (
    aiormq.exceptions.AMQPConnectionError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
    asyncio.TimeoutError,
)
# a channel closed without a specific reason (its connection went away); subclasses such as
# access refused or precondition failed are real refusals and are not retried
_CHANNEL_CLOSED = aiormq.exceptions.ChannelClosed


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to publish: its route, body and AMQP properties."""

    route: Route
    body: bytes
    properties: spec.Basic.Properties


class ConfirmPublisher:
    """Publishes :class:`Outgoing` messages and returns once RabbitMQ confirmed all of them.

    Raises (from :meth:`publish`):
        PublishError: RabbitMQ refused (nacked) a message, or could not route it twice.
        ConnectionLost: the connection did not come back within ``timeout``.
    """

    def __init__(
        self,
        channel: ChannelSource,
        topology: Topology,
        *,
        timeout: float,
        max_batch: int = 1000,
    ) -> None:
        self._channel = channel
        self._topology = topology
        self._timeout = timeout
        self._committer: GroupCommitter[Outgoing] = GroupCommitter(self._flush, max_batch=max_batch)

    async def publish(self, items: Sequence[Outgoing]) -> None:
        """Publish ``items`` (in the next batch) and wait for their confirms."""
        await self._committer.submit(items)

    async def drain(self) -> None:
        """Wait until every publish submitted so far is confirmed or failed."""
        await self._committer.drain()

    async def _flush(self, items: Sequence[Outgoing]) -> None:
        deadline = time.monotonic() + self._timeout
        pending = list(items)
        rerouted = False
        last_error: BaseException | None = None
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ConnectionLost(
                    f"RabbitMQ did not confirm {len(pending)} message(s) within "
                    f"{self._timeout:g}s: {last_error!r}"
                ) from last_error
            try:
                for route in {item.route for item in pending}:
                    await self._topology.ensure(route)
                channel = await self._channel(remaining)
            except _CONNECTION_ERRORS as exc:
                last_error = exc
                await asyncio.sleep(min(0.2, max(0.0, remaining)))
                continue
            except aiormq.exceptions.AMQPError as exc:
                raise PublishError(f"RabbitMQ refused a declaration: {exc!r}") from exc
            results = await asyncio.gather(
                *(self._send(channel, item) for item in pending), return_exceptions=True
            )
            retry: list[Outgoing] = []
            returned: list[Outgoing] = []
            for item, result in zip(pending, results, strict=True):
                if isinstance(result, spec.Basic.Ack):
                    continue
                if isinstance(result, DeliveredMessage):
                    returned.append(item)
                elif isinstance(result, aiormq.exceptions.DeliveryError):
                    raise PublishError(f"RabbitMQ refused message {item.properties.message_id}")
                elif isinstance(result, aiormq.exceptions.ChannelNotFoundEntity):
                    # an exchange or queue was deleted under us: declare it again
                    self._topology.forget(item.route)
                    retry.append(item)
                elif isinstance(result, _CONNECTION_ERRORS) or type(result) is _CHANNEL_CLOSED:
                    last_error = result
                    retry.append(item)
                elif isinstance(result, BaseException):
                    raise PublishError(f"publishing to RabbitMQ failed: {result!r}") from result
            if returned:
                if rerouted:
                    raise PublishError(
                        f"RabbitMQ could not route {len(returned)} message(s), e.g. to "
                        f"{returned[0].route.routing_key or returned[0].route.exchange!r}"
                    )
                rerouted = True
                await self._reroute(returned)
            pending = retry + returned

    async def _reroute(self, returned: Sequence[Outgoing]) -> None:
        """Make routable what RabbitMQ returned: a topic without queues gets its default group."""
        for route in {item.route for item in returned}:
            if route.exchange:
                await self._topology.declare_default_group(route.topic)
            else:
                self._topology.forget(route)

    @staticmethod
    async def _send(
        channel: aiormq.abc.AbstractChannel, item: Outgoing
    ) -> aiormq.abc.ConfirmationFrameType | DeliveredMessage | None:
        route = item.route
        # wait=False: queue the frames without waiting for the socket to drain, per message
        return await cast(aiormq.Channel, channel).basic_publish(
            item.body,
            exchange=route.exchange,
            routing_key=route.routing_key,
            properties=item.properties,
            mandatory=True,
            wait=False,
        )
