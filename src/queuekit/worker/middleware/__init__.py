"""The worker's middleware onion and its one default order.

Outermost first; each layer wraps all the ones below it::

    LoggingMiddleware        one line per finished delivery (reads the outcome)
    MetricsMiddleware        processed{outcome}, duration, errors{stage}
    SettlementMiddleware     the retry / dead-letter policy: settles exactly once
    AttemptLimitMiddleware   crash-looping deliveries -> dead letter, handler not run
    ValidationMiddleware     bytes -> model / JSON value, or dead letter (invalid_payload)
    IdempotencyMiddleware    already processed -> skip (duplicate)
    TimeoutMiddleware        per-call deadline
    (HandlerCall)            the handler itself

Why this order: observability sits outside settlement so it sees the final outcome (as
observers, the worker calls them once a delivery is through, without a layer of their own);
validation runs before idempotency because a business key is computed from the validated
payload; the timeout wraps only the handler, so waiting for a busy idempotency claim is not
charged to the handler. See :mod:`queuekit.worker.middleware.base` for the protocol.
"""

from __future__ import annotations

from queuekit.worker.middleware.attempts import AttemptLimitMiddleware
from queuekit.worker.middleware.base import (
    Context,
    DeadLetterNow,
    HandlerTimeout,
    Middleware,
    Next,
    Observer,
    Observing,
    ObservingMiddleware,
    Outcome,
    Pipeline,
    Services,
    compose,
    compose_pipeline,
)
from queuekit.worker.middleware.idempotency import IdempotencyMiddleware
from queuekit.worker.middleware.logging import LoggingMiddleware
from queuekit.worker.middleware.metrics import MetricsMiddleware
from queuekit.worker.middleware.settle import SettlementMiddleware
from queuekit.worker.middleware.timeout import TimeoutMiddleware
from queuekit.worker.middleware.validation import ValidationMiddleware

__all__ = [
    "DEFAULT_MIDDLEWARE",
    "AttemptLimitMiddleware",
    "Context",
    "DeadLetterNow",
    "HandlerTimeout",
    "IdempotencyMiddleware",
    "LoggingMiddleware",
    "MetricsMiddleware",
    "Middleware",
    "Next",
    "Observer",
    "Observing",
    "ObservingMiddleware",
    "Outcome",
    "Pipeline",
    "Services",
    "SettlementMiddleware",
    "TimeoutMiddleware",
    "ValidationMiddleware",
    "compose",
    "compose_pipeline",
]

DEFAULT_MIDDLEWARE: tuple[Middleware, ...] = (
    LoggingMiddleware(),
    MetricsMiddleware(),
    SettlementMiddleware(),
    AttemptLimitMiddleware(),
    ValidationMiddleware(),
    IdempotencyMiddleware(),
    TimeoutMiddleware(),
)
"""The order every worker uses unless given another sequence (outermost first)."""
