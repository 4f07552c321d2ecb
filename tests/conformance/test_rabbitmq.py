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

        def build() -> RabbitMQBroker:
            return RabbitMQBroker(RABBITMQ_URL, visibility_timeout=self.visibility_timeout)

        # Also deletes the tests' topics (three queues and an exchange each).
        async with connected_brokers(build) as make:
            yield make
