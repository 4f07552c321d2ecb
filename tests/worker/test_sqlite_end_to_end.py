"""The worker on the embedded SQLite backend, with the SQLite idempotency store."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from queuekit.backends.sqlite import SqliteBroker
from queuekit.errors import Reject
from queuekit.idempotency import SqliteIdempotencyStore
from queuekit.message import Message
from queuekit.worker import App, Worker

from .helpers import running, wait_event, wait_for_value, wait_until


async def test_retry_dead_letter_and_duplicate_on_sqlite(tmp_path: Path) -> None:
    # Given a worker on a SQLite broker and store
    app = App("svc")
    attempts: dict[str, list[int]] = {}

    @app.handler("orders", backoff=0.01, max_backoff=0.01)
    async def charge(payload: str, message: Message) -> None:
        attempts.setdefault(payload, []).append(message.attempt)
        if payload == "flaky" and message.attempt == 1:
            raise ConnectionError("gateway timeout")
        if payload == "fraud":
            raise Reject("fraud suspected")

    store = SqliteIdempotencyStore(tmp_path / "idempotency.db")
    flaky = Message.build("orders", "flaky", message_id="flaky-1")
    try:
        async with SqliteBroker(tmp_path / "queue.db", poll_interval=0.01) as broker:
            async with running(Worker(app, broker, idempotency=store)):
                # When a flaky message, a rejected one and a duplicate of the flaky one arrive
                await broker.publish([flaky, Message.build("orders", "fraud")])
                await wait_until(lambda: attempts.get("flaky") == [1, 2], what="the retry")
                await broker.publish([flaky])
                stats = await wait_for_value(
                    lambda: broker.topic_stats("orders"),
                    lambda s: s.dead_letters == 1 and s.depth == s.in_flight == 0,
                    what="everything settled",
                )
            (letter,) = await broker.dead_letters("orders")
    finally:
        await store.close()

    # Then the flaky one succeeded on its retry and its duplicate was skipped,
    # and the rejected one was dead-lettered at once
    assert attempts == {"flaky": [1, 2], "fraud": [1]}
    assert stats.dead_letters == 1
    assert letter.reason == "rejected: fraud suspected"


async def test_a_released_message_is_handled_by_the_next_worker(tmp_path: Path) -> None:
    # Given a worker without grace period stuck in a handler
    path = tmp_path / "queue.db"
    started = asyncio.Event()
    stuck_app = App("svc")

    @stuck_app.handler("jobs")
    async def stuck(payload: Any) -> None:
        started.set()
        await asyncio.Event().wait()

    async with SqliteBroker(path, poll_interval=0.01) as broker:
        worker = Worker(stuck_app, broker, grace_period=0.0)
        run = asyncio.create_task(worker.run())
        await broker.publish([Message.build("jobs", {"n": 1}, message_id="job-1")])
        await wait_event(started, "the stuck handler")

        # When it stops
        await worker.stop()
        await run

    # Then the next worker (another broker on the same file) gets the message, attempt 2
    seen: list[tuple[str, int]] = []
    done = asyncio.Event()
    next_app = App("svc")

    @next_app.handler("jobs")
    async def work(payload: Any, message: Message) -> None:
        seen.append((message.id, message.attempt))
        done.set()

    async with (
        SqliteBroker(path, poll_interval=0.01) as broker,
        running(Worker(next_app, broker)),
    ):
        await wait_event(done, "the redelivery")

    assert seen == [("job-1", 2)]
