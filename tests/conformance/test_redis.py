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
    async def make_broker(self, topic: str) -> AsyncIterator[BrokerFactory]:
        require_broker("redis", "127.0.0.1", 6379)

        def build() -> RedisStreamsBroker:
            return RedisStreamsBroker(REDIS_URL, visibility_timeout=self.visibility_timeout)

        async with connected_brokers(build) as make:
            yield make
        # The test's topic is unique: delete its keys, so the shared Redis does not pile up
        # a dozen keys per test run after run (hundreds of MiB on a developer's machine).
        async with RedisStreamsBroker(REDIS_URL) as cleaner:
            await cleaner.delete_topic(topic)
