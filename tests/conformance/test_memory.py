"""The conformance suite on the memory backend: brokers sharing one MemoryStore."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from queuekit.backends.memory import MemoryBroker, MemoryStore
from queuekit.testing.conformance import BrokerConformance, BrokerFactory, connected_brokers


class TestMemory(BrokerConformance):
    @pytest.fixture
    async def make_broker(self) -> AsyncIterator[BrokerFactory]:
        store = MemoryStore()

        def build() -> MemoryBroker:
            return MemoryBroker(store, visibility_timeout=self.visibility_timeout)

        async with connected_brokers(build) as make:
            yield make
