"""Metrics: count each finished delivery by outcome, its handler's duration and its errors.

The labelled children of the collectors are looked up once per (topic, group) and kept, so
recording costs a counter increment and a histogram observation per message. Observability
never fails a message: errors of the metrics themselves are logged.
"""

from __future__ import annotations

import weakref

from prometheus_client import Counter, Histogram

from queuekit.metrics import Metrics
from queuekit.worker.middleware.base import Context, Next

__all__ = ["MetricsMiddleware"]


class _HandlerSeries:
    """The series of one (topic, group) on one :class:`Metrics`, created on first use."""

    __slots__ = ("_duration", "_errors", "_group", "_metrics", "_outcomes", "_topic")

    def __init__(self, metrics: Metrics, topic: str, group: str) -> None:
        self._metrics = metrics
        self._topic = topic
        self._group = group
        self._duration: Histogram = metrics.task_duration.labels(topic, group, metrics.backend)
        self._outcomes: dict[str, Counter] = {}
        self._errors: dict[str, Counter] = {}

    def record(self, outcome: str, duration: float | None, stage: str | None) -> None:
        counter = self._outcomes.get(outcome)
        if counter is None:
            metrics = self._metrics
            counter = metrics.tasks_processed.labels(
                self._topic, self._group, metrics.backend, outcome
            )
            self._outcomes[outcome] = counter
        counter.inc()
        if duration is not None:
            self._duration.observe(duration)
        if stage is not None:
            errors = self._errors.get(stage)
            if errors is None:
                metrics = self._metrics
                errors = self._errors[stage] = metrics.errors.labels(
                    self._topic, metrics.backend, stage
                )
            errors.inc()


class MetricsMiddleware:
    """Record ``worker_tasks_processed_total``, ``worker_task_duration_seconds`` and
    ``queue_errors_total{stage}`` once the inner layers have settled the delivery."""

    def __init__(self) -> None:
        self._series: weakref.WeakKeyDictionary[Metrics, dict[tuple[str, str], _HandlerSeries]]
        self._series = weakref.WeakKeyDictionary()

    async def __call__(self, ctx: Context, call_next: Next) -> None:
        try:
            await call_next(ctx)
        finally:
            self._record(ctx)

    def _record(self, ctx: Context) -> None:
        metrics = ctx.services.metrics
        if metrics is None or ctx.outcome is None:
            return
        try:
            spec = ctx.spec
            per_handler = self._series.get(metrics)
            if per_handler is None:
                per_handler = self._series[metrics] = {}
            series = per_handler.get((spec.topic, spec.group))
            if series is None:
                series = per_handler[(spec.topic, spec.group)] = _HandlerSeries(
                    metrics, spec.topic, spec.group
                )
            series.record(ctx.outcome, ctx.handler_seconds, ctx.error_stage)
        except Exception:
            ctx.services.logger.exception(
                "recording metrics failed", extra={"topic": ctx.spec.topic}
            )
