"""Crash-loop guard: a delivery that arrives past its last attempt is dead-lettered unrun.

A message whose handler kills the worker (segfault, OOM kill, SIGKILL) is never settled; the
broker redelivers it with ``attempt + 1``. Once ``attempt`` exceeds ``retries + 1``, running
it again would likely kill this worker too, so it goes to the dead-letter queue instead.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING

from mypy_extensions import mypyc_attr

from queuekit.worker.middleware.base import Context, DeadLetterNow, Next, Services
from queuekit.worker.middleware.settle import MAX_ATTEMPTS_EXCEEDED

if TYPE_CHECKING:
    from queuekit.worker.app import HandlerSpec

__all__ = ["WORKER_DIED", "AttemptLimitMiddleware"]

WORKER_DIED = "worker died during processing"


@mypyc_attr(allow_interpreted_subclasses=True)  # mypyc: a public base
class AttemptLimitMiddleware:
    """Dead-letter (``max_attempts_exceeded``) a delivery whose attempt is already too high."""

    def bind(self, call_next: Next, spec: HandlerSpec, services: Services) -> Next:
        """The same layer for ``spec``, its attempt limit read once."""
        return _AttemptLimit(call_next, spec.max_attempts).check

    async def __call__(self, ctx: Context, call_next: Next) -> None:
        await _AttemptLimit(call_next, ctx.spec.max_attempts).check(ctx)


class _AttemptLimit:
    """The crash-loop guard of one handler.

    Not a coroutine: it has nothing to do after the rest of the chain, so it raises or hands
    back the rest's awaitable, and a delivery goes through one coroutine less.
    """

    __slots__ = ("_call_next", "_max_attempts")

    def __init__(self, call_next: Next, max_attempts: int) -> None:
        self._call_next = call_next
        self._max_attempts = max_attempts

    def check(self, ctx: Context) -> Awaitable[None]:
        """Dead-letter ``ctx`` if past its last attempt, else hand it to the rest."""
        if ctx.delivery.message.attempt > self._max_attempts:
            raise DeadLetterNow(MAX_ATTEMPTS_EXCEEDED, WORKER_DIED, stage="handler")
        return self._call_next(ctx)
