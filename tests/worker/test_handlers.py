"""Handlers get what they ask for (model, JSON value, message), sync or async, bounded."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from pydantic import BaseModel

from queuekit.backends.memory import MemoryBroker
from queuekit.message import Message
from queuekit.worker import App, Worker

from .helpers import publish, running, wait_event, wait_until


class Email(BaseModel):
    to: str
    subject: str


async def test_async_handler_receives_the_validated_model(broker: MemoryBroker) -> None:
    # Given a handler with a schema
    app = App("svc")
    received: list[Email] = []
    done = asyncio.Event()

    @app.handler("emails", schema=Email)
    async def send(email: Email) -> None:
        received.append(email)
        done.set()

    # When a valid message is published
    async with running(Worker(app, broker)):
        await publish(broker, "emails", {"to": "ada@example.com", "subject": "hi"})
        await wait_event(done, "the handler")

    # Then the handler got a model instance, and the message was acked
    assert received == [Email(to="ada@example.com", subject="hi")]
    stats = await broker.topic_stats("emails")
    assert (stats.depth, stats.in_flight, stats.dead_letters) == (0, 0, 0)


async def test_handler_without_schema_receives_the_decoded_json(broker: MemoryBroker) -> None:
    app = App("svc")
    received: list[Any] = []
    done = asyncio.Event()

    @app.handler("events")
    async def handle(payload: Any) -> None:
        received.append(payload)
        done.set()

    async with running(Worker(app, broker)):
        await publish(broker, "events", [1, {"nested": True}, None])
        await wait_event(done, "the handler")

    assert received == [[1, {"nested": True}, None]]


async def test_a_second_parameter_receives_the_message(broker: MemoryBroker) -> None:
    # Given a handler taking (payload, message)
    app = App("svc")
    seen: list[tuple[Any, Message]] = []
    done = asyncio.Event()

    @app.handler("events")
    async def handle(payload: Any, message: Message) -> None:
        seen.append((payload, message))
        done.set()

    # When a message with headers is published
    async with running(Worker(app, broker)):
        (sent,) = await publish(broker, "events", {"n": 1}, headers={"trace": "abc"})
        await wait_event(done, "the handler")

    # Then the handler sees its id, headers and attempt
    ((payload, message),) = seen
    assert payload == {"n": 1}
    assert (message.id, dict(message.headers), message.attempt) == (sent.id, {"trace": "abc"}, 1)


async def test_sync_handler_runs_on_a_worker_thread(broker: MemoryBroker) -> None:
    # Given a plain def handler
    app = App("svc")
    threads: list[str] = []
    payloads: list[Email] = []
    done = threading.Event()

    @app.handler("emails", schema=Email)
    def send(email: Email) -> None:
        threads.append(threading.current_thread().name)
        payloads.append(email)
        done.set()

    # When a message arrives
    async with running(Worker(app, broker)):
        await publish(broker, "emails", {"to": "a@b.c", "subject": "s"})
        await wait_until(done.is_set, what="the sync handler")

    # Then it ran off the event loop's thread, on the handler's pool
    assert payloads == [Email(to="a@b.c", subject="s")]
    assert threads[0].startswith("queuekit-emails")
    assert threads[0] != threading.main_thread().name


async def test_async_handlers_never_exceed_their_concurrency(broker: MemoryBroker) -> None:
    # Given a handler limited to 3 calls at once, blocked on a gate
    app = App("svc")
    in_flight = 0
    peak = 0
    finished = 0
    gate = asyncio.Event()

    @app.handler("jobs", concurrency=3)
    async def work(payload: Any) -> None:
        nonlocal in_flight, peak, finished
        in_flight += 1
        peak = max(peak, in_flight)
        await gate.wait()
        in_flight -= 1
        finished += 1

    # When 12 messages are waiting
    await publish(broker, "jobs", *range(12))
    async with running(Worker(app, broker, concurrency=50)):
        await wait_until(lambda: in_flight == 3, what="3 handlers in flight")
        # Then the worker holds exactly 3 and the other 9 stay in the queue
        stats = await broker.topic_stats("jobs")
        assert (stats.in_flight, stats.depth) == (3, 9)
        gate.set()
        await wait_until(lambda: finished == 12, what="all 12 messages")

    assert peak == 3


async def test_sync_handlers_never_exceed_the_worker_concurrency(broker: MemoryBroker) -> None:
    # Given a sync handler using the worker's concurrency (2), blocked on a gate
    app = App("svc")
    lock = threading.Lock()
    counts = {"in_flight": 0, "peak": 0, "finished": 0}
    gate = threading.Event()

    @app.handler("jobs", timeout=None)
    def work(payload: Any) -> None:
        with lock:
            counts["in_flight"] += 1
            counts["peak"] = max(counts["peak"], counts["in_flight"])
        gate.wait(10)
        with lock:
            counts["in_flight"] -= 1
            counts["finished"] += 1

    # When 6 messages are waiting
    await publish(broker, "jobs", *range(6))
    async with running(Worker(app, broker, concurrency=2)):
        await wait_until(lambda: counts["in_flight"] == 2, what="2 handlers in flight")
        stats = await broker.topic_stats("jobs")
        assert stats.in_flight == 2
        gate.set()
        await wait_until(lambda: counts["finished"] == 6, what="all 6 messages")

    # Then never more than 2 ran at once
    assert counts["peak"] == 2


async def test_each_group_of_a_topic_gets_every_message(broker: MemoryBroker) -> None:
    # Given two handlers of one topic in different groups
    app = App("svc")
    seen: dict[str, list[int]] = {"default": [], "audit": []}

    @app.handler("orders")
    async def fulfil(payload: int) -> None:
        seen["default"].append(payload)

    @app.handler("orders", group="audit")
    def audit(payload: int) -> None:
        seen["audit"].append(payload)

    # When the worker consumes both groups
    async with running(Worker(app, broker)):
        await publish(broker, "orders", 1, 2, 3)
        await wait_until(
            lambda: len(seen["default"]) == 3 and len(seen["audit"]) == 3, what="both groups"
        )

    # Then each group handled each message once
    assert sorted(seen["default"]) == sorted(seen["audit"]) == [1, 2, 3]
