"""Settling deliveries in batches: many acks, nacks and dead letters, one round trip.

Each settlement is "acknowledge this entry in this group" plus, for a nack or a dead letter,
the write that puts the message where it goes next (the group's retry stream, its delayed
set, or the dead-letter stream). A batch with such writes runs in one transaction
(MULTI/EXEC), so a message is never both acknowledged and lost, nor moved without being
acknowledged; acks alone need none (see :func:`acks_write`).

Acks are queued and applied by the next batch without the caller waiting (like AMQP's
basic.ack): an ack lost to a crash in that millisecond means one redelivery, which
at-least-once delivery allows. Nacks and dead letters wait until their batch is applied.
Queued acks are kept per subscription (:class:`AckBuffer`, an id appended to a list per
stream), so acknowledging costs no allocation beyond that; a batch becomes one ``XACK`` per
stream and group. A subscription about to fetch takes its queued acks into the same write
(:meth:`AckBuffer.take`), which spares them a round trip of their own.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, NamedTuple

from redis import exceptions as redis_errors
from redis.asyncio import Redis

from queuekit.backends.redis_streams.connection import (
    TRANSIENT_ERRORS,
    Backoff,
    mapped_errors,
    pack_commands,
    run_packed,
)

Command = tuple[Any, ...]

logger = logging.getLogger("queuekit.redis")

_MULTI = [b"MULTI"]
_EXEC = [b"EXEC"]
_XACK = b"XACK"
_XDEL = b"XDEL"


class Settlement(NamedTuple):
    """Acknowledge ``entry_id`` of ``stream`` in ``group`` after running ``commands``.

    ``delete`` also deletes the entry (retry streams belong to one group, so an
    acknowledged retry is garbage at once).
    """

    stream: str
    group: str
    entry_id: bytes
    delete: bool = False
    commands: tuple[Command, ...] = ()


class AckBuffer:
    """The queued acks of one consumer of one group: entry ids per stream it reads.

    Queued acks go to the settler's next batch, except while the consumer holds the buffer
    (:meth:`hold`): its next write is about to take them (:meth:`take`), so until it lets
    go (:meth:`release`) acks wait for that write instead of a round trip of their own.

    Args:
        settler: the broker's settler, which takes the ids in its next batch.
        group: the consumer group.
        streams: the streams the consumer reads, by index (``add`` names them by index).
        delete_first: acknowledged entries of ``streams[0]`` (the group's own retry
            stream) are deleted as well.
    """

    __slots__ = ("_delete_first", "_group", "_held", "_ids", "_queued", "_settler", "_streams")

    def __init__(
        self, settler: Settler, group: str, streams: Sequence[str], *, delete_first: bool
    ) -> None:
        self._settler = settler
        self._group = group.encode()
        self._streams = [stream.encode() for stream in streams]
        self._delete_first = delete_first
        self._ids: list[list[bytes]] = [[] for _ in streams]
        self._queued = False
        self._held = False

    def add(self, index: int, entry_id: bytes) -> None:
        """Queue the ack of ``entry_id`` of ``streams[index]`` for the next write."""
        self._ids[index].append(entry_id)
        if not self._queued and not self._held:
            self._queued = True
            self._settler.submit_acks(self)

    def hold(self) -> None:
        """Keep acks from now on for the holder's next write (it must call :meth:`take`)."""
        self._held = True

    def release(self) -> None:
        """Hand acks to the settler again, starting with those queued meanwhile."""
        self._held = False
        if not self._queued and any(self._ids):
            self._queued = True
            self._settler.submit_acks(self)

    def take(self) -> list[list[bytes]]:
        """The commands that apply every queued ack (XACK, and XDEL of retries); empties it.

        To send them outside a transaction, pass them through :func:`acks_write`.
        """
        commands: list[list[bytes]] = []
        for index, ids in enumerate(self._ids):
            if ids:
                stream = self._streams[index]
                commands.append([_XACK, stream, self._group, *ids])
                if index == 0 and self._delete_first:
                    commands.append([_XDEL, stream, *ids])
                self._ids[index] = []
        return commands

    def hand_over(self) -> list[list[bytes]]:
        """:meth:`take`, by the settler: the next ``add`` queues the buffer with it again."""
        self._queued = False
        return self.take()


class Settler:
    """Batches the settlements of every subscription of one broker (group commit).

    While a batch is being applied, new settlements queue up for the next one. A batch that
    fails on a transient error is retried for up to ``retry_for`` seconds (a Redis restart);
    acknowledging twice is harmless, moving twice only duplicates a retry.
    """

    def __init__(self, client: Redis, *, retry_for: float = 15.0) -> None:
        self._client = client
        self._retry_for = retry_for
        self._queued: list[Settlement] = []
        self._ack_buffers: list[AckBuffer] = []
        self._taken: list[list[list[bytes]]] = []
        self._applied: asyncio.Future[None] | None = None  # resolves when _queued is applied
        self._worker: asyncio.Task[None] | None = None

    def submit(self, settlement: Settlement) -> None:
        """Queue ``settlement`` for the next batch and return at once."""
        self._queued.append(settlement)
        self._wake()

    def submit_acks(self, buffer: AckBuffer) -> None:
        """Take the acks ``buffer`` holds (and any it gets meanwhile) in the next batch."""
        self._ack_buffers.append(buffer)
        self._wake()

    async def apply(self, settlement: Settlement) -> None:
        """Queue ``settlement`` and return once its batch is applied.

        Raises:
            ConnectionLost: Redis stayed unreachable for ``retry_for`` seconds.
            BrokerError: Redis refused the batch.
        """
        self._queued.append(settlement)
        if self._applied is None:
            self._applied = asyncio.get_running_loop().create_future()
            self._applied.add_done_callback(_retrieve)
        applied = self._applied
        self._wake()
        await asyncio.shield(applied)

    async def drain(self) -> None:
        """Wait until everything queued so far is applied (or given up)."""
        while self._worker is not None and not self._worker.done():
            await asyncio.shield(self._worker)

    def _wake(self) -> None:
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name="queuekit-redis-settle")

    def submit_commands(self, commands: list[list[bytes]]) -> None:
        """Apply ``commands`` (taken from an :class:`AckBuffer`) in the next batch."""
        self._taken.append(commands)
        self._wake()

    async def _run(self) -> None:
        while self._queued or self._ack_buffers or self._taken:
            batch, self._queued = self._queued, []
            buffers, self._ack_buffers = self._ack_buffers, []
            taken, self._taken = self._taken, []
            applied, self._applied = self._applied, None
            commands = _commands(batch)
            for buffer in buffers:
                commands += buffer.hand_over()
            for more in taken:
                commands += more
            try:
                if commands:
                    with mapped_errors("settling deliveries"):
                        # Acks and moves in one transaction: a message is never both
                        # acknowledged and lost.
                        await self._apply_with_retries(
                            [_MULTI, *commands, _EXEC] if batch else acks_write(commands)
                        )
            except Exception as exc:
                if applied is not None:
                    applied.set_exception(exc)
                logger.warning(
                    "a batch of settlements (%d commands) could not be applied; those "
                    "messages will be redelivered after the visibility timeout: %s",
                    len(commands),
                    exc,
                )
            else:
                if applied is not None:
                    applied.set_result(None)

    async def _apply_with_retries(self, commands: list[list[bytes]]) -> None:
        deadline = time.monotonic() + self._retry_for
        backoff = Backoff()
        packed = pack_commands(commands)
        while True:
            try:
                check_replies(await run_packed(self._client, packed, len(commands)))
                return
            except TRANSIENT_ERRORS:
                if time.monotonic() >= deadline:
                    raise
                await backoff.wait()


def acks_write(commands: list[list[bytes]]) -> list[list[bytes]]:
    """Commands from :meth:`AckBuffer.take`, ready to be sent on their own.

    Plain XACKs need no transaction (each is atomic, and acknowledging twice is harmless);
    with XDELs of retries they go in one ``MULTI``/``EXEC``, since an acknowledged retry left
    undeleted would stay in its stream for good.
    """
    if any(command[0] is _XDEL for command in commands):
        return [_MULTI, *commands, _EXEC]
    return commands


def check_replies(replies: Sequence[Any]) -> None:
    """Raise the first error among the replies of settling commands (EXEC's included).

    An error while queuing a command of a ``MULTI`` makes its ``EXEC`` discard the whole
    transaction (``EXECABORT``).
    """
    for reply in replies:
        if isinstance(reply, redis_errors.ResponseError):
            raise reply
        if isinstance(reply, list):
            for result in reply:
                if isinstance(result, redis_errors.ResponseError):
                    raise result


def _commands(batch: Sequence[Settlement]) -> list[list[bytes]]:
    """The commands of ``batch`` in order, then one XACK per (stream, group), then XDELs."""
    commands: list[list[bytes]] = []
    acks: defaultdict[tuple[str, str], list[bytes]] = defaultdict(list)
    deletes: defaultdict[str, list[bytes]] = defaultdict(list)
    for settlement in batch:
        for command in settlement.commands:
            commands.append([_as_bytes(arg) for arg in command])
        acks[settlement.stream, settlement.group].append(settlement.entry_id)
        if settlement.delete:
            deletes[settlement.stream].append(settlement.entry_id)
    for (stream, group), ids in acks.items():
        commands.append([b"XACK", stream.encode(), group.encode(), *ids])
    for stream, ids in deletes.items():
        commands.append([b"XDEL", stream.encode(), *ids])
    return commands


def _as_bytes(arg: Any) -> bytes:
    if isinstance(arg, bytes):
        return arg
    if isinstance(arg, str):
        return arg.encode()
    if isinstance(arg, int | float) and not isinstance(arg, bool):
        return repr(arg).encode()
    raise TypeError(f"cannot send {type(arg).__name__} to Redis")


def _retrieve(future: asyncio.Future[None]) -> None:
    # Mark the exception as seen: its waiters may all have been cancelled.
    if not future.cancelled():
        future.exception()
