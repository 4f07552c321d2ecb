"""Operational endpoints, open without an API key: ``/health``, ``/ready``, ``/metrics``.

* ``/health`` is liveness: 200 while the process serves requests, whatever the broker does
  (restarting the API would not bring a broker back).
* ``/ready`` is readiness: 200 if ``broker.ping()`` answers within ``READY_TIMEOUT_SECONDS``,
  else a 503 problem with ``Retry-After``, so a load balancer stops routing sends here.
* ``/metrics`` is the Prometheus text of the injected registry, with the queue gauges
  refreshed from the broker's counts (bounded in time, at most once a second however many
  scrapers and dashboards ask). It is open, as usual for scraping on a private network:
  expose it only there.
"""

from __future__ import annotations

import asyncio
import math
import time

from fastapi import APIRouter, Response

from queuekit.api.context import ApiContext
from queuekit.api.openapi import problem_responses
from queuekit.api.problems import service_unavailable
from queuekit.api.schemas import HealthResponse
from queuekit.errors import BrokerError
from queuekit.metrics import CONTENT_TYPE_LATEST

READY_TIMEOUT_SECONDS = 2.0
MIN_REFRESH_INTERVAL_SECONDS = 1.0


def probes_router(context: ApiContext) -> APIRouter:
    """The open operational routes, bound to ``context``."""
    router = APIRouter(tags=["operations"])
    backend = context.broker.backend
    refreshing = asyncio.Lock()
    refreshed_at = -math.inf

    @router.get("/health", response_model=HealthResponse, summary="Liveness")
    async def health() -> HealthResponse:
        return HealthResponse(status="ok", backend=backend)

    @router.get(
        "/ready",
        response_model=HealthResponse,
        summary="Readiness: the broker answers",
        responses=problem_responses(503),
    )
    async def ready() -> HealthResponse:
        try:
            async with asyncio.timeout(READY_TIMEOUT_SECONDS):
                await context.broker.ping()
        except TimeoutError:
            raise service_unavailable(
                f"the broker did not answer within {READY_TIMEOUT_SECONDS} s"
            ) from None
        except BrokerError:
            raise service_unavailable("the broker cannot be reached") from None
        return HealthResponse(status="ready", backend=backend)

    @router.get(
        "/metrics",
        summary="Prometheus metrics",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
    )
    async def metrics() -> Response:
        nonlocal refreshed_at
        async with refreshing:  # concurrent scrapes share one refresh
            if time.monotonic() - refreshed_at >= MIN_REFRESH_INTERVAL_SECONDS:
                await context.refresh_gauges()
                refreshed_at = time.monotonic()
        return Response(context.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return router
