"""What happens to a message when its handler fails: retries, backoff, dead letters."""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import threading
import time
from typing import Any

import pytest
from pydantic import BaseModel

from queuekit.backends.memory import MemoryBroker, MemoryStore
from queuekit.errors import Reject, Retry
from queuekit.message import Message
from queuekit.worker import App, Worker
from queuekit.worker.middleware.retry import backoff_delay

from .helpers import dead_letters, publish, running, wait_event, wait_until


class Order(BaseModel):
    order_id: int
    card_number: str


async def test_failures_are_retried_with_growing_backoff_then_succeed(broker: MemoryBroker) -> None:
    # Given a handler failing its first 3 attempts, with a 0.05 s backoff and seeded jitter
    app = App("svc")
    calls: list[tuple[int, float]] = []
    done = asyncio.Event()

    @app.handler("jobs", retries=3, backoff=0.05, max_backoff=1.0)
    async def flaky(payload: Any, message: Message) -> None:
        calls.append((message.attempt, time.monotonic()))
        if message.attempt < 4:
            raise ConnectionError("downstream unavailable")
        done.set()

    # When one message is handled
    async with running(Worker(app, broker, rng=random.Random(42))):
        await publish(broker, "jobs", {"n": 1})
        await wait_event(done, "the 4th attempt")

    # Then it took 4 attempts, each retry waiting at least its (growing) backoff delay
    rng = random.Random(42)
    planned = [backoff_delay(n, 0.05, 1.0, rng) for n in (1, 2, 3)]
    assert planned == sorted(planned)
    assert planned[0] < planned[-1]
    assert [attempt for attempt, _ in calls] == [1, 2, 3, 4]
    gaps = [later - earlier for (_, earlier), (_, later) in itertools.pairwise(calls)]
    for gap, delay in zip(gaps, planned, strict=True):
        assert gap >= delay - 0.002  # the memory broker's timer resolution
    stats = await broker.topic_stats("jobs")
    assert (stats.depth, stats.in_flight, stats.dead_letters) == (0, 0, 0)


async def test_last_failed_attempt_dead_letters_with_reason_and_error(broker: MemoryBroker) -> None:
    # Given a handler that always fails, allowed 2 retries
    app = App("svc")
    attempts: list[int] = []

    @app.handler("jobs", retries=2, backoff=0.0, max_backoff=0.0)
    async def broken(payload: Any, message: Message) -> None:
        attempts.append(message.attempt)
        raise ValueError("unknown currency XYZ")

    # When a message is handled
    async with running(Worker(app, broker)):
        (sent,) = await publish(broker, "jobs", {"n": 1})
        (letter,) = await dead_letters(broker, "jobs")

    # Then it was tried 3 times and dead-lettered with why
    assert attempts == [1, 2, 3]
    assert letter.message.id == sent.id
    assert letter.reason == "max_attempts_exceeded"
    assert letter.error == "ValueError: unknown currency XYZ"
    assert (letter.group, letter.attempts) == ("default", 3)


async def test_reject_dead_letters_at_once(broker: MemoryBroker) -> None:
    app = App("svc")
    attempts: list[int] = []

    @app.handler("jobs", retries=5)
    def refuse(payload: Any) -> None:
        attempts.append(1)
        raise Reject("address is blocked")

    async with running(Worker(app, broker)):
        await publish(broker, "jobs", {"n": 1})
        (letter,) = await dead_letters(broker, "jobs")

    assert attempts == [1]
    assert letter.reason == "rejected: address is blocked"
    assert letter.attempts == 1


async def test_retry_with_a_delay_overrides_the_backoff(broker: MemoryBroker) -> None:
    # Given no backoff, but the handler asks for a 0.2 s delay once
    app = App("svc")
    times: list[float] = []
    done = asyncio.Event()

    @app.handler("jobs", backoff=0.0, max_backoff=0.0)
    async def later(payload: Any, message: Message) -> None:
        times.append(time.monotonic())
        if message.attempt == 1:
            raise Retry("rate limited", delay=0.2)
        done.set()

    async with running(Worker(app, broker)):
        await publish(broker, "jobs", {"n": 1})
        await wait_event(done, "the retry")

    # Then the second attempt came no sooner than asked
    assert len(times) == 2
    assert times[1] - times[0] >= 0.2 - 0.002


async def test_retry_after_the_last_attempt_dead_letters(broker: MemoryBroker) -> None:
    app = App("svc")

    @app.handler("jobs", retries=0)
    async def again(payload: Any) -> None:
        raise Retry("still busy", delay=0.0)

    async with running(Worker(app, broker)):
        await publish(broker, "jobs", {"n": 1})
        (letter,) = await dead_letters(broker, "jobs")

    assert (letter.reason, letter.error) == ("max_attempts_exceeded", "Retry: still busy")


async def test_invalid_payload_is_dead_lettered_without_calling_the_handler(
    broker: MemoryBroker,
) -> None:
    # Given a handler with a schema
    app = App("svc")
    calls: list[Order] = []

    @app.handler("orders", schema=Order, retries=5)
    async def charge(order: Order) -> None:
        calls.append(order)

    # When a payload fails validation
    async with running(Worker(app, broker)):
        await publish(broker, "orders", {"order_id": "not-a-number", "card_number": "4111-SECRET"})
        (letter,) = await dead_letters(broker, "orders")

    # Then it is dead-lettered at once, naming the field but not leaking the values
    assert calls == []
    assert (letter.reason, letter.attempts) == ("invalid_payload", 1)
    assert letter.error is not None
    assert "order_id" in letter.error
    assert "not-a-number" not in letter.error
    assert "SECRET" not in letter.error


async def test_non_json_payload_is_dead_lettered_without_calling_the_handler(
    broker: MemoryBroker,
) -> None:
    app = App("svc")
    calls: list[Any] = []

    @app.handler("events")
    async def handle(payload: Any) -> None:
        calls.append(payload)

    async with running(Worker(app, broker)):
        await broker.publish([Message("events", b"\xffnot json")])
        (letter,) = await dead_letters(broker, "events")

    assert calls == []
    assert letter.reason == "invalid_payload"
    assert letter.error is not None
    assert letter.error.startswith("payload is not valid JSON")


async def test_async_handler_over_its_timeout_is_cancelled_and_retried(
    broker: MemoryBroker,
) -> None:
    # Given a handler whose first call hangs, with a 0.1 s timeout
    app = App("svc")
    cancelled = asyncio.Event()
    done = asyncio.Event()

    @app.handler("jobs", timeout=0.1, backoff=0.0, max_backoff=0.0)
    async def slow(payload: Any, message: Message) -> None:
        if message.attempt == 1:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                cancelled.set()
                raise
        done.set()

    # When a message is handled
    async with running(Worker(app, broker)):
        await publish(broker, "jobs", {"n": 1})
        await wait_event(done, "the second attempt")

    # Then the first call was cancelled and the second attempt succeeded
    assert cancelled.is_set()


async def test_hung_sync_handler_is_retried_and_its_thread_reported(
    broker: MemoryBroker, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a sync handler whose first call blocks past its 0.1 s timeout
    app = App("svc")
    unblock = threading.Event()
    attempts: list[int] = []

    @app.handler("jobs", timeout=0.1, backoff=0.0, max_backoff=0.0, concurrency=2)
    def blocking(payload: Any, message: Message) -> None:
        attempts.append(message.attempt)
        if message.attempt == 1:
            unblock.wait(10)

    # When a message is handled
    caplog.set_level(logging.INFO, logger="queuekit.worker")
    try:
        async with running(Worker(app, broker)):
            await publish(broker, "jobs", {"n": 1})
            await wait_until(lambda: attempts == [1, 2], what="the retry")
            stats = await broker.topic_stats("jobs")
    finally:
        unblock.set()

    # Then the message was retried while the abandoned thread was reported loudly
    assert (stats.in_flight, stats.depth) == (0, 0)
    abandoned = [r for r in caplog.records if "abandoned" in r.getMessage()]
    assert abandoned[0].levelno == logging.ERROR
    assert abandoned[0].__dict__["hung_threads"] == 1


async def test_crash_looping_message_is_dead_lettered_without_running(store: MemoryStore) -> None:
    # Given a message whose consumer died while handling it (never settled)
    crashed = MemoryBroker(store, visibility_timeout=0.01)
    await crashed.connect()
    await publish(crashed, "jobs", {"n": 1})
    subscription = await crashed.subscribe("jobs")
    first = await anext(subscription)
    assert first.attempt == 1
    await subscription.close()  # the consumer is gone, its delivery unsettled

    # When a worker allowing a single attempt receives its redelivery (attempt 2)
    app = App("svc")
    calls: list[Any] = []

    @app.handler("jobs", retries=0)
    async def fatal(payload: Any) -> None:
        calls.append(payload)

    async with MemoryBroker(store) as broker, running(Worker(app, broker)):
        (letter,) = await dead_letters(broker, "jobs")

    # Then the handler never ran and the dead letter says why
    assert calls == []
    assert letter.reason == "max_attempts_exceeded"
    assert letter.error == "worker died during processing"
    assert letter.attempts == 2
