"""The worker's own HTTP endpoints (health, metrics) and its queue-gauge refresher.

``GET /health`` answers 200 ``{"status": "ok", "consuming": true}`` only while the worker is
actually consuming (subscribed, loops alive, not stopping), else 503, so an orchestrator's
probe restarts a worker that is connected but stuck. ``GET /metrics`` is the Prometheus text
format. The tiny Starlette app runs on a :class:`uvicorn.Server` inside the worker's event
loop, without uvicorn's signal handling (the worker owns SIGTERM/SIGINT).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Protocol

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from queuekit.broker import Admin
from queuekit.embedded_server import EmbeddedServer
from queuekit.metrics import CONTENT_TYPE_LATEST, Metrics
from queuekit.worker.middleware.base import describe_error

__all__ = ["HealthServer", "create_health_app", "refresh_queue_gauges"]

GAUGE_REFRESH_SECONDS = 5.0


class ConsumingState(Protocol):
    """What the health endpoint asks of a worker."""

    @property
    def consuming(self) -> bool: ...


def create_health_app(worker: ConsumingState, metrics: Metrics | None = None) -> Starlette:
    """The Starlette app serving ``/health`` for ``worker`` and ``/metrics`` from ``metrics``."""

    async def health(request: Request) -> Response:
        if worker.consuming:
            return JSONResponse({"status": "ok", "consuming": True})
        return JSONResponse({"status": "unavailable", "consuming": False}, status_code=503)

    async def metrics_page(request: Request) -> Response:
        if metrics is None:
            return JSONResponse({"detail": "metrics are disabled"}, status_code=404)
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/health", health, methods=["GET"]),
            Route("/metrics", metrics_page, methods=["GET"]),
        ]
    )


class HealthServer:
    """Serve an ASGI app on ``host:port`` in the running event loop until :meth:`stop`."""

    def __init__(
        self, app: Starlette, host: str, port: int, *, logger: logging.Logger | None = None
    ) -> None:
        config = uvicorn.Config(
            app, host=host, port=port, log_config=None, access_log=False, lifespan="off"
        )
        self._server = EmbeddedServer(config)
        self._task: asyncio.Task[None] | None = None
        self._logger = logger or logging.getLogger("queuekit.worker.health")
        self.host = host
        self.port = port

    @property
    def started(self) -> bool:
        """Whether the server is listening."""
        return bool(self._server.started)

    @property
    def running(self) -> bool:
        """Whether the server task is alive (false after :meth:`stop` or a failure to bind)."""
        return self._task is not None and not self._task.done()

    @property
    def bound_port(self) -> int | None:
        """The port actually listened on (useful with port 0), or None before it started."""
        for server in getattr(self._server, "servers", []):
            for sock in server.sockets:
                port: int = sock.getsockname()[1]
                return port
        return None

    def start(self) -> None:
        """Start serving in the background (a failure to bind is logged, not raised)."""
        self._task = asyncio.create_task(self._serve(), name="queuekit-health")

    async def stop(self) -> None:
        """Stop serving and wait for the server to close."""
        if self._task is None:
            return
        self._server.should_exit = True
        await self._task

    async def _serve(self) -> None:
        try:
            await self._server.serve()
        except SystemExit:  # uvicorn exits when it cannot bind; the worker keeps going
            self._logger.error(
                "the health server could not start", extra={"host": self.host, "port": self.port}
            )


async def refresh_queue_gauges(
    admin: Admin,
    topics: Iterable[str],
    metrics: Metrics,
    *,
    interval: float = GAUGE_REFRESH_SECONDS,
    logger: logging.Logger | None = None,
) -> None:
    """Every ``interval`` seconds set the queue gauges from ``admin.topic_stats``, forever.

    Failures are logged (once per streak of failures) and never raised; cancel the task to
    stop it.
    """
    log = logger or logging.getLogger("queuekit.worker")
    names = sorted(set(topics))
    failing = False
    while True:
        try:
            for stats in await asyncio.gather(*(admin.topic_stats(name) for name in names)):
                metrics.observe_stats(stats)
        except Exception as exc:
            if not failing:
                log.warning("cannot refresh queue gauges", extra={"error": describe_error(exc)})
            failing = True
        else:
            if failing:
                log.info("queue gauges refresh again")
            failing = False
        await asyncio.sleep(interval)
