"""Idempotency: a message (or business key) processed once is not processed again.

The key is the message id, or ``spec.idempotency_key(payload)`` for a business key, scoped
to ``topic/group`` (every group processes every message once). Using the store's claim
protocol (:mod:`queuekit.idempotency`):

* ``DONE``: processed before; the handler is skipped and the message acked (``duplicate``).
* A *redelivered* message (attempt > 1) takes over a live claim: the broker redelivers only
  after the previous holder gave the message up or died (SIGKILL), and a dead worker's claim
  must not hold its own redelivery back until the claim's lease runs out.
* ``BUSY``: another consumer is handling the same key right now; this delivery waits, polling
  with backoff, until that one completes (then it is a duplicate) or gives up its claim
  (then this one claims it). The wait is bounded by the claim's lease, which runs out by
  itself if the other consumer died.
* ``CLAIMED``: the handler runs; on success the key is completed, on any failure released
  so that the retry can claim it.

The lease is the handler's timeout plus a margin (or :data:`DEFAULT_LEASE` without a
timeout): long enough that a live handler keeps its claim, short enough that a crashed
worker's claim frees itself soon after the broker redelivers its message.

A store that fails on ``begin`` fails the attempt (retried; stage ``idempotency``). A store
that fails on ``complete`` is logged: the handler's work is done, so the message is acked.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import os
from typing import TYPE_CHECKING

from mypy_extensions import mypyc_attr

from queuekit.worker.middleware.base import Context, Next, Services, describe_error

if TYPE_CHECKING:
    from queuekit.idempotency import ClaimState, IdempotencyStore
    from queuekit.worker.app import HandlerSpec

__all__ = ["DEFAULT_LEASE", "LEASE_MARGIN", "IdempotencyMiddleware"]

DEFAULT_LEASE = 300.0
LEASE_MARGIN = 30.0


@mypyc_attr(allow_interpreted_subclasses=True)  # mypyc: a public base
class IdempotencyMiddleware:
    """Skip messages whose key was processed; see the module docstring."""

    def __init__(self, *, first_poll: float = 0.05, max_poll: float = 1.0) -> None:
        self._first_poll = first_poll
        self._max_poll = max_poll
        # Claim tokens: unique across processes (random prefix), cheap per message (counter).
        self._token_prefix = os.urandom(8).hex()
        self._token_counter = itertools.count()

    def bind(self, call_next: Next, spec: HandlerSpec, services: Services) -> Next:
        """No layer at all for a handler that opted out, or without a store."""
        if services.idempotency is None or spec.idempotency_key is False:
            return call_next
        return functools.partial(self.__call__, call_next=call_next)

    async def __call__(self, ctx: Context, call_next: Next) -> None:
        store = ctx.services.idempotency
        spec = ctx.spec
        if store is None or spec.idempotency_key is False:
            await call_next(ctx)
            return
        # Imported here: a worker without a store never loads the stores' module (sqlite3).
        from queuekit.idempotency import ClaimState

        key = self._key(ctx)
        token = f"{self._token_prefix}-{next(self._token_counter)}"
        lease = DEFAULT_LEASE if spec.timeout is None else spec.timeout + LEASE_MARGIN
        try:
            state = await self._claim(store, key, token, lease, ctx.message.attempt > 1)
        except Exception:
            ctx.error_stage = "idempotency"
            raise
        if state is ClaimState.DONE:
            ctx.duplicate = True
            return
        try:
            await call_next(ctx)
        except BaseException as exc:
            await self._release(ctx, store, key, token)
            raise exc  # mypyc: a bare raise after an await re-raises sys.exc_info()
        try:
            await store.complete(key, token)
        except Exception as exc:
            self._log_store_error(ctx, "could not remember a processed message", exc)

    @staticmethod
    def _key(ctx: Context) -> str:
        spec = ctx.spec
        make_key = spec.idempotency_key
        # object: make_key is user code, whatever its annotation says.
        key: object = (
            ctx.message.id if make_key is None or make_key is False else make_key(ctx.payload)
        )
        if not isinstance(key, str) or not key:
            raise TypeError(f"idempotency_key of {spec.topic!r} must return a non-empty str")
        return f"{spec.topic}/{spec.group}/{key}"

    async def _claim(
        self, store: IdempotencyStore, key: str, token: str, lease: float, take_over: bool
    ) -> ClaimState:
        from queuekit.idempotency import ClaimState

        pause = self._first_poll
        while (
            state := await store.begin(key, token, lease, take_over=take_over)
        ) is ClaimState.BUSY:
            await asyncio.sleep(pause)
            pause = min(pause * 2, self._max_poll)
        return state

    async def _release(self, ctx: Context, store: IdempotencyStore, key: str, token: str) -> None:
        try:
            await store.release(key, token)
        except Exception as exc:  # the lease frees the claim later; the retry waits for it
            self._log_store_error(ctx, "could not release an idempotency claim", exc)

    @staticmethod
    def _log_store_error(ctx: Context, text: str, exc: Exception) -> None:
        ctx.services.logger.warning(
            text,
            extra={
                "topic": ctx.spec.topic,
                "group": ctx.spec.group,
                "message_id": ctx.message.id,
                "error": describe_error(exc),
            },
        )
