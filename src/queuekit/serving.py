"""Run the producer API and workers together in one event loop, with one signal policy.

``queuekit run`` and ``queuekit api`` go through :func:`serve`. The process owns SIGTERM and
SIGINT: the first asks everything to stop gracefully (the API stops accepting, workers
finish in-flight messages within the grace period), a second one stops at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Generator

import uvicorn

from queuekit.backends import create_broker
from queuekit.broker import Broker
from queuekit.idempotency import create_idempotency_store
from queuekit.metrics import Metrics
from queuekit.settings import Settings
from queuekit.worker import App, Worker

log = logging.getLogger("queuekit.serve")


class _EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its host process."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def install_stop_signals(stop: asyncio.Event) -> None:
    """First SIGTERM/SIGINT sets ``stop``; a second one exits the process at once."""
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        if stop.is_set():
            log.warning("second signal %s: stopping now", signal.Signals(signum).name)
            raise SystemExit(1)
        log.info("signal %s: shutting down gracefully", signal.Signals(signum).name)
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, on_signal, signum)


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

    stop = stop or asyncio.Event()
    install_stop_signals(stop)
    broker = broker or create_broker(settings)
    await broker.connect()
    metrics = Metrics(backend=broker.backend)
    tasks: list[asyncio.Task[object]] = []
    server: _EmbeddedServer | None = None
    runner: Worker | None = None
    idempotency = create_idempotency_store(settings) if worker and app is not None else None
    try:
        if worker and app is not None:
            runner = Worker(
                app,
                broker,
                concurrency=settings.worker_concurrency,
                metrics=metrics,
                idempotency=idempotency,
                grace_period=settings.shutdown_grace_seconds,
            )
            tasks.append(asyncio.create_task(runner.run(), name="queuekit-worker"))
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
            server = _EmbeddedServer(config)
            tasks.append(asyncio.create_task(server.serve(), name="queuekit-api"))
        stopper = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([stopper, *tasks], return_when=asyncio.FIRST_COMPLETED)
        failed = [t for t in done if t is not stopper and t.exception() is not None]
        if server is not None:
            server.should_exit = True
        if runner is not None:
            await runner.stop()
        stopper.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                log.error("component failed: %s", result)
                return 1
        return 1 if failed else 0
    finally:
        if idempotency is not None:
            await idempotency.close()
        await broker.close()
