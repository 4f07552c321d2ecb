"""Metrics: count each finished delivery by outcome, its handler's duration and its errors.

As the observer of a handler (what the worker uses), it holds that handler's
:class:`~queuekit.metrics.HandlerSeries`, so recording a message costs a few plain number
updates (no lock: the worker records on its event loop). Errors, rare, go to
``queue_errors_total`` with its labelled children looked up once per stage. Observability
never fails a message: errors of the metrics themselves are logged.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from mypy_extensions import mypyc_attr

from queuekit.worker.middleware.base import Context, Next, Observer, Services

if TYPE_CHECKING:
    from prometheus_client import Counter

    from queuekit.metrics import HandlerSeries, Metrics
    from queuekit.worker.app import HandlerSpec

__all__ = ["MetricsMiddleware"]


@mypyc_attr(allow_interpreted_subclasses=True)  # mypyc: a public base
class MetricsMiddleware:
    """Record ``worker_tasks_processed_total``, ``worker_task_duration_seconds`` and
    ``queue_errors_total{stage}`` once the inner layers have settled the delivery.

    An observing middleware (:class:`~queuekit.worker.middleware.ObservingMiddleware`).
    """

    def observer(self, spec: HandlerSpec, services: Services) -> Observer | None:
        """Nothing without metrics; else the recording of ``spec``'s series."""
        if services.metrics is None:
            return None
        return _Record(services.metrics, spec, services.logger).record

    async def __call__(self, ctx: Context, call_next: Next) -> None:
        try:
            await call_next(ctx)
        finally:
            metrics = ctx.services.metrics
            if metrics is not None:
                try:
                    record = _Record(metrics, ctx.spec, ctx.services.logger)
                except Exception:
                    ctx.services.logger.exception(
                        "recording metrics failed", extra={"topic": ctx.spec.topic}
                    )
                else:
                    record.record(ctx)


class _Record:
    """Records the finished deliveries of one handler: its series are looked up once."""

    __slots__ = ("_errors", "_logger", "_metrics", "_series", "_topic")

    def __init__(self, metrics: Metrics, spec: HandlerSpec, logger: logging.Logger) -> None:
        self._metrics = metrics
        self._topic = spec.topic
        self._logger = logger
        self._series: HandlerSeries = metrics.worker.series(spec.topic, spec.group)
        self._errors: dict[str, Counter] = {}

    def record(self, ctx: Context) -> None:
        """Count ``ctx`` by its outcome, and its error stage if any; never raises."""
        outcome = ctx.outcome
        if outcome is None:
            return
        try:
            self._series.record(outcome, ctx.handler_seconds)
            if ctx.error_stage is not None:
                self._count_error(ctx.error_stage)
        except Exception:
            self._logger.exception("recording metrics failed", extra={"topic": self._topic})

    def _count_error(self, stage: str) -> None:
        errors = self._errors.get(stage)
        if errors is None:
            metrics = self._metrics
            errors = self._errors[stage] = metrics.errors.labels(
                self._topic, metrics.backend, stage
            )
        errors.inc()
