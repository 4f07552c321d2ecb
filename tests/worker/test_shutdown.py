"""Graceful shutdown, stop-now, failures while running, and run_worker under signals."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest

from queuekit.backends.memory import MemoryBroker, MemoryStore
from queuekit.errors import BrokerError, ConfigError
from queuekit.metrics import Metrics
from queuekit.settings import Settings
from queuekit.worker import App, Worker, run_worker

from .helpers import publish, wait_event, wait_for_value, wait_until


async def test_stop_lets_the_in_flight_handler_finish(broker: MemoryBroker) -> None:
    # Given a worker busy with one message
    app = App("svc")
    started, gate = asyncio.Event(), asyncio.Event()
    finished: list[Any] = []

    @app.handler("jobs")
    async def work(payload: Any) -> None:
        started.set()
        await gate.wait()
        finished.append(payload)

    worker = Worker(app, broker, grace_period=5.0)
    run = asyncio.create_task(worker.run())
    await publish(broker, "jobs", {"n": 1})
    await wait_event(started, "the handler")

    # When a stop is requested while the handler runs
    worker.request_stop()
    await wait_until(lambda: not worker.consuming, what="the worker to stop fetching")
    assert not run.done()
    gate.set()
    await asyncio.wait_for(run, 5)

    # Then the handler finished, run returned, and the message was acked
    assert finished == [{"n": 1}]
    stats = await broker.topic_stats("jobs")
    assert (stats.depth, stats.in_flight) == (0, 0)


async def test_unstarted_prefetched_messages_go_back_to_the_queue(broker: MemoryBroker) -> None:
    # Given a worker handling one message at a time, with two more waiting
    app = App("svc")
    started, gate = asyncio.Event(), asyncio.Event()

    @app.handler("jobs", concurrency=1)
    async def work(payload: Any) -> None:
        started.set()
        await gate.wait()

    worker = Worker(app, broker, grace_period=5.0)
    await publish(broker, "jobs", 1, 2, 3)
    run = asyncio.create_task(worker.run())
    await wait_event(started, "the first message")

    # When it stops after finishing its current message
    stopping = asyncio.create_task(worker.stop())
    await wait_until(lambda: not worker.ready, what="the stop request")
    gate.set()
    await asyncio.wait_for(stopping, 5)

    # Then the two others are ready for the next consumer, none lost or in flight
    assert run.done()
    stats = await broker.topic_stats("jobs")
    assert (stats.depth, stats.in_flight) == (2, 0)


async def test_handlers_past_the_grace_period_are_released_for_redelivery(
    store: MemoryStore, metrics: Metrics
) -> None:
    # Given a worker with no grace period, busy with a handler that never finishes
    app = App("svc")
    started, cancelled = asyncio.Event(), asyncio.Event()

    @app.handler("jobs")
    async def stuck(payload: Any) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async with MemoryBroker(store) as broker:
        worker = Worker(app, broker, grace_period=0.0, metrics=metrics)
        run = asyncio.create_task(worker.run())
        (sent,) = await publish(broker, "jobs", {"n": 1})
        await wait_event(started, "the handler")

        # When the worker stops
        await asyncio.wait_for(worker.stop(), 5)

        # Then the handler was cancelled, run returned and the message is ready again
        assert cancelled.is_set()
        assert run.done()
        assert run.exception() is None
        assert metrics.registry.get_sample_value(
            "worker_tasks_processed_total",
            {"topic": "jobs", "group": "default", "backend": "memory", "outcome": "released"},
        ) == pytest.approx(1.0)
        subscription = await broker.subscribe("jobs")
        redelivered = await asyncio.wait_for(anext(subscription), 5)
        assert (redelivered.message.id, redelivered.attempt) == (sent.id, 2)
        await redelivered.ack()
        await subscription.close()


async def test_stop_now_cuts_the_grace_period_short(broker: MemoryBroker) -> None:
    # Given a worker with a long grace period and a handler that never finishes
    app = App("svc")
    started = asyncio.Event()

    @app.handler("jobs")
    async def stuck(payload: Any) -> None:
        started.set()
        await asyncio.Event().wait()

    worker = Worker(app, broker, grace_period=60.0)
    run = asyncio.create_task(worker.run())
    await publish(broker, "jobs", {"n": 1})
    await wait_event(started, "the handler")

    # When a graceful stop is followed by an immediate one
    worker.request_stop()
    worker.request_stop(now=True)

    # Then run returns well before the grace period and the message is back in the queue
    await asyncio.wait_for(run, 5)
    stats = await broker.topic_stats("jobs")
    assert (stats.depth, stats.in_flight) == (1, 0)


async def test_a_failing_subscription_stops_the_worker_with_an_error(broker: MemoryBroker) -> None:
    # Given a running worker
    app = App("svc")
    app.handler("jobs")(lambda payload: None)
    worker = Worker(app, broker)
    run = asyncio.create_task(worker.run())
    await wait_until(lambda: worker.consuming, what="the worker to consume")

    # When the broker connection goes away under it
    await broker.close()

    # Then run raises (so a supervisor restarts the process) and the worker is not consuming
    with pytest.raises(BrokerError, match="ended while the worker was running"):
        await asyncio.wait_for(run, 5)
    assert not worker.consuming


async def test_a_worker_without_handlers_is_a_configuration_error(broker: MemoryBroker) -> None:
    with pytest.raises(ConfigError, match="has no handlers"):
        await Worker(App("empty"), broker).run()


async def test_a_worker_runs_only_once(broker: MemoryBroker) -> None:
    app = App("svc")
    app.handler("jobs")(lambda payload: None)
    worker = Worker(app, broker)
    run = asyncio.create_task(worker.run())
    await wait_until(lambda: worker.consuming, what="the worker to consume")
    await worker.stop()
    await run

    with pytest.raises(RuntimeError, match="runs only once"):
        await worker.run()


@pytest.mark.usefixtures("restore_root_logging")
async def test_run_worker_shuts_down_cleanly_on_sigterm(broker: MemoryBroker) -> None:
    # Given run_worker consuming from a broker
    app = App("svc")
    handled = asyncio.Event()

    @app.handler("jobs")
    async def work(payload: Any) -> None:
        handled.set()

    settings = Settings(
        queue_type="memory", idempotency_store="memory", worker_metrics_port=0, log_level="WARNING"
    )
    previous_handler = signal.getsignal(signal.SIGTERM)
    run = asyncio.create_task(run_worker(app, settings, broker=broker))
    await publish(broker, "jobs", {"n": 1})
    await wait_event(handled, "the handler")

    # When the process receives SIGTERM
    os.kill(os.getpid(), signal.SIGTERM)

    # Then run_worker returns 0 and gives the signal back to its previous owner
    assert await asyncio.wait_for(run, 5) == 0
    assert signal.getsignal(signal.SIGTERM) == previous_handler
    stats = await wait_for_value(
        lambda: broker.topic_stats("jobs"), lambda s: s.in_flight == 0, what="settled"
    )
    assert stats.depth == 0


@pytest.mark.usefixtures("restore_root_logging")
async def test_run_worker_reports_a_failure_with_exit_code_1(broker: MemoryBroker) -> None:
    app = App("svc")
    app.handler("jobs")(lambda payload: None)
    settings = Settings(queue_type="memory", idempotency_store="memory", worker_metrics_port=0)
    run = asyncio.create_task(run_worker(app, settings, broker=broker))
    await wait_for_value(
        lambda: broker.topic_stats("jobs"),
        lambda stats: any(group.consumers for group in stats.groups),
        what="the worker to subscribe",
    )

    await broker.close()

    assert await asyncio.wait_for(run, 5) == 1
