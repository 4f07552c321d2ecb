"""The conformance suite on RabbitMQ: brokers on one server (scripts/brokers start rabbitmq)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from brokers import require_broker
from queuekit.backends.rabbitmq import RabbitMQBroker
from queuekit.testing.conformance import BrokerConformance, BrokerFactory, connected_brokers

RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"

pytestmark = pytest.mark.broker("rabbitmq")


class TestRabbitMQ(BrokerConformance):
    @pytest.fixture
    async def make_broker(self) -> AsyncIterator[BrokerFactory]:
        require_broker("rabbitmq", "127.0.0.1", 5672)
        made: list[RabbitMQBroker] = []

        def build() -> RabbitMQBroker:
            broker = RabbitMQBroker(RABBITMQ_URL, visibility_timeout=self.visibility_timeout)
            made.append(broker)
            return broker

        async with connected_brokers(build) as make:
            yield make
        # Every test's topics are unique: delete them, so the shared server does not pile up
        # three queues and an exchange per topic, run after run.
        async with RabbitMQBroker(RABBITMQ_URL) as cleaner:
            for topic in set().union(*(broker.used_topics for broker in made)):
                await cleaner.delete_topic(topic)
