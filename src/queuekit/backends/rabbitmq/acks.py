"""Acknowledgements of one consumer channel, coalesced: one ``basic.ack multiple`` per batch.

Every ``basic.ack`` is a frame RabbitMQ must process and, sent alone, a socket write of its
own. :class:`AckBatcher` queues the acks made during one turn of the event loop and sends
them together at the end of it: one ``basic.ack(multiple=True)`` for every acked tag below
the lowest tag still open on the channel, and a plain ``basic.ack`` for each acked tag above
it (a handler still holding an older message must not have it acknowledged by ``multiple``).

A tag is *open* from its delivery until it is settled. Settling it another way (publishing a
copy first, then acking; requeueing) goes through :meth:`AckBatcher.release` at the moment
its frame is sent, so a later ``multiple`` ack may cover it without ever acknowledging a tag
twice (which RabbitMQ answers by closing the channel).
"""

from __future__ import annotations

import asyncio
import logging

import aiormq

log = logging.getLogger(__name__)


class AckBatcher:
    """The open delivery tags of one consumer channel and the acks queued for it.

    Queued acks are sent by one task at a time, in order, so a ``multiple`` ack always names
    a tag that is still unacknowledged on the broker's side.
    """

    __slots__ = ("_acked", "_open", "_sender", "channel")

    def __init__(self, channel: aiormq.abc.AbstractChannel) -> None:
        self.channel = channel
        self._open: set[int] = set()
        self._acked: list[int] = []
        self._sender: asyncio.Task[None] | None = None

    def opened(self, tag: int) -> None:
        """A delivery with ``tag`` arrived: it stays open until it is acked or released."""
        self._open.add(tag)

    def release(self, tag: int) -> None:
        """``tag`` is being settled by a frame sent now, not through :meth:`ack`."""
        self._open.discard(tag)

    def ack(self, tag: int) -> None:
        """Queue the ack of ``tag``; it is sent once the current event-loop turn is over."""
        self._open.discard(tag)
        self._acked.append(tag)
        if self._sender is None:
            self._sender = asyncio.ensure_future(self._send())
            self._sender.add_done_callback(self._sent)

    async def drain(self) -> None:
        """Return once every ack queued so far was handed to the connection."""
        while (sender := self._sender) is not None:
            await asyncio.wait((sender,))

    async def _send(self) -> None:
        # A task's first step runs after the callbacks already scheduled: the acks made in
        # this turn of the loop are all queued by then.
        while self._acked:
            acked, self._acked = self._acked, []
            if self.channel.is_closed:
                return  # RabbitMQ delivers those messages again, as after any lost ack
            lowest_open = min(self._open, default=None)
            covered = -1
            singles: list[int] = []
            for tag in acked:
                if lowest_open is None or tag < lowest_open:
                    covered = max(covered, tag)
                else:
                    singles.append(tag)
            if covered >= 0:
                await self.channel.basic_ack(covered, multiple=True, wait=False)
            for tag in singles:
                await self.channel.basic_ack(tag, wait=False)

    def _sent(self, task: asyncio.Task[None]) -> None:
        self._sender = None
        if self._acked and not task.cancelled() and task.exception() is None:
            # Acked between the task's last check and its end: send them too.
            self._sender = asyncio.ensure_future(self._send())
            self._sender.add_done_callback(self._sent)
        else:
            _log_failure(task)


def _log_failure(task: asyncio.Future[None]) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        log.debug("acks were not sent (RabbitMQ will deliver those messages again): %r", exc)
