"""Run an example's App on a real Worker and wait for its effects, without sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from queuekit.metrics import Metrics
from queuekit.worker import Worker

WAIT_SECONDS = 10.0


async def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds; fail after :data:`WAIT_SECONDS`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_SECONDS
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {WAIT_SECONDS} s waiting for {what}")
        await asyncio.sleep(0.005)


def finished(metrics: Metrics, topic: str, outcome: str) -> int:
    """How many messages of ``topic`` the worker finished with ``outcome``."""
    value = metrics.registry.get_sample_value(
        "worker_tasks_processed_total",
        {"topic": topic, "group": "default", "backend": "memory", "outcome": outcome},
    )
    return int(value or 0)


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[None]:
    """Run ``worker`` while the block runs, then stop it and re-raise its errors."""
    task = asyncio.create_task(worker.run())
    await wait_until(lambda: worker.consuming or task.done(), "the worker to consume")
    if task.done():
        task.result()
    try:
        yield
    finally:
        worker.request_stop()
        await asyncio.wait_for(task, WAIT_SECONDS)
