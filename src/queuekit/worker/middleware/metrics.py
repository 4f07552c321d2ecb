"""Metrics: count each finished delivery by outcome, its handler's duration and its errors.

The labelled children of the collectors are looked up once per (topic, group) and kept (bound
to a handler, the layer holds its series directly), so recording costs a counter increment
and a histogram observation per message. Observability never fails a message: errors of the
metrics themselves are logged.
"""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING

from queuekit.worker.middleware.base import Context, Next, Services

if TYPE_CHECKING:
    from prometheus_client import Counter, Histogram

    from queuekit.metrics import Metrics
    from queuekit.worker.app import HandlerSpec

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

    def bind(self, call_next: Next, spec: HandlerSpec, services: Services) -> Next:
        """No layer without metrics; else one holding the handler's series."""
        if services.metrics is None:
            return call_next
        return _BoundMetrics(call_next, self._series_of(services.metrics, spec))

    async def __call__(self, ctx: Context, call_next: Next) -> None:
        try:
            await call_next(ctx)
        finally:
            self._record(ctx)

    def _series_of(self, metrics: Metrics, spec: HandlerSpec) -> _HandlerSeries:
        per_handler = self._series.get(metrics)
        if per_handler is None:
            per_handler = self._series[metrics] = {}
        series = per_handler.get((spec.topic, spec.group))
        if series is None:
            series = per_handler[(spec.topic, spec.group)] = _HandlerSeries(
                metrics, spec.topic, spec.group
            )
        return series

    def _record(self, ctx: Context) -> None:
        metrics = ctx.services.metrics
        if metrics is None or ctx.outcome is None:
            return
        try:
            series = self._series_of(metrics, ctx.spec)
        except Exception:
            ctx.services.logger.exception(
                "recording metrics failed", extra={"topic": ctx.spec.topic}
            )
            return
        _record(series, ctx)


class _BoundMetrics:
    """The metrics layer of one handler: its series are looked up once."""

    __slots__ = ("_call_next", "_series")

    def __init__(self, call_next: Next, series: _HandlerSeries) -> None:
        self._call_next = call_next
        self._series = series

    async def __call__(self, ctx: Context) -> None:
        try:
            await self._call_next(ctx)
        finally:
            if ctx.outcome is not None:
                _record(self._series, ctx)


def _record(series: _HandlerSeries, ctx: Context) -> None:
    try:
        assert ctx.outcome is not None
        series.record(ctx.outcome, ctx.handler_seconds, ctx.error_stage)
    except Exception:
        ctx.services.logger.exception("recording metrics failed", extra={"topic": ctx.spec.topic})
