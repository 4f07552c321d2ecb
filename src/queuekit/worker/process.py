"""The worker process: :func:`run_worker` runs an app's handlers until a stop signal.

The process wiring around a :class:`~queuekit.worker.runtime.Worker`: logging, the broker,
the idempotency store, stop signals, the health and metrics server, the queue gauges. Kept
out of the mypyc-compiled runtime (see docs/compiled.md): nothing here runs per message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING

from queuekit.backends import create_broker
from queuekit.broker import Admin, Broker
from queuekit.errors import ConfigError
from queuekit.logs import configure_logging
from queuekit.metrics import Metrics
from queuekit.settings import Settings
from queuekit.signals import install_stop_signals
from queuekit.tasks import cancel_and_wait
from queuekit.worker.app import App
from queuekit.worker.middleware.base import describe_error
from queuekit.worker.runtime import Worker

if TYPE_CHECKING:
    from queuekit.idempotency import IdempotencyStore

__all__ = ["HEALTH_HOST", "run_worker", "run_worker_sync", "worker_from_settings"]

# All interfaces: probes and scrapers reach the worker from outside its container.
HEALTH_HOST = "0.0.0.0"


async def run_worker(
    app: App,
    settings: Settings,
    *,
    broker: Broker | None = None,
    serve_health: bool = True,
    health_host: str = HEALTH_HOST,
) -> int:
    """Run ``app``'s handlers as a process would: until SIGTERM/SIGINT, then exit cleanly.

    Configures logging from ``settings``; builds and connects the broker from ``settings``
    unless one is given (a given broker must be connected and is not closed); opens the
    idempotency store ``settings.idempotency_store``; serves ``/health`` and ``/metrics`` on
    ``settings.worker_metrics_port`` (0 disables it); refreshes the queue gauges every few
    seconds. The first signal starts a graceful shutdown, a second one cuts the grace
    period short.

    Returns:
        0 after a clean shutdown, 1 if the worker failed while running (logged).

    Raises:
        ConfigError: the app has no handlers or a setting is invalid.
        BrokerUnavailable: the broker cannot be reached at start.
    """
    # uvicorn and Starlette load only when a worker is really started, not on import; so do
    # the idempotency stores (sqlite3), which a Worker given no store never needs.
    from queuekit.idempotency import create_idempotency_store
    from queuekit.worker.health import HealthServer, create_health_app, refresh_queue_gauges

    configure_logging(settings.log_level, settings.log_format)
    logger = logging.getLogger("queuekit.worker")
    if not app.handlers:
        raise ConfigError(f"app {app.name!r} has no handlers")
    async with contextlib.AsyncExitStack() as stack:
        if broker is None:
            broker = create_broker(settings)
            await broker.connect()
            stack.push_async_callback(broker.close)
        store = create_idempotency_store(settings)
        stack.push_async_callback(store.close)
        metrics = Metrics(backend=broker.backend)
        worker = worker_from_settings(app, broker, settings, metrics=metrics, idempotency=store)
        stack.callback(
            install_stop_signals(
                lambda now: worker.request_stop(now=now),
                logger,
                grace_seconds=worker.grace_period,
            )
        )
        if serve_health and settings.worker_metrics_port:
            server = HealthServer(
                create_health_app(worker, metrics),
                health_host,
                settings.worker_metrics_port,
                logger=logger,
            )
            server.start()
            stack.push_async_callback(server.stop)
        if isinstance(broker, Admin):
            gauges = asyncio.create_task(
                refresh_queue_gauges(broker, app.topics, metrics, logger=logger)
            )
            stack.push_async_callback(cancel_and_wait, [gauges])
        try:
            await worker.run()
        except Exception as exc:
            logger.error("the worker failed", extra={"app": app.name, "error": describe_error(exc)})
            return 1
    return 0


def worker_from_settings(
    app: App,
    broker: Broker,
    settings: Settings,
    *,
    metrics: Metrics | None,
    idempotency: IdempotencyStore | None,
) -> Worker:
    """A :class:`Worker` of ``app`` on ``broker``, tuned by ``settings`` (concurrency, grace
    period, GC threshold), logging to ``queuekit.worker``."""
    return Worker(
        app,
        broker,
        concurrency=settings.worker_concurrency,
        metrics=metrics,
        idempotency=idempotency,
        grace_period=settings.shutdown_grace_seconds,
        gc_threshold=settings.worker_gc_threshold or None,
    )


def run_worker_sync(app: App, settings: Settings, *, serve_health: bool = True) -> int:
    """:func:`run_worker` in a new event loop, for synchronous callers (the CLI)."""
    return asyncio.run(run_worker(app, settings, serve_health=serve_health))
