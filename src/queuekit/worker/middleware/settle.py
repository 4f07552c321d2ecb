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
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

from mypy_extensions import mypyc_attr

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


@mypyc_attr(allow_interpreted_subclasses=True)  # mypyc: a public base
class SettlementMiddleware:
    """Settle each delivery exactly once according to the policy above."""

    def bind(self, call_next: Next, spec: HandlerSpec, services: Services) -> Next:
        """The same layer, pre-bound to the rest of the chain."""
        return _Settlement(call_next).settle

    async def __call__(self, ctx: Context, call_next: Next) -> None:
        await _Settlement(call_next).settle(ctx)


# Module constants: an enum member read through its class costs a lookup per message.
_SUCCESS = Outcome.SUCCESS
_DUPLICATE = Outcome.DUPLICATE
_RELEASED = Outcome.RELEASED


class _Settlement:
    """The settlement layer around one chain (the policy in the module docstring)."""

    __slots__ = ("_call_next",)

    def __init__(self, call_next: Next) -> None:
        self._call_next = call_next

    async def settle(self, ctx: Context) -> None:
        """Run the rest of the chain and settle ``ctx`` by what it did."""
        try:
            await self._call_next(ctx)
        except asyncio.CancelledError as cancelled:
            if not ctx.settled:
                await _settle(ctx, ctx.nack(0.0, _RELEASED))
            raise cancelled  # mypyc: a bare raise after an await re-raises sys.exc_info()
        except Reject as exc:
            await _settle(ctx, ctx.dead_letter(f"rejected: {exc.reason}", None))
        except DeadLetterNow as exc:
            ctx.error, ctx.error_stage = exc.error, exc.stage
            await _settle(ctx, ctx.dead_letter(exc.reason, exc.error))
        except Retry as exc:
            await _fail(ctx, f"Retry: {exc.reason}", stage=None, delay=exc.delay)
        except HandlerTimeout as exc:
            await _fail(ctx, describe_error(exc), stage="timeout", delay=None)
        except Exception as exc:
            await _fail(ctx, describe_error(exc), stage=ctx.error_stage or "handler", delay=None)
        else:
            try:  # the common case, without a coroutine wrapping the ack
                await ctx.ack(_DUPLICATE if ctx.duplicate else _SUCCESS)
            except Exception as exc:
                _settle_failed(ctx, exc)


async def _fail(ctx: Context, error: str, *, stage: str | None, delay: float | None) -> None:
    ctx.error, ctx.error_stage = error, stage
    spec = ctx.spec
    if ctx.attempt <= spec.retries:
        if delay is None:
            delay = backoff_delay(ctx.attempt, spec.backoff, spec.max_backoff, ctx.services.rng)
        await _settle(ctx, ctx.nack(max(0.0, delay)))
    else:
        await _settle(ctx, ctx.dead_letter(MAX_ATTEMPTS_EXCEEDED, error))


async def _settle(ctx: Context, settlement: Coroutine[Any, Any, None]) -> None:
    try:
        await settlement
    except Exception as exc:
        _settle_failed(ctx, exc)


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
