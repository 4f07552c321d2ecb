"""The conformance suite against a real Apache Kafka (scripts/brokers start kafka)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import ClassVar

import pytest

from brokers import require_broker
from queuekit.backends.kafka import KafkaBroker
from queuekit.testing.conformance import BrokerConformance, BrokerFactory, connected_brokers

KAFKA_HOST, KAFKA_PORT = "127.0.0.1", 9092


class TestKafkaConformance(BrokerConformance):
    # The grace a closed subscription's in-flight deliveries get before they are released to
    # the group; consumer-group sessions are never shorter than Kafka's minimum of 6 s.
    visibility_timeout: ClassVar[float] = 2.0

    @pytest.fixture
    async def make_broker(self) -> AsyncIterator[BrokerFactory]:
        require_broker("kafka", KAFKA_HOST, KAFKA_PORT)

        def build() -> KafkaBroker:
            return KafkaBroker(
                f"{KAFKA_HOST}:{KAFKA_PORT}", visibility_timeout=self.visibility_timeout
            )

        # Also deletes the tests' topics, so the shared Kafka does not pile up thousands of
        # partitions (which slows its restarts).
        async with connected_brokers(build) as make:
            yield make
