"""Fixtures for worker tests: a connected in-memory broker and a private metrics registry."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator

import pytest
from prometheus_client import CollectorRegistry

from queuekit.backends.memory import MemoryBroker, MemoryStore
from queuekit.metrics import Metrics


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
async def broker(store: MemoryStore) -> AsyncIterator[MemoryBroker]:
    async with MemoryBroker(store) as connected:
        yield connected


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry(), backend="memory")


@pytest.fixture
def restore_root_logging() -> Iterator[None]:
    """Undo what configure_logging does to the root logger."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
