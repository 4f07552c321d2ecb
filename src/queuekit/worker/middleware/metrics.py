"""Metrics: count each finished delivery by outcome, its handler's duration and its errors.

Observability never fails a message: errors of the metrics themselves are logged.
"""

from __future__ import annotations

from queuekit.worker.middleware.base import Context, Next

__all__ = ["MetricsMiddleware"]


class MetricsMiddleware:
    """Record ``worker_tasks_processed_total``, ``worker_task_duration_seconds`` and
    ``queue_errors_total{stage}`` once the inner layers have settled the delivery."""

    async def __call__(self, ctx: Context, call_next: Next) -> None:
        try:
            await call_next(ctx)
        finally:
            self._record(ctx)

    @staticmethod
    def _record(ctx: Context) -> None:
        metrics = ctx.services.metrics
        if metrics is None or ctx.outcome is None:
            return
        try:
            metrics.processed(ctx.spec.topic, ctx.spec.group, ctx.outcome, ctx.handler_seconds)
            if ctx.error_stage is not None:
                metrics.error(ctx.spec.topic, ctx.error_stage)
        except Exception:
            ctx.services.logger.exception(
                "recording metrics failed", extra={"topic": ctx.spec.topic}
            )
