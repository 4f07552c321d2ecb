"""Per-call timeout: a handler that overruns ``spec.timeout`` fails this attempt.

An ``async`` handler is cancelled at the deadline. A plain ``def`` handler runs on a thread,
which Python cannot stop: the attempt fails and is retried, and the thread is abandoned
(the handler's thread pool logs it loudly and keeps counting it until it returns).
"""

from __future__ import annotations

import asyncio

from queuekit.worker.middleware.base import Context, HandlerTimeout, Next

__all__ = ["TimeoutMiddleware"]


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
