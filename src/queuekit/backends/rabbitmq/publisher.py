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

from queuekit.backends.rabbitmq.failures import is_connection_failure
from queuekit.backends.rabbitmq.topology import Route, Topology
from queuekit.batching import GroupCommitter
from queuekit.errors import ConnectionLost, PublishError

ChannelSource = Callable[[], Awaitable[aiormq.abc.AbstractChannel]]
"""Returns the confirm channel once it is usable (waiting for a reconnection if need be)."""


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
            try:
                async with asyncio.timeout(max(0.0, remaining)):
                    if remaining <= 0:
                        raise TimeoutError
                    retry, returned, error = await self._attempt(pending)
            except TimeoutError:
                raise ConnectionLost(
                    f"RabbitMQ did not confirm {len(pending)} message(s) within "
                    f"{self._timeout:g}s (last error: {last_error!r})"
                ) from last_error
            last_error = error or last_error
            if returned:
                if rerouted:
                    raise PublishError(
                        f"RabbitMQ could not route {len(returned)} message(s), e.g. to "
                        f"{returned[0].route.routing_key or returned[0].route.exchange!r}"
                    )
                rerouted = True
                try:
                    await self._reroute(returned)
                except Exception as exc:
                    if not is_connection_failure(exc):
                        raise PublishError(f"RabbitMQ refused a declaration: {exc}") from exc
                    last_error = exc
            if retry and error is not None:
                await asyncio.sleep(0.1)  # the connection is down: let it come back
            pending = retry + returned

    async def _attempt(
        self, pending: Sequence[Outgoing]
    ) -> tuple[list[Outgoing], list[Outgoing], BaseException | None]:
        """Publish ``pending`` once: (to retry, returned unroutable, the connection error)."""
        try:
            for route in {item.route for item in pending}:
                await self._topology.ensure(route)
            channel = await self._channel()
        except Exception as exc:
            if is_connection_failure(exc):
                return list(pending), [], exc
            raise PublishError(f"RabbitMQ refused a declaration: {exc}") from exc
        results = await asyncio.gather(
            *(self._send(channel, item) for item in pending), return_exceptions=True
        )
        retry: list[Outgoing] = []
        returned: list[Outgoing] = []
        error: BaseException | None = None
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
            elif isinstance(result, BaseException) and is_connection_failure(result):
                error = result
                retry.append(item)
            elif isinstance(result, BaseException):
                raise PublishError(f"publishing to RabbitMQ failed: {result!r}") from result
        return retry, returned, error

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
