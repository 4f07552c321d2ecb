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
        made: list[RedisStreamsBroker] = []

        def build() -> RedisStreamsBroker:
            broker = RedisStreamsBroker(REDIS_URL, visibility_timeout=self.visibility_timeout)
            made.append(broker)
            return broker

        async with connected_brokers(build) as make:
            yield make
        # Every test's topics are unique: delete them, so the shared Redis does not pile up
        # a dozen keys per topic, run after run (hundreds of MiB on a developer's machine).
        async with RedisStreamsBroker(REDIS_URL) as cleaner:
            for topic in set().union(*(broker.used_topics for broker in made)):
                await cleaner.delete_topic(topic)
