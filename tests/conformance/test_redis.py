"""The conformance suite against a real Redis (scripts/brokers start redis)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from brokers import require_broker
from queuekit.backends.redis_streams import RedisStreamsBroker
from queuekit.testing.conformance import BrokerConformance, BrokerFactory, connected_brokers

REDIS_URL = "redis://127.0.0.1:6379/0"


class TestRedisConformance(BrokerConformance):
    @pytest.fixture
    async def make_broker(self) -> AsyncIterator[BrokerFactory]:
        require_broker("redis", "127.0.0.1", 6379)

        def build() -> RedisStreamsBroker:
            return RedisStreamsBroker(REDIS_URL, visibility_timeout=self.visibility_timeout)

        # Also deletes the tests' topics (a dozen keys each, hundreds of MiB over many runs).
        async with connected_brokers(build) as make:
            yield make
