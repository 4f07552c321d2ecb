"""The core of the onion: call the handler, on the event loop or on a bounded thread pool.

``async def`` handlers are awaited. Plain ``def`` handlers run on :class:`HandlerThreads`,
a fixed number of daemon threads per handler (its concurrency). Python cannot stop a thread:
when a sync call is abandoned (timeout, shutdown), its thread keeps running until the
function returns. Such a *hung* thread still holds one of the pool's threads, so the pool
logs every abandonment at ERROR with the count of hung threads, and at CRITICAL when all its
threads are hung (its handler then makes no progress until one returns). Daemon threads
never keep the process from exiting after the worker stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from queuekit.worker.app import HandlerSpec
from queuekit.worker.middleware.base import Context

__all__ = ["HandlerCall", "HandlerThreads"]


@dataclass(slots=True, eq=False)
class _Job:
    func: Callable[..., Any]
    args: tuple[Any, ...]
    context: contextvars.Context
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    started_at: float | None = None
    finished: bool = False
    abandoned: bool = False


def _resolve(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller stopped waiting (timeout, shutdown)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class HandlerThreads:
    """At most ``size`` daemon threads running sync handler calls; see the module docstring."""

    def __init__(self, size: int, name: str, logger: logging.Logger) -> None:
        if size < 1:
            raise ValueError("a thread pool needs at least one thread")
        self.size = size
        self.name = name
        self._logger = logger
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._hung = 0
        self._lock = threading.Lock()

    @property
    def hung(self) -> int:
        """Threads still running a call that was abandoned."""
        return self._hung

    async def run(self, func: Callable[..., Any], *args: Any) -> Any:
        """Run ``func(*args)`` on a pool thread and return its result (or raise its error)."""
        loop = asyncio.get_running_loop()
        job = _Job(func, args, contextvars.copy_context(), loop, loop.create_future())
        self._submit(job)
        try:
            return await job.future
        except asyncio.CancelledError:
            self._abandon(job)
            raise

    def shutdown(self) -> None:
        """Let idle threads exit; hung ones exit when their call returns."""
        with self._lock:
            for _ in self._threads:
                self._jobs.put(None)

    def _submit(self, job: _Job) -> None:
        with self._lock:
            self._jobs.put(job)
            if self._idle > 0:
                self._idle -= 1
            elif len(self._threads) < self.size:
                thread = threading.Thread(
                    target=self._serve, name=f"{self.name}-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()

    def _serve(self) -> None:
        while True:
            job = self._jobs.get()
            if job is None:
                return
            self._work(job)
            with self._lock:
                self._idle += 1

    def _start(self, job: _Job) -> float | None:
        """Mark ``job`` started and return when; None if it was abandoned while queued.

        A method of its own so that type checkers (and mypyc, which compiles by their verdict)
        do not carry ``job.abandoned`` narrowed to False into the rest of :meth:`_work`.
        """
        with self._lock:
            if job.abandoned:  # nobody wants the result
                return None
            job.started_at = time.monotonic()
            return job.started_at

    def _work(self, job: _Job) -> None:
        started_at = self._start(job)
        if started_at is None:
            return
        result: Any = None
        error: BaseException | None = None
        try:
            result = job.context.run(job.func, *job.args)
        except BaseException as exc:
            error = exc
        with self._lock:
            job.finished = True
            abandoned = job.abandoned
            if abandoned:
                self._hung -= 1
            hung = self._hung
        if abandoned:
            self._logger.warning(
                "an abandoned handler thread returned",
                extra={
                    "pool": self.name,
                    "hung_threads": hung,
                    "seconds": round(time.monotonic() - started_at, 3),
                },
            )
            return
        # A closed loop (RuntimeError) means the worker is gone: nobody wants the result.
        with contextlib.suppress(RuntimeError):
            job.loop.call_soon_threadsafe(_resolve, job.future, result, error)

    def _abandon(self, job: _Job) -> None:
        with self._lock:
            if job.finished:  # it returned just now; its result is simply dropped
                return
            job.abandoned = True
            if job.started_at is None:  # still queued: the thread will skip it
                return
            self._hung += 1
            hung = self._hung
        level = logging.CRITICAL if hung >= self.size else logging.ERROR
        self._logger.log(
            level,
            "a sync handler did not return in time; its thread is abandoned and still running",
            extra={"pool": self.name, "hung_threads": hung, "pool_size": self.size},
        )


class HandlerCall:
    """The innermost layer (:meth:`call`): call ``spec.func`` with the payload (and the message)."""

    def __init__(self, spec: HandlerSpec, threads: HandlerThreads | None) -> None:
        if not spec.is_async and threads is None:
            raise ValueError("a sync handler needs a thread pool")
        self._func = spec.func
        self._takes_message = spec.takes_message
        self._threads = None if spec.is_async else threads

    async def call(self, ctx: Context) -> None:
        """Call the handler with ``ctx.payload`` (and the message); set ``handler_seconds``."""
        threads = self._threads
        start = time.perf_counter()
        try:
            if threads is not None:
                await threads.run(self._func, *self._arguments(ctx))
            elif self._takes_message:
                await self._func(ctx.payload, ctx.delivery.message)
            else:  # the common case, without a tuple of arguments
                await self._func(ctx.payload)
        finally:
            ctx.handler_seconds = time.perf_counter() - start

    def _arguments(self, ctx: Context) -> tuple[Any, ...]:
        return (ctx.payload, ctx.delivery.message) if self._takes_message else (ctx.payload,)
