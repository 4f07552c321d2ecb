"""Fixtures for the examples' tests: the repository root on sys.path, a memory broker."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from queuekit.backends.memory import MemoryBroker
from queuekit.metrics import Metrics

# The examples are a top-level package of the checkout, imported the way `queuekit worker`
# imports them: from the working directory.
REPO = str(Path(__file__).resolve().parents[2])
if REPO not in sys.path:
    sys.path.insert(0, REPO)


@pytest.fixture
async def broker() -> AsyncIterator[MemoryBroker]:
    async with MemoryBroker() as connected:
        yield connected


@pytest.fixture
def metrics() -> Metrics:
    return Metrics(CollectorRegistry(), backend="memory")
