"""The dead-letter / retry policy: the one place where a delivery is settled.

Given what the inner layers did, exactly one of these happens:

* returned normally: ``ack`` (outcome ``success``, or ``duplicate`` if the idempotency layer
  skipped the handler);
* :class:`~queuekit.errors.Reject`: ``dead_letter("rejected: <reason>")`` at once;
* :class:`DeadLetterNow` (invalid payload, crash loop...): ``dead_letter(reason, error)``;
* :class:`~queuekit.errors.Retry`, :class:`HandlerTimeout` or any other exception: while
  ``attempt <= retries``, ``nack`` after the backoff (or ``Retry.delay``), outcome
  ``retried``; after the last attempt ``dead_letter("max_attempts_exceeded", error)``;
* cancelled (the worker's grace period ran out): ``nack(0)``, outcome ``released``, so the
  message is redelivered at once to another consumer.

A settlement the broker refuses is logged and counted (stage ``settle``), not retried: the
broker redelivers an unsettled message by itself.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from queuekit.errors import Reject, Retry
from queuekit.worker.middleware.base import (
    Context,
    DeadLetterNow,
    HandlerTimeout,
    Next,
    Outcome,
    Services,
    describe_error,
)
from queuekit.worker.middleware.retry import backoff_delay

if TYPE_CHECKING:
    from queuekit.worker.app import HandlerSpec

__all__ = ["MAX_ATTEMPTS_EXCEEDED", "SettlementMiddleware"]

MAX_ATTEMPTS_EXCEEDED = "max_attempts_exceeded"


class SettlementMiddleware:
    """Settle each delivery exactly once according to the policy above."""

    def bind(self, call_next: Next, spec: HandlerSpec, services: Services) -> Next:
        """The same layer, pre-bound to the rest of the chain."""
        return functools.partial(self.__call__, call_next=call_next)

    async def __call__(self, ctx: Context, call_next: Next) -> None:
        try:
            await call_next(ctx)
        except asyncio.CancelledError:
            if not ctx.settled:
                await self._settle(ctx, ctx.nack(0.0, Outcome.RELEASED))
            raise
        except Reject as exc:
            await self._settle(ctx, ctx.dead_letter(f"rejected: {exc.reason}", None))
        except DeadLetterNow as exc:
            ctx.error, ctx.error_stage = exc.error, exc.stage
            await self._settle(ctx, ctx.dead_letter(exc.reason, exc.error))
        except Retry as exc:
            await self._fail(ctx, f"Retry: {exc.reason}", stage=None, delay=exc.delay)
        except HandlerTimeout as exc:
            await self._fail(ctx, describe_error(exc), stage="timeout", delay=None)
        except Exception as exc:
            await self._fail(
                ctx, describe_error(exc), stage=ctx.error_stage or "handler", delay=None
            )
        else:
            try:  # the common case, without a coroutine wrapping the ack
                await ctx.ack(Outcome.DUPLICATE if ctx.duplicate else Outcome.SUCCESS)
            except Exception as exc:
                self._settle_failed(ctx, exc)

    async def _fail(
        self, ctx: Context, error: str, *, stage: str | None, delay: float | None
    ) -> None:
        ctx.error, ctx.error_stage = error, stage
        spec = ctx.spec
        if ctx.attempt <= spec.retries:
            if delay is None:
                delay = backoff_delay(ctx.attempt, spec.backoff, spec.max_backoff, ctx.services.rng)
            await self._settle(ctx, ctx.nack(max(0.0, delay)))
        else:
            await self._settle(ctx, ctx.dead_letter(MAX_ATTEMPTS_EXCEEDED, error))

    @staticmethod
    async def _settle(ctx: Context, settlement: Coroutine[Any, Any, None]) -> None:
        try:
            await settlement
        except Exception as exc:
            SettlementMiddleware._settle_failed(ctx, exc)

    @staticmethod
    def _settle_failed(ctx: Context, exc: Exception) -> None:
        ctx.error_stage = "settle"
        ctx.services.logger.error(
            "could not settle a message; the broker will redeliver it",
            extra={
                "topic": ctx.spec.topic,
                "group": ctx.spec.group,
                "message_id": ctx.message.id,
                "outcome": str(ctx.outcome),
                "error": describe_error(exc),
            },
        )
