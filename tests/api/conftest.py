"""Fixtures for the producer API tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from api.support import api_client
from queuekit.backends.memory import MemoryBroker


@pytest.fixture
async def broker() -> AsyncIterator[MemoryBroker]:
    broker = MemoryBroker()
    await broker.connect()
    yield broker
    await broker.close()


@pytest.fixture
async def client(broker: MemoryBroker) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(broker) as client:
        yield client
