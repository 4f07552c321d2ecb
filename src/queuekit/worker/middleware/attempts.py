"""Crash-loop guard: a delivery that arrives past its last attempt is dead-lettered unrun.

A message whose handler kills the worker (segfault, OOM kill, SIGKILL) is never settled; the
broker redelivers it with ``attempt + 1``. Once ``attempt`` exceeds ``retries + 1``, running
it again would likely kill this worker too, so it goes to the dead-letter queue instead.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

from queuekit.worker.middleware.base import Context, DeadLetterNow, Next, Services
from queuekit.worker.middleware.settle import MAX_ATTEMPTS_EXCEEDED

if TYPE_CHECKING:
    from queuekit.worker.app import HandlerSpec

__all__ = ["WORKER_DIED", "AttemptLimitMiddleware"]

WORKER_DIED = "worker died during processing"


class AttemptLimitMiddleware:
    """Dead-letter (``max_attempts_exceeded``) a delivery whose attempt is already too high."""

    def bind(self, call_next: Next, spec: HandlerSpec, services: Services) -> Next:
        """The same layer, pre-bound to the rest of the chain."""
        return functools.partial(self.__call__, call_next=call_next)

    async def __call__(self, ctx: Context, call_next: Next) -> None:
        if ctx.attempt > ctx.spec.max_attempts:
            raise DeadLetterNow(MAX_ATTEMPTS_EXCEEDED, WORKER_DIED, stage="handler")
        await call_next(ctx)
