"""Test helpers for the worker: run a worker in the background and wait on conditions."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from queuekit.backends.memory import MemoryBroker
from queuekit.message import DeadLetter, Message
from queuekit.worker import Worker

WAIT_SECONDS = 5.0


async def wait_until(
    condition: Callable[[], bool], *, within: float = WAIT_SECONDS, what: str = "condition"
) -> None:
    """Poll ``condition`` until it holds; fail the test after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}")
        await asyncio.sleep(0.005)


async def wait_for_value(
    probe: Callable[[], Awaitable[Any]],
    accept: Callable[[Any], bool],
    *,
    within: float = WAIT_SECONDS,
    what: str = "value",
) -> Any:
    """Poll the coroutine ``probe`` until ``accept(result)``; return that result."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        value = await probe()
        if accept(value):
            return value
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {within} s waiting for {what}: {value!r}")
        await asyncio.sleep(0.005)


async def dead_letters(broker: MemoryBroker, topic: str, count: int = 1) -> list[DeadLetter]:
    """Wait until ``topic`` has ``count`` dead letters and return them."""
    letters: list[DeadLetter] = await wait_for_value(
        lambda: broker.dead_letters(topic),
        lambda found: len(found) >= count,
        what=f"{count} dead letter(s) on {topic}",
    )
    return letters


async def publish(
    broker: MemoryBroker, topic: str, *payloads: Any, **options: Any
) -> list[Message]:
    """Publish each payload as one JSON message; return the messages."""
    messages = [Message.build(topic, payload, **options) for payload in payloads]
    await broker.publish(messages)
    return messages


async def wait_event(event: asyncio.Event, what: str = "event") -> None:
    """Wait for ``event``; fail after a bounded time."""
    try:
        await asyncio.wait_for(event.wait(), WAIT_SECONDS)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``worker`` in a task while the block runs, then stop it and re-raise its errors."""
    task = asyncio.create_task(worker.run())
    await wait_until(lambda: worker.consuming or task.done(), what="the worker to consume")
    if task.done():
        task.result()
    try:
        yield task
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, WAIT_SECONDS * 2)
