"""Logging: one structured line per finished delivery, never its payload.

Levels: ``success`` and ``duplicate`` at DEBUG (a line per message is too much for INFO at
thousands of messages a second), ``retried`` and ``released`` at INFO, ``dead_lettered``
at WARNING. Observability never fails a message: errors while logging are swallowed.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from mypy_extensions import mypyc_attr

from queuekit.worker.middleware.base import Context, Observer, Observing, Outcome, Services

if TYPE_CHECKING:
    from queuekit.worker.app import HandlerSpec

__all__ = ["LoggingMiddleware"]

_LEVELS = {
    Outcome.SUCCESS: logging.DEBUG,
    Outcome.DUPLICATE: logging.DEBUG,
    Outcome.RETRIED: logging.INFO,
    Outcome.RELEASED: logging.INFO,
    Outcome.DEAD_LETTERED: logging.WARNING,
}
_TEXT = {
    Outcome.SUCCESS: "message handled",
    Outcome.DUPLICATE: "duplicate message skipped",
    Outcome.RETRIED: "message failed; retrying",
    Outcome.RELEASED: "message released for redelivery at shutdown",
    Outcome.DEAD_LETTERED: "message dead-lettered",
}


@mypyc_attr(allow_interpreted_subclasses=True)  # mypyc: a public base
class LoggingMiddleware(Observing):
    """Log how each delivery ended: topic, group, message_id, attempt, outcome, duration_ms.

    An observing middleware (see :class:`~queuekit.worker.middleware.Observing`).
    """

    def observer(self, spec: HandlerSpec, services: Services) -> Observer:
        """The logging of ``spec``'s finished deliveries."""
        return _LogOutcome(services.logger).log


class _LogOutcome:
    """Logs one finished delivery at its outcome's level, if that level is enabled."""

    __slots__ = ("_logger",)

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def log(self, ctx: Context) -> None:
        """Log how ``ctx`` ended; never raises."""
        try:
            outcome = ctx.outcome
            level = logging.ERROR if outcome is None else _LEVELS[outcome]
            if self._logger.isEnabledFor(level):
                _log(self._logger, level, ctx)
        except Exception:  # a log line must never fail a message
            pass


def _log(logger: logging.Logger, level: int, ctx: Context) -> None:
    outcome = ctx.outcome
    extra: dict[str, Any] = {
        "app": ctx.services.app_name,
        "topic": ctx.spec.topic,
        "group": ctx.spec.group,
        "message_id": ctx.message.id,
        "attempt": ctx.attempt,
        "outcome": str(outcome) if outcome else "unsettled",
        "duration_ms": round((time.perf_counter() - ctx.started) * 1000, 3),
    }
    for name in ("reason", "error", "error_stage", "retry_delay"):
        value = getattr(ctx, name)
        if value is not None:
            extra[name] = value
    text = "message left unsettled" if outcome is None else _TEXT[outcome]
    logger.log(level, text, extra=extra)
