"""Run the producer API and workers together in one event loop, with one signal policy.

``queuekit run`` and ``queuekit api`` go through :func:`serve`. The process owns SIGTERM and
SIGINT (:mod:`queuekit.signals`): the first asks everything to stop gracefully (the API stops
accepting, workers finish in-flight messages within the grace period), a second one stops at
once.
"""

from __future__ import annotations

import asyncio
import logging

import uvicorn

from queuekit.backends import create_broker
from queuekit.broker import Broker
from queuekit.embedded_server import EmbeddedServer
from queuekit.idempotency import create_idempotency_store
from queuekit.metrics import Metrics
from queuekit.settings import Settings
from queuekit.signals import install_stop_signals
from queuekit.worker import App, Worker
from queuekit.worker.process import worker_from_settings

log = logging.getLogger("queuekit.serve")


class _Components:
    """What :func:`serve` started, so a signal can reach each of them."""

    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop
        self.server: EmbeddedServer | None = None
        self.runner: Worker | None = None

    def request_stop(self, now: bool) -> None:
        self.stop.set()
        if now:
            if self.runner is not None:
                self.runner.request_stop(now=True)
            if self.server is not None:
                self.server.force_exit = True


async def serve(
    settings: Settings,
    *,
    app: App | None,
    api: bool,
    worker: bool,
    broker: Broker | None = None,
    stop: asyncio.Event | None = None,
) -> int:
    """Serve the API and/or a worker for ``app`` until ``stop`` is set or a signal arrives.

    Returns the process exit code (0 after a clean shutdown).
    """
    from queuekit.api import create_app  # FastAPI is only imported when serving

    parts = _Components(stop or asyncio.Event())
    uninstall = install_stop_signals(
        parts.request_stop, log, grace_seconds=settings.shutdown_grace_seconds
    )
    broker = broker or create_broker(settings)
    idempotency = create_idempotency_store(settings) if worker and app is not None else None
    tasks: list[asyncio.Task[object]] = []
    try:
        await broker.connect()
        metrics = Metrics(backend=broker.backend)
        if worker and app is not None:
            parts.runner = worker_from_settings(
                app, broker, settings, metrics=metrics, idempotency=idempotency
            )
            tasks.append(asyncio.create_task(parts.runner.run(), name="queuekit-worker"))
        if api:
            asgi = create_app(
                broker, settings=settings, catalog=app, metrics=metrics, manage_broker=False
            )
            config = uvicorn.Config(
                asgi,
                host=settings.api_host,
                port=settings.api_port,
                log_config=None,
                access_log=False,
                lifespan="on",
            )
            parts.server = EmbeddedServer(config)
            tasks.append(asyncio.create_task(parts.server.serve(), name="queuekit-api"))
        stopper = asyncio.create_task(parts.stop.wait())
        done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        failed = [t for t in done if t is not stopper and t.exception() is not None]
        if parts.server is not None:
            parts.server.should_exit = True
        if parts.runner is not None:
            await parts.runner.stop()
        stopper.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                log.error("component failed: %s", result)
                return 1
        return 1 if failed else 0
    finally:
        uninstall()
        if idempotency is not None:
            await idempotency.close()
        await broker.close()
