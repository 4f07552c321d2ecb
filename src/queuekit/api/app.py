"""``create_app``: the producer HTTP API as a FastAPI application.

Routes: ``POST /send``, ``POST /send/batch`` (:mod:`queuekit.api.send`); ``GET /topics``,
``GET /topics/{topic}``, dead letters list/replay/purge (:mod:`queuekit.api.topics`);
``/health``, ``/ready``, ``/metrics`` (:mod:`queuekit.api.probes`); the dashboard at ``/``
and ``/dashboard``; OpenAPI at ``/openapi.json`` and ``/docs``. Every error is an RFC 9457
problem (:mod:`queuekit.api.problems`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from queuekit.api.auth import ApiKeyAuth, warn_if_open
from queuekit.api.body import BodyLimitMiddleware, body_limits
from queuekit.api.context import ApiContext, TopicCatalog
from queuekit.api.dashboard import dashboard_router
from queuekit.api.idempotency import IdempotencyCache
from queuekit.api.openapi import add_schemas, send_paths
from queuekit.api.probes import probes_router
from queuekit.api.problems import CatchAllMiddleware, install_problem_handlers
from queuekit.api.schemas import (
    ReplayRequest,
    SendBatchRequest,
    SendBatchResponse,
    SendRequest,
    SendResponse,
)
from queuekit.api.send import SendEndpoint, SendShortcut
from queuekit.api.topics import topics_router
from queuekit.broker import Broker
from queuekit.client import Producer
from queuekit.metrics import Metrics
from queuekit.settings import Settings

API_TITLE = "queuekit producer API"
API_VERSION = "1"


def create_app(
    broker: Broker,
    *,
    settings: Settings,
    catalog: TopicCatalog | None = None,
    metrics: Metrics | None = None,
    manage_broker: bool = True,
) -> FastAPI:
    """Build the producer API on ``broker``.

    Args:
        broker: where messages are published; connected and closed by the app's lifespan
            if ``manage_broker``, else the caller's to connect before serving.
        settings: ``api_keys`` (authentication) and ``max_payload_bytes`` (size limits)
            are read from it.
        catalog: the topics with handlers and their payload schemas (a worker ``App``).
            With one, sends to other topics are a 404 and payloads are validated.
        metrics: the registry to count on and serve at ``/metrics`` (default: a new one).
        manage_broker: whether the lifespan connects and closes ``broker``.
    """
    metrics = metrics if metrics is not None else Metrics(backend=broker.backend)
    auth = ApiKeyAuth(settings.api_keys)
    context = ApiContext(
        broker=broker,
        producer=Producer(broker, metrics=metrics, max_payload_bytes=settings.max_payload_bytes),
        settings=settings,
        metrics=metrics,
        auth=auth,
        idempotency=IdempotencyCache(),
        catalog=catalog,
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        warn_if_open(auth)
        if manage_broker:
            await broker.connect()
        try:
            yield
        finally:
            if manage_broker:
                await broker.close()

    app = FastAPI(title=API_TITLE, version=API_VERSION, lifespan=lifespan)
    app.state.queuekit = context
    install_problem_handlers(app)
    # Plain ASGI endpoints (the hot path skips FastAPI's request handling), documented below;
    # served by SendShortcut, and routed too for what it leaves to the router.
    send_endpoints = {
        "/send": SendEndpoint(context, batch=False),
        "/send/batch": SendEndpoint(context, batch=True),
    }
    for path, endpoint in send_endpoints.items():
        app.router.add_route(path, endpoint, methods=["POST"])  # type: ignore[arg-type]
    app.include_router(topics_router(context))
    app.include_router(probes_router(context))
    app.include_router(dashboard_router())
    add_schemas(
        app,
        (SendRequest, SendBatchRequest, SendResponse, SendBatchResponse, ReplayRequest),
        paths=send_paths(),
    )
    app.add_middleware(SendShortcut, endpoints=send_endpoints)  # added first: the innermost
    app.add_middleware(BodyLimitMiddleware, limit_for=body_limits(settings.max_payload_bytes))
    app.add_middleware(CatchAllMiddleware)  # added last: the outermost layer
    return app
