"""Metrics the worker records, its health endpoint and its queue-gauge refresher."""

from __future__ import annotations

import asyncio
import signal
import socket

import httpx
import pytest

from queuekit.backends.memory import MemoryBroker
from queuekit.errors import Reject
from queuekit.message import Message
from queuekit.metrics import Metrics
from queuekit.worker import App, Worker
from queuekit.worker.health import HealthServer, create_health_app, refresh_queue_gauges

from .helpers import dead_letters, publish, running, wait_until


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, {"backend": "memory", **labels}) or 0.0


def processed(metrics: Metrics, outcome: str) -> float:
    return sample(
        metrics, "worker_tasks_processed_total", topic="jobs", group="default", outcome=outcome
    )


def errors(metrics: Metrics, stage: str) -> float:
    return sample(metrics, "queue_errors_total", topic="jobs", stage=stage)


async def test_counters_follow_each_outcome(broker: MemoryBroker, metrics: Metrics) -> None:
    # Given a handler that succeeds, fails once, rejects or times out depending on the payload
    app = App("svc")

    @app.handler("jobs", retries=1, backoff=0.0, max_backoff=0.0, timeout=0.2)
    async def work(payload: str, message: Message) -> None:
        if payload == "flaky" and message.attempt == 1:
            raise RuntimeError("once")
        if payload == "reject":
            raise Reject("no")
        if payload == "slow" and message.attempt == 1:
            await asyncio.Event().wait()

    # When one message of each kind and one invalid payload are handled
    async with running(Worker(app, broker, metrics=metrics)):
        await publish(broker, "jobs", "ok", "flaky", "reject", "slow")
        await broker.publish([Message("jobs", b"{broken")])
        await dead_letters(broker, "jobs", count=2)
        await wait_until(lambda: processed(metrics, "success") == 3, what="three successes")

    # Then each outcome and error stage was counted, and handler durations observed
    assert processed(metrics, "retried") == 2
    assert processed(metrics, "dead_lettered") == 2
    assert errors(metrics, "handler") == 1
    assert errors(metrics, "timeout") == 1
    assert errors(metrics, "invalid_payload") == 1
    durations = sample(metrics, "worker_task_duration_seconds_count", topic="jobs", group="default")
    assert durations == 6  # every handler call; the invalid payload never reached it


async def test_health_is_ok_only_while_consuming(broker: MemoryBroker, metrics: Metrics) -> None:
    # Given a worker and its health app
    app = App("svc")
    app.handler("jobs")(lambda payload: None)
    worker = Worker(app, broker, metrics=metrics)
    transport = httpx.ASGITransport(app=create_health_app(worker, metrics))

    async with httpx.AsyncClient(transport=transport, base_url="http://worker") as client:
        # When it has not started, then it is unavailable
        before = await client.get("/health")
        assert (before.status_code, before.json()) == (
            503,
            {"status": "unavailable", "consuming": False},
        )

        # When it consumes, then it is healthy
        async with running(worker):
            during = await client.get("/health")
            assert (during.status_code, during.json()) == (200, {"status": "ok", "consuming": True})

        # When it has stopped, then it is unavailable again
        after = await client.get("/health")
        assert after.status_code == 503


async def test_metrics_endpoint_serves_the_prometheus_text(
    broker: MemoryBroker, metrics: Metrics
) -> None:
    # Given a worker that handled a message
    app = App("svc")
    app.handler("jobs")(lambda payload: None)
    worker = Worker(app, broker, metrics=metrics)
    async with running(worker):
        await publish(broker, "jobs", 1)
        await wait_until(lambda: processed(metrics, "success") == 1, what="the message")

    # When /metrics is scraped
    transport = httpx.ASGITransport(app=create_health_app(worker, metrics))
    async with httpx.AsyncClient(transport=transport, base_url="http://worker") as client:
        response = await client.get("/metrics")

    # Then it is Prometheus' text format with the worker's counters
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert 'worker_tasks_processed_total{backend="memory",group="default",outcome="success"' in (
        response.text
    )


async def test_queue_gauges_are_refreshed_from_topic_stats(
    broker: MemoryBroker, metrics: Metrics
) -> None:
    # Given a topic with 3 waiting messages
    await broker.subscribe("jobs")
    await publish(broker, "jobs", 1, 2, 3)

    # When the refresher runs
    refresher = asyncio.create_task(refresh_queue_gauges(broker, ["jobs"], metrics, interval=0.01))
    try:
        await wait_until(
            lambda: sample(metrics, "queue_depth", topic="jobs", group="default") == 3,
            what="the depth gauge",
        )
        # Then the gauges follow the queue
        await broker.purge("jobs")
        await wait_until(
            lambda: sample(metrics, "queue_depth", topic="jobs", group="default") == 0,
            what="the gauge to follow the purge",
        )
    finally:
        refresher.cancel()
        await asyncio.gather(refresher, return_exceptions=True)


async def test_queue_gauge_failures_are_logged_not_raised(
    broker: MemoryBroker, metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a refresher against a broker that is not connected
    await broker.close()
    refresher = asyncio.create_task(refresh_queue_gauges(broker, ["jobs"], metrics, interval=0.01))
    try:
        # When it refreshes, then it logs the failure once and keeps running
        await wait_until(
            lambda: any("cannot refresh queue gauges" in r.getMessage() for r in caplog.records),
            what="the warning",
        )
        assert not refresher.done()
    finally:
        refresher.cancel()
        await asyncio.gather(refresher, return_exceptions=True)
    warnings = [r for r in caplog.records if "cannot refresh queue gauges" in r.getMessage()]
    assert len(warnings) == 1


async def test_health_server_listens_in_the_loop_without_taking_the_signals(
    broker: MemoryBroker, metrics: Metrics
) -> None:
    # Given a health server on a free local port, for a worker that is not running
    app = App("svc")
    app.handler("jobs")(lambda payload: None)
    worker = Worker(app, broker, metrics=metrics)
    sigterm_handler = signal.getsignal(signal.SIGTERM)
    server = HealthServer(create_health_app(worker, metrics), "127.0.0.1", 0)

    # When it starts
    server.start()
    try:
        await wait_until(lambda: server.started, what="the server to listen")

        # Then it answers over TCP, and the process's SIGTERM handler is untouched
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.bound_port}") as client:
            response = await client.get("/health")
        assert response.status_code == 503
        assert signal.getsignal(signal.SIGTERM) == sigterm_handler
    finally:
        await server.stop()
    assert not server.running


async def test_health_server_that_cannot_bind_logs_and_lets_the_worker_run(
    broker: MemoryBroker, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a port that is already taken
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        app = App("svc")
        app.handler("jobs")(lambda payload: None)
        server = HealthServer(create_health_app(Worker(app, broker)), "127.0.0.1", port)

        # When the health server starts, then it fails alone, with a log line
        server.start()
        await wait_until(lambda: not server.running, what="the server to give up")
        await server.stop()
    assert any("could not start" in r.getMessage() for r in caplog.records)
