"""Settling deliveries in batches: many acks, nacks and dead letters, one MULTI/EXEC.

Each settlement is "acknowledge this entry in this group" plus, for a nack or a dead letter,
the write that puts the message where it goes next (the group's retry stream, its delayed
set, or the dead-letter stream). A batch runs in one transaction, so a message is never both
acknowledged and lost, nor moved without being acknowledged.

Acks are queued and applied by the next batch without the caller waiting (like AMQP's
basic.ack): an ack lost to a crash in that millisecond means one redelivery, which
at-least-once delivery allows. Nacks and dead letters wait until their batch is applied.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any, NamedTuple

from redis.asyncio import Redis

from queuekit.backends.redis_streams.connection import TRANSIENT_ERRORS, Backoff, mapped_errors

Command = tuple[Any, ...]

logger = logging.getLogger("queuekit.redis")


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
        self._applied: asyncio.Future[None] | None = None  # resolves when _queued is applied
        self._worker: asyncio.Task[None] | None = None

    def submit(self, settlement: Settlement) -> None:
        """Queue ``settlement`` for the next batch and return at once."""
        self._queued.append(settlement)
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

    async def _run(self) -> None:
        while self._queued:
            batch, self._queued = self._queued, []
            applied, self._applied = self._applied, None
            try:
                with mapped_errors("settling deliveries"):
                    await self._apply_with_retries(batch)
            except Exception as exc:
                if applied is not None:
                    applied.set_exception(exc)
                logger.warning(
                    "%d settlements could not be applied; those messages will be "
                    "redelivered after the visibility timeout: %s",
                    len(batch),
                    exc,
                )
            else:
                if applied is not None:
                    applied.set_result(None)

    async def _apply_with_retries(self, batch: Sequence[Settlement]) -> None:
        deadline = time.monotonic() + self._retry_for
        backoff = Backoff()
        while True:
            try:
                await self._apply(batch)
                return
            except TRANSIENT_ERRORS:
                if time.monotonic() >= deadline:
                    raise
                await backoff.wait()

    async def _apply(self, batch: Sequence[Settlement]) -> None:
        acks: defaultdict[tuple[str, str], list[bytes]] = defaultdict(list)
        deletes: defaultdict[str, list[bytes]] = defaultdict(list)
        pipe = self._client.pipeline(transaction=True)
        for settlement in batch:
            for command in settlement.commands:
                pipe.execute_command(*command)
            acks[settlement.stream, settlement.group].append(settlement.entry_id)
            if settlement.delete:
                deletes[settlement.stream].append(settlement.entry_id)
        for (stream, group), ids in acks.items():
            pipe.execute_command("XACK", stream, group, *ids)
        for stream, ids in deletes.items():
            pipe.execute_command("XDEL", stream, *ids)
        await pipe.execute()


def _retrieve(future: asyncio.Future[None]) -> None:
    # Mark the exception as seen: its waiters may all have been cancelled.
    if not future.cancelled():
        future.exception()
