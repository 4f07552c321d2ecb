"""Per-call timeout: a handler that overruns ``spec.timeout`` fails this attempt.

An ``async`` handler is cancelled at the deadline. A plain ``def`` handler runs on a thread,
which Python cannot stop: the attempt fails and is retried, and the thread is abandoned
(the handler's thread pool logs it loudly and keeps counting it until it returns).

Bound to a handler (what the worker does), the layer keeps one timer per task instead of
arming and cancelling an ``asyncio.timeout`` per call: the worker runs a handler's calls one
after another on long-lived tasks, each call only moves its task's deadline forward, and the
timer, when it fires, either cancels the overrunning call or re-arms itself at the current
deadline (or rests while the task is idle). A call costs a clock read and a few stores.
"""

from __future__ import annotations

import asyncio
import time
from asyncio import current_task, get_running_loop
from collections.abc import Callable
from typing import TYPE_CHECKING

from mypy_extensions import mypyc_attr

from queuekit.worker.middleware.base import Context, HandlerTimeout, Next, Services

if TYPE_CHECKING:
    from queuekit.worker.app import HandlerSpec

__all__ = ["TimeoutMiddleware"]


@mypyc_attr(allow_interpreted_subclasses=True)  # mypyc: a public base
class TimeoutMiddleware:
    """Raise :class:`HandlerTimeout` when the inner layers overrun ``ctx.spec.timeout``."""

    async def __call__(self, ctx: Context, call_next: Next) -> None:
        timeout = ctx.spec.timeout
        if timeout is None:
            await call_next(ctx)
            return
        deadline = asyncio.timeout(timeout)
        try:
            async with deadline:
                await call_next(ctx)
        except TimeoutError:
            if not deadline.expired():  # the handler's own TimeoutError is a plain failure
                raise
            raise HandlerTimeout(timeout) from None

    def bind(self, call_next: Next, spec: HandlerSpec, services: Services) -> Next:
        """No layer for a handler without timeout; else per-task deadlines (see above)."""
        if spec.timeout is None:
            return call_next
        return _Deadlines(call_next, spec.timeout).call


class _TaskDeadline:
    """The deadline of the call a task is running, and that task's one timer."""

    __slots__ = ("armed_at", "clock", "deadline", "expired", "loop", "running", "task", "timer")

    def __init__(self, task: asyncio.Task[object], loop: asyncio.AbstractEventLoop) -> None:
        self.task = task
        self.loop = loop
        # The loop's clock: asyncio's own loops read time.monotonic, which, called directly,
        # saves running their Python-level time() once per message.
        self.clock: Callable[[], float] = (
            time.monotonic if type(loop).time is asyncio.BaseEventLoop.time else loop.time
        )
        self.deadline = 0.0
        self.running = False  # a call of this layer is in progress on the task
        self.expired = False  # this layer cancelled the task for the running call
        self.timer: asyncio.TimerHandle | None = None
        self.armed_at = 0.0


class _Deadlines:
    """The timeout layer of one handler: ``timeout`` seconds per call, one timer per task."""

    __slots__ = ("_call_next", "_tasks", "_timeout")

    def __init__(self, call_next: Next, timeout: float) -> None:
        self._call_next = call_next
        self._timeout = timeout
        self._tasks: dict[asyncio.Task[object], _TaskDeadline] = {}

    async def call(self, ctx: Context) -> None:
        """Run the rest of the chain within ``timeout``, or raise HandlerTimeout."""
        # Given the loop, current_task skips looking it up (it is Python code before 3.12).
        # Looked up per call, not taken from the worker: a middleware may run the rest of the
        # chain in a task of its own (asyncio.wait_for does on 3.11).
        task = current_task(get_running_loop())
        assert task is not None  # middleware runs in tasks
        watch = self._tasks.get(task)
        if watch is None:
            watch = self._watch(task)
        deadline = watch.clock() + self._timeout
        watch.deadline = deadline
        if watch.timer is None or deadline < watch.armed_at:
            self._arm(watch, deadline)
        cancelling = task.cancelling()
        watch.running = True
        try:
            await self._call_next(ctx)
        except asyncio.CancelledError:
            if watch.expired:
                watch.expired = False
                if task.uncancel() <= cancelling:  # ours alone, not a shutdown's as well
                    raise HandlerTimeout(self._timeout) from None
            raise
        finally:
            watch.running = False
            if watch.expired:  # the call swallowed our cancellation and returned
                watch.expired = False
                task.uncancel()

    def _watch(self, task: asyncio.Task[object]) -> _TaskDeadline:
        watch = self._tasks[task] = _TaskDeadline(task, asyncio.get_running_loop())
        task.add_done_callback(self._forget)
        return watch

    def _forget(self, task: asyncio.Task[object]) -> None:
        watch = self._tasks.pop(task, None)
        if watch is not None and watch.timer is not None:
            watch.timer.cancel()

    def _arm(self, watch: _TaskDeadline, when: float) -> None:
        if watch.timer is not None:
            watch.timer.cancel()
        watch.timer = watch.loop.call_at(when, self._check, watch)
        watch.armed_at = when

    def _check(self, watch: _TaskDeadline) -> None:
        watch.timer = None
        if not watch.running:  # idle: the next call arms the timer again
            return
        if watch.deadline <= watch.armed_at:  # still the call this timer was armed for
            watch.expired = True
            watch.task.cancel()
        else:  # the call running now started after the one this timer was armed for
            self._arm(watch, watch.deadline)
