"""The middleware model: a per-delivery :class:`Context` passed through an onion of layers.

A middleware is any object with::

    async def __call__(self, ctx: Context, call_next: Next) -> None

It may act before and after ``await call_next(ctx)``, skip it, or raise. Inner layers
signal *what should happen to the message* by raising (:class:`~queuekit.errors.Reject`,
:class:`~queuekit.errors.Retry`, :class:`DeadLetterNow`, :class:`HandlerTimeout`, any
exception) or by setting ``ctx.duplicate``; the settlement layer turns that into exactly one
``ack`` / ``nack`` / ``dead_letter`` through the ``Context`` and records ``ctx.outcome``;
outer layers (logging, metrics) read the result. Middleware instances are shared by every
delivery and every handler, so they keep no per-message state on ``self``.

A middleware may also offer ``bind(call_next, spec, services) -> Next``: :func:`compose`, given
the handler and the worker's services, then asks it once per handler for that handler's
layer, which may precompute what it needs (labelled metric series, a timeout) or return
``call_next`` itself when it has nothing to do for that handler (no timeout, no store...).
A bound layer must behave exactly like ``__call__``; it is only cheaper per message. A bound
layer with nothing to do after the rest of the chain may be a plain function returning the
rest's awaitable (or raising before it): every caller awaits ``call_next(ctx)`` at once, so
it is the same to them, and it saves a coroutine per message. A bound layer is best a bound
method or a function, not an object with ``__call__``: CPython 3.11 calls those through a slow
generic path, about twice the cost of calling a bound method.

A middleware that only *looks at* finished deliveries (logging, metrics) may instead offer
``observer(spec, services) -> Observer | None``: a plain function called with each context
once the layers inside it are done, which must not raise and never changes what happens to
the message. :func:`compose` runs consecutive observers after the layers inside them in one
coroutine; :func:`compose_pipeline` (what the worker uses) hands the outermost ones back
apart, and the worker calls them itself once a delivery is through, without a coroutine.
"""

from __future__ import annotations

import enum
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mypy_extensions import mypyc_attr

from queuekit.broker import Delivery
from queuekit.message import COMPILED, Message
from queuekit.worker.app import HandlerSpec  # mypyc: a dataclass field's type must exist at runtime

# mypyc: a compiled ``@runtime_checkable`` Protocol loses its Protocol base (runtime_checkable
# then raises TypeError), so the protocols live in an interpreted module.
from queuekit.worker.middleware.protocols import BindableMiddleware, Middleware, ObservingMiddleware

if TYPE_CHECKING:
    from queuekit.idempotency import IdempotencyStore
    from queuekit.metrics import Metrics

__all__ = [
    "BindableMiddleware",
    "Context",
    "DeadLetterNow",
    "HandlerTimeout",
    "Middleware",
    "Next",
    "Observer",
    "Observing",
    "ObservingMiddleware",
    "Outcome",
    "Pipeline",
    "Services",
    "compose",
    "compose_pipeline",
    "describe_error",
    "notify",
]

MAX_ERROR_LENGTH = 500


class Outcome(enum.StrEnum):
    """What became of a delivery (the ``outcome`` label of ``worker_tasks_processed_total``)."""

    SUCCESS = "success"
    RETRIED = "retried"
    DEAD_LETTERED = "dead_lettered"
    DUPLICATE = "duplicate"
    RELEASED = "released"


class DeadLetterNow(Exception):
    """Raised by a middleware: dead-letter the message at once, without retrying.

    ``stage`` (if set) is counted in ``queue_errors_total``.
    """

    def __init__(self, reason: str, error: str | None = None, *, stage: str | None = None) -> None:
        super().__init__(reason if error is None else f"{reason}: {error}")
        self.reason = reason
        self.error = error
        self.stage = stage


class HandlerTimeout(Exception):
    """Raised by the timeout layer when a handler call overran its ``timeout``."""

    def __init__(self, timeout: float) -> None:
        super().__init__(f"handler exceeded its timeout of {timeout:g} s")
        self.timeout = timeout


def describe_error(exc: BaseException) -> str:
    """``Type: message``, bounded: what the DLQ headers and logs carry (never a traceback)."""
    text = str(exc)
    described = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return described[:MAX_ERROR_LENGTH]


@dataclass(frozen=True, slots=True)
class Services:
    """What a worker lends its middleware: shared by every delivery."""

    app_name: str
    backend: str
    logger: logging.Logger
    metrics: Metrics | None = None
    idempotency: IdempotencyStore | None = None
    rng: random.Random = field(default_factory=random.Random)


@dataclass(slots=True, eq=False)
class Context:
    """One delivery on its way through the middleware.

    Attributes:
        delivery: the broker's delivery (settle only through this context's methods).
        spec: the handler it is for.
        services: logger, metrics, idempotency store... of the worker.
        payload: the validated payload, set by the validation layer.
        duplicate: set by the idempotency layer when the message was processed before.
        outcome: set when the delivery is settled.
        reason: why it was dead-lettered, if it was.
        error: ``Type: message`` of the failure, if any (no traceback, no payload).
        error_stage: where it failed (``handler``, ``timeout``, ``invalid_payload``,
            ``settle``...), counted in ``queue_errors_total``.
        retry_delay: the delay of the ``nack``, if it was retried.
        handler_seconds: how long the handler ran, if it ran.
        started: ``time.perf_counter()`` when processing began.
    """

    delivery: Delivery
    spec: HandlerSpec
    services: Services
    payload: Any = None
    duplicate: bool = False
    outcome: Outcome | None = None
    reason: str | None = None
    error: str | None = None
    error_stage: str | None = None
    retry_delay: float | None = None
    handler_seconds: float | None = None
    started: float = field(default_factory=time.perf_counter)

    @property
    def message(self) -> Message:
        """The delivered message."""
        return self.delivery.message

    @property
    def attempt(self) -> int:
        """Which delivery of the message this is (1 for the first)."""
        return self.delivery.attempt

    @property
    def settled(self) -> bool:
        """Whether a settlement was made (or attempted) for this delivery."""
        return self.outcome is not None

    def ack(self, outcome: Outcome = Outcome.SUCCESS) -> Awaitable[None]:
        """Settle with ``ack``: await the result.

        Not a coroutine itself (every delivery is acked, so that saves one per message): it
        marks the outcome and hands back the broker's ``ack``.
        """
        if self.outcome is None:  # the common case, inline: one call less per message
            self.outcome = outcome
        else:
            self._settling(outcome)  # raises
        return self.delivery.ack()

    async def nack(self, delay: float, outcome: Outcome = Outcome.RETRIED) -> None:
        """Settle with ``nack(delay)``: redelivered to this group, attempt + 1."""
        self._settling(outcome)
        self.retry_delay = delay
        await self.delivery.nack(delay)

    async def dead_letter(self, reason: str, error: str | None) -> None:
        """Settle by moving the message to the topic's dead-letter queue."""
        self._settling(Outcome.DEAD_LETTERED)
        self.reason = reason
        await self.delivery.dead_letter(reason, error=error)

    @staticmethod
    def new(delivery: Delivery, spec: HandlerSpec, services: Services) -> Context:
        """``Context(delivery, spec, services)``, cheaper when compiled with mypyc (whose
        dataclass ``__init__`` is interpreted code storing each field through a descriptor)."""
        if not COMPILED:
            return Context(delivery, spec, services)
        ctx = Context.__new__(Context)
        ctx.delivery = delivery
        ctx.spec = spec
        ctx.services = services
        ctx.payload = None
        ctx.duplicate = False
        ctx.outcome = None
        ctx.reason = None
        ctx.error = None
        ctx.error_stage = None
        ctx.retry_delay = None
        ctx.handler_seconds = None
        ctx.started = time.perf_counter()
        return ctx

    def _settling(self, outcome: Outcome) -> None:
        # Marked before the broker call: a failed or cancelled settlement is not repeated.
        if self.outcome is not None:
            raise RuntimeError(f"delivery already settled as {self.outcome}")
        self.outcome = outcome


Next = Callable[[Context], Awaitable[None]]


Observer = Callable[[Context], None]
"""Looks at a finished delivery (see the module docstring); must not raise."""


@mypyc_attr(allow_interpreted_subclasses=True)  # mypyc: a public base
class Observing:
    """A base for observing middleware: ``__call__`` made from :meth:`observer`, which
    subclasses define, so both ways of running the layer behave the same."""

    def observer(self, spec: HandlerSpec, services: Services) -> Observer | None:
        """What to call with each finished delivery of ``spec``; None if nothing."""
        raise NotImplementedError

    async def __call__(self, ctx: Context, call_next: Next) -> None:
        try:
            await call_next(ctx)
        finally:
            observer = self.observer(ctx.spec, ctx.services)
            if observer is not None:
                notify((observer,), ctx)


def notify(observers: Sequence[Observer], ctx: Context) -> None:
    """Call each of ``observers`` with ``ctx``, in order; one that raises (against its
    contract) is logged, and the rest are still called."""
    for observe in observers:
        try:
            observe(ctx)
        except Exception:
            ctx.services.logger.exception(
                "a middleware observer failed", extra={"topic": ctx.spec.topic}
            )


class _Layer:
    """A middleware bound to the rest of the chain; built once per handler, not per message."""

    __slots__ = ("_call_next", "_middleware")

    def __init__(self, middleware: Middleware, call_next: Next) -> None:
        self._middleware = middleware
        self._call_next = call_next

    def call(self, ctx: Context) -> Awaitable[None]:
        """The middleware with ``ctx`` and the rest of the chain."""
        return self._middleware(ctx, self._call_next)


class _Observed:
    """Consecutive observers around the rest of the chain, in one coroutine."""

    __slots__ = ("_call_next", "_observers")

    def __init__(self, call_next: Next, observers: tuple[Observer, ...]) -> None:
        self._call_next = call_next
        self._observers = observers

    async def run(self, ctx: Context) -> None:
        """The rest of the chain, then the observers."""
        try:
            await self._call_next(ctx)
        finally:
            notify(self._observers, ctx)


@dataclass(frozen=True, slots=True)
class Pipeline:
    """A handler's composed middleware: await ``run(ctx)``, then :func:`notify` ``observers``
    with the context, whether ``run`` returned or raised (cancellation included)."""

    run: Next
    observers: tuple[Observer, ...] = ()


def compose_pipeline(
    middleware: Sequence[Middleware], endpoint: Next, *, spec: HandlerSpec, services: Services
) -> Pipeline:
    """Chain ``middleware`` (first = outermost) around ``endpoint`` for ``spec``, keeping the
    observers of the outermost layers apart (innermost first, the order they run in)."""
    observers: list[Observer] = []
    inner = 0
    for layer in middleware:
        if not isinstance(layer, ObservingMiddleware):
            break
        inner += 1
        observer = layer.observer(spec, services)
        if observer is not None:
            observers.insert(0, observer)
    run = compose(middleware[inner:], endpoint, spec=spec, services=services)
    return Pipeline(run, tuple(observers))


def compose(
    middleware: Sequence[Middleware],
    endpoint: Next,
    *,
    spec: HandlerSpec | None = None,
    services: Services | None = None,
) -> Next:
    """Chain ``middleware`` (first = outermost) around ``endpoint`` (the handler call).

    With ``spec`` and ``services`` (what the worker passes), layers that offer ``bind`` are
    specialised for that handler, and consecutive observing layers share one coroutine; the
    chain must then only see contexts of that handler.
    """
    chain = endpoint
    observers: list[Observer] = []  # of the observing layers just outside ``chain``
    for layer in reversed(middleware):
        if spec is None or services is None:
            chain = _Layer(layer, chain).call
            continue
        if isinstance(layer, ObservingMiddleware):
            observer = layer.observer(spec, services)
            if observer is not None:
                observers.append(observer)
            continue
        if observers:
            chain = _Observed(chain, tuple(observers)).run
            observers = []
        if isinstance(layer, BindableMiddleware):
            chain = layer.bind(chain, spec, services)
        else:
            chain = _Layer(layer, chain).call
    if observers:
        chain = _Observed(chain, tuple(observers)).run
    return chain
