"""Settling deliveries in batches: many acks, nacks and dead letters, one MULTI/EXEC.

Each settlement is "acknowledge this entry in this group" plus, for a nack or a dead letter,
the write that puts the message where it goes next (the group's retry stream, its delayed
set, or the dead-letter stream). A batch runs in one transaction, so a message is never both
acknowledged and lost, nor moved without being acknowledged.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from redis.asyncio import Redis

from queuekit.backends.redis_streams.connection import TRANSIENT_ERRORS, Backoff, mapped_errors
from queuekit.batching import GroupCommitter

Command = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class Settlement:
    """Acknowledge ``entry_id`` of ``stream`` in ``group`` after running ``commands``.

    ``delete`` also deletes the entry (retry streams belong to one group, so an
    acknowledged retry is garbage at once).
    """

    stream: str
    group: str
    entry_id: bytes
    delete: bool = False
    commands: tuple[Command, ...] = field(default=())


class Settler:
    """Batches settlements of every subscription of one broker (group commit).

    A batch that fails on a transient error is retried for up to ``retry_for`` seconds
    (a Redis restart); acknowledging twice is harmless, moving twice only duplicates a
    retry, which at-least-once delivery allows.
    """

    def __init__(self, client: Redis, *, retry_for: float = 15.0, max_batch: int = 1000) -> None:
        self._client = client
        self._retry_for = retry_for
        self._committer: GroupCommitter[Settlement] = GroupCommitter(
            self._flush, max_batch=max_batch
        )

    async def settle(self, settlement: Settlement) -> None:
        """Return once ``settlement`` is applied (raises ConnectionLost if Redis stays away)."""
        with mapped_errors("settling a delivery"):
            await self._committer.submit((settlement,))

    async def drain(self) -> None:
        await self._committer.drain()

    async def _flush(self, settlements: Sequence[Settlement]) -> None:
        deadline = time.monotonic() + self._retry_for
        backoff = Backoff()
        while True:
            try:
                await self._apply(settlements)
                return
            except TRANSIENT_ERRORS:
                if time.monotonic() >= deadline:
                    raise
                await backoff.wait()

    async def _apply(self, settlements: Sequence[Settlement]) -> None:
        acks: defaultdict[tuple[str, str], list[bytes]] = defaultdict(list)
        deletes: defaultdict[str, list[bytes]] = defaultdict(list)
        pipe = self._client.pipeline(transaction=True)
        for settlement in settlements:
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
