"""Apache Kafka backend (confluent-kafka / librdkafka). See docs/backends/kafka.md.

Import is lazy through :func:`queuekit.backends.create_broker`; ``confluent_kafka`` is imported
only by this package's modules.
"""

from __future__ import annotations

from queuekit.backends.kafka.broker import KafkaBroker
from queuekit.backends.kafka.subscription import KafkaSubscription
from queuekit.settings import Settings

__all__ = ["KafkaBroker", "KafkaSubscription", "from_settings"]


def from_settings(settings: Settings) -> KafkaBroker:
    """A (not yet connected) Kafka broker for ``settings``' bootstrap servers and partitions."""
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        partitions=settings.kafka_partitions,
        visibility_timeout=settings.visibility_timeout,
    )
