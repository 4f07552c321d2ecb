"""Helpers for the producer API tests: a real MemoryBroker behind create_app, driven by httpx."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI
from pydantic import BaseModel

from queuekit.api import create_app
from queuekit.backends.memory import MemoryBroker
from queuekit.message import Message
from queuekit.metrics import Metrics
from queuekit.settings import Settings

BASE_URL = "http://queuekit.test"
PROBLEM_JSON = "application/problem+json"


@dataclass
class StaticCatalog:
    """A TopicCatalog listing fixed topics and their payload models (None: any JSON)."""

    schemas: Mapping[str, type[BaseModel] | None] = field(default_factory=dict)

    @property
    def topics(self) -> frozenset[str]:
        return frozenset(self.schemas)

    def schema_for(self, topic: str) -> type[BaseModel] | None:
        return self.schemas.get(topic)


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on ``app``, with the app's lifespan running."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
            yield client


@asynccontextmanager
async def api_client(
    broker: MemoryBroker,
    *,
    settings: Settings | None = None,
    catalog: StaticCatalog | None = None,
    metrics: Metrics | None = None,
    manage_broker: bool = False,
) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client on create_app(broker, ...), with the app's lifespan running."""
    app = create_app(
        broker,
        settings=settings or Settings(queue_type="memory"),
        catalog=catalog,
        metrics=metrics,
        manage_broker=manage_broker,
    )
    async with serve(app) as client:
        yield client


async def received(broker: MemoryBroker, topic: str, count: int) -> list[Message]:
    """The next ``count`` messages of ``topic`` (default group), acked; fails after 5 s."""
    messages: list[Message] = []
    async with await broker.subscribe(topic, prefetch=max(count, 1)) as subscription:
        async with asyncio.timeout(5):
            while len(messages) < count:
                delivery = await anext(subscription)
                messages.append(delivery.message)
                await delivery.ack()
    return messages


async def depth(broker: MemoryBroker, topic: str) -> int:
    """Messages waiting in ``topic`` (ready and delayed, all groups)."""
    stats = await broker.topic_stats(topic)
    return sum(group.depth + group.delayed for group in stats.groups)


async def wait_until(condition: Callable[[], bool], *, within: float = 5.0) -> None:
    """Poll ``condition`` (yielding to the loop) until it holds; fail after ``within`` s."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0)


def assert_problem(response: httpx.Response, status: int, slug: str | None = None) -> Any:
    """Assert ``response`` is an RFC 9457 problem with ``status``; return its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    body = response.json()
    assert body["status"] == status
    assert isinstance(body["title"], str)
    assert isinstance(body["detail"], str)
    assert body["title"]
    assert body["detail"]
    if slug is not None:
        assert body["type"] == f"urn:queuekit:problem:{slug}"
    return body


class RecordingBroker(MemoryBroker):
    """A MemoryBroker that records how many messages each ``publish`` call carried."""

    def __init__(self) -> None:
        super().__init__()
        self.publish_sizes: list[int] = []

    async def publish(self, messages: Sequence[Message]) -> None:
        self.publish_sizes.append(len(messages))
        await super().publish(messages)


class GatedBroker(RecordingBroker):
    """A RecordingBroker whose publishes wait until ``gate`` is set (a slow round trip)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def publish(self, messages: Sequence[Message]) -> None:
        self.publish_sizes.append(len(messages))
        await self.gate.wait()
        await MemoryBroker.publish(self, messages)
