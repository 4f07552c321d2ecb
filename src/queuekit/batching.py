"""Group commit: many concurrent calls, one round trip.

Backends wrap their raw "write this batch" operation in a :class:`GroupCommitter`. While a
batch is being written, new calls queue up; they are written together in the next batch.
A lone call is written at once (no added latency); under load, batches grow by themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


class GroupCommitter(Generic[T]):
    """Funnel concurrent ``submit`` calls into batched calls of ``flush``.

    ``flush(items)`` is called never concurrently with itself, with whole submits in
    submission order and at most ``max_batch`` items; the one exception is a single submit
    larger than ``max_batch``, which is flushed alone and never split (its caller gets one
    outcome). ``submit`` returns when the batch holding its items was flushed, and raises
    the exception ``flush`` raised for that batch.

    Raises:
        ValueError: ``max_batch`` is not a positive integer.
    """

    def __init__(
        self, flush: Callable[[Sequence[T]], Awaitable[None]], *, max_batch: object = 1000
    ) -> None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be a positive integer, not {max_batch!r}")
        self._flush = flush
        self._max_batch = max_batch
        self._pending: list[tuple[Sequence[T], asyncio.Future[None]]] = []
        self._size = 0
        self._worker: asyncio.Task[None] | None = None

    async def submit(self, items: Sequence[T]) -> None:
        """Queue ``items`` for the next batch and wait until that batch is flushed."""
        if not items:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((items, future))
        self._size += len(items)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.create_task(self._run(), name="queuekit-group-commit")
        await future

    async def drain(self) -> None:
        """Wait until everything submitted so far has been flushed."""
        while self._worker is not None and not self._worker.done():
            await asyncio.shield(self._worker)

    async def _run(self) -> None:
        while self._pending:
            batch: list[tuple[Sequence[T], asyncio.Future[None]]] = []
            count = 0
            while self._pending and (
                not batch or count + len(self._pending[0][0]) <= self._max_batch
            ):
                entry = self._pending.pop(0)
                batch.append(entry)
                count += len(entry[0])
            self._size -= count
            items = [item for chunk, _ in batch for item in chunk]
            try:
                await self._flush(items)
            except BaseException as exc:  # handed to every waiter of this batch
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
            else:
                for _, future in batch:
                    if not future.done():
                        future.set_result(None)


class WriteBehind(Generic[T]):
    """Collect items synchronously; write them in batches from one background task.

    ``add`` returns at once. While a batch is being written, new items queue up and form
    the next batch (at most ``max_batch`` items each). ``flush`` is never called
    concurrently with itself. A failed batch is handed to ``on_error`` and dropped:
    callers use this only for writes whose loss is recoverable (acknowledgements, which
    at-least-once redelivers). ``drain`` waits until everything added so far is written.
    """

    def __init__(
        self,
        flush: Callable[[Sequence[T]], Awaitable[None]],
        on_error: Callable[[Sequence[T], Exception], None],
        *,
        max_batch: object = 1000,
    ) -> None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise ValueError(f"max_batch must be a positive integer, not {max_batch!r}")
        self._flush = flush
        self._on_error = on_error
        self._max_batch = max_batch
        self._pending: list[T] = []
        self._worker: asyncio.Task[None] | None = None

    def add(self, item: T) -> None:
        """Queue ``item`` for the next batch (needs a running event loop)."""
        self._pending.append(item)
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(
                self._run(), name="queuekit-write-behind"
            )

    async def drain(self) -> None:
        """Wait until every item added so far was written (or handed to ``on_error``)."""
        while self._worker is not None:
            await asyncio.shield(self._worker)

    async def _run(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                try:
                    await self._flush(batch)
                except Exception as exc:
                    self._on_error(batch, exc)
        finally:
            self._worker = None
