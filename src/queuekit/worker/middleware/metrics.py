"""Metrics: count each finished delivery by outcome, its handler's duration and its errors.

Bound to a handler (what the worker does), the layer holds that handler's
:class:`~queuekit.metrics.HandlerSeries`, so recording a message costs a few plain number
updates (no lock: the worker records on its event loop). Errors, rare, go to
``queue_errors_total`` with its labelled children looked up once per stage. Observability
never fails a message: errors of the metrics themselves are logged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from queuekit.worker.middleware.base import Context, Next, Services

if TYPE_CHECKING:
    from prometheus_client import Counter

    from queuekit.metrics import HandlerSeries, Metrics
    from queuekit.worker.app import HandlerSpec

__all__ = ["MetricsMiddleware"]


class MetricsMiddleware:
    """Record ``worker_tasks_processed_total``, ``worker_task_duration_seconds`` and
    ``queue_errors_total{stage}`` once the inner layers have settled the delivery."""

    def bind(self, call_next: Next, spec: HandlerSpec, services: Services) -> Next:
        """No layer without metrics; else one holding the handler's series."""
        if services.metrics is None:
            return call_next
        return _BoundMetrics(call_next, services.metrics, spec)

    async def __call__(self, ctx: Context, call_next: Next) -> None:
        metrics = ctx.services.metrics
        if metrics is None:
            await call_next(ctx)
            return
        try:
            layer = _BoundMetrics(call_next, metrics, ctx.spec)
        except Exception:
            ctx.services.logger.exception(
                "recording metrics failed", extra={"topic": ctx.spec.topic}
            )
            await call_next(ctx)
            return
        await layer(ctx)


class _BoundMetrics:
    """The metrics layer of one handler: its series are looked up once."""

    __slots__ = ("_call_next", "_errors", "_metrics", "_series", "_topic")

    def __init__(self, call_next: Next, metrics: Metrics, spec: HandlerSpec) -> None:
        self._call_next = call_next
        self._metrics = metrics
        self._topic = spec.topic
        self._series: HandlerSeries = metrics.worker.series(spec.topic, spec.group)
        self._errors: dict[str, Counter] = {}

    async def __call__(self, ctx: Context) -> None:
        try:
            await self._call_next(ctx)
        finally:
            outcome = ctx.outcome
            if outcome is not None:
                try:
                    self._series.record(outcome, ctx.handler_seconds)
                    if ctx.error_stage is not None:
                        self._count_error(ctx.error_stage)
                except Exception:
                    ctx.services.logger.exception(
                        "recording metrics failed", extra={"topic": self._topic}
                    )

    def _count_error(self, stage: str) -> None:
        errors = self._errors.get(stage)
        if errors is None:
            metrics = self._metrics
            errors = self._errors[stage] = metrics.errors.labels(
                self._topic, metrics.backend, stage
            )
        errors.inc()
