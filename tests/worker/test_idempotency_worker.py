"""The worker does not process a message (or business key) twice."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry

from queuekit.backends.memory import MemoryBroker, MemoryStore
from queuekit.idempotency import MemoryIdempotencyStore, SqliteIdempotencyStore
from queuekit.message import Message
from queuekit.metrics import Metrics
from queuekit.worker import App, Worker

from .helpers import publish, running, wait_event, wait_for_value, wait_until


def processed(metrics: Metrics, outcome: str, topic: str = "orders") -> float:
    value = metrics.registry.get_sample_value(
        "worker_tasks_processed_total",
        {"topic": topic, "group": "default", "backend": "memory", "outcome": outcome},
    )
    return value or 0.0


async def test_a_message_published_twice_is_processed_once(
    broker: MemoryBroker, metrics: Metrics
) -> None:
    # Given a worker with an idempotency store
    app = App("svc")
    calls: list[Any] = []

    @app.handler("orders")
    async def charge(payload: Any) -> None:
        calls.append(payload)

    worker = Worker(app, broker, metrics=metrics, idempotency=MemoryIdempotencyStore())

    # When the same message (same id) is published twice, one after the other
    async with running(worker):
        (first,) = await publish(broker, "orders", {"order": 7}, message_id="order-7")
        await wait_until(lambda: processed(metrics, "success") == 1, what="the first delivery")
        await broker.publish([first])
        await wait_until(lambda: processed(metrics, "duplicate") == 1, what="the duplicate")

    # Then the handler ran once and the duplicate was acked
    assert calls == [{"order": 7}]
    stats = await broker.topic_stats("orders")
    assert (stats.depth, stats.in_flight) == (0, 0)


async def test_concurrent_duplicates_wait_for_the_first_and_are_skipped(
    broker: MemoryBroker, metrics: Metrics
) -> None:
    # Given a slow handler and two copies of one message arriving together
    app = App("svc")
    calls = 0
    started = asyncio.Event()
    gate = asyncio.Event()

    @app.handler("orders")
    async def charge(payload: Any) -> None:
        nonlocal calls
        calls += 1
        started.set()
        await gate.wait()

    message = Message.build("orders", {"order": 8}, message_id="order-8")
    await broker.publish([message, message])
    worker = Worker(app, broker, metrics=metrics, idempotency=MemoryIdempotencyStore())

    # When the first copy is being handled and then finishes
    async with running(worker):
        await wait_event(started, "the first copy")
        await wait_for_value(  # the second copy is in flight too, waiting on the claim
            lambda: broker.topic_stats("orders"),
            lambda stats: stats.in_flight == 2,
            what="both copies in flight",
        )
        gate.set()
        await wait_until(lambda: processed(metrics, "duplicate") == 1, what="the duplicate")

    # Then the handler ran once
    assert calls == 1
    assert processed(metrics, "success") == 1


async def test_business_key_deduplicates_different_messages(
    broker: MemoryBroker, metrics: Metrics
) -> None:
    # Given a handler keyed by order id
    app = App("svc")
    calls: list[dict[str, int]] = []

    @app.handler("orders", idempotency_key=lambda payload: f"order-{payload['order_id']}")
    async def charge(payload: dict[str, int]) -> None:
        calls.append(payload)

    worker = Worker(
        app, broker, concurrency=1, metrics=metrics, idempotency=MemoryIdempotencyStore()
    )

    # When two messages (different ids) carry the same order id
    async with running(worker):
        await publish(broker, "orders", {"order_id": 1, "try": 1}, {"order_id": 1, "try": 2})
        await wait_until(lambda: processed(metrics, "duplicate") == 1, what="the duplicate")

    # Then only the first was handled
    assert calls == [{"order_id": 1, "try": 1}]
    assert processed(metrics, "success") == 1


async def test_idempotency_false_processes_every_copy(broker: MemoryBroker) -> None:
    app = App("svc")
    calls = 0

    @app.handler("orders", idempotency_key=False)
    async def charge(payload: Any) -> None:
        nonlocal calls
        calls += 1

    message = Message.build("orders", {"order": 9}, message_id="order-9")
    async with running(Worker(app, broker, idempotency=MemoryIdempotencyStore())):
        await broker.publish([message])
        await wait_until(lambda: calls == 1, what="the first copy")
        await broker.publish([message])
        await wait_until(lambda: calls == 2, what="the second copy")


async def test_a_failed_attempt_releases_its_claim_so_the_retry_runs(broker: MemoryBroker) -> None:
    # Given a handler failing once, with a store
    app = App("svc")
    attempts: list[int] = []
    done = asyncio.Event()

    @app.handler("orders", backoff=0.0, max_backoff=0.0)
    async def charge(payload: Any, message: Message) -> None:
        attempts.append(message.attempt)
        if message.attempt == 1:
            raise RuntimeError("card network down")
        done.set()

    # When the message is retried, then the retry is not mistaken for a duplicate
    async with running(Worker(app, broker, idempotency=MemoryIdempotencyStore())):
        await publish(broker, "orders", {"order": 10})
        await wait_event(done, "the retry")

    assert attempts == [1, 2]


async def test_two_workers_sharing_a_sqlite_store_process_a_message_once(
    tmp_path: Path,
) -> None:
    # Given two workers (as two processes would) with their own store objects on one file
    path = tmp_path / "idempotency.db"
    calls: list[str] = []

    def make_app() -> App:
        app = App("svc")

        @app.handler("orders")
        async def charge(payload: Any, message: Message) -> None:
            calls.append(message.id)

        return app

    registries = [Metrics(CollectorRegistry(), backend="memory") for _ in range(2)]
    stores = [SqliteIdempotencyStore(path), SqliteIdempotencyStore(path)]
    message = Message.build("orders", {"order": 11}, message_id="order-11")
    try:
        # When the first worker handles the message
        async with MemoryBroker(MemoryStore()) as first_broker:
            worker = Worker(make_app(), first_broker, metrics=registries[0], idempotency=stores[0])
            async with running(worker):
                await first_broker.publish([message])
                await wait_until(lambda: processed(registries[0], "success") == 1, what="first")

        # And the same message reaches the second worker through another broker
        async with MemoryBroker(MemoryStore()) as second_broker:
            worker = Worker(make_app(), second_broker, metrics=registries[1], idempotency=stores[1])
            async with running(worker):
                await second_broker.publish([message])
                await wait_until(
                    lambda: processed(registries[1], "duplicate") == 1, what="the duplicate"
                )
    finally:
        for store in stores:
            await store.close()

    # Then it was handled once in all
    assert calls == ["order-11"]
