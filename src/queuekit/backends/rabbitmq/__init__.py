"""The RabbitMQ backend (aio-pika): ``QUEUE_TYPE=rabbitmq``.

See ``docs/backends/rabbitmq.md`` for the mapping of every feature onto RabbitMQ.
"""

from __future__ import annotations

from queuekit.backends.rabbitmq.broker import RabbitMQBroker
from queuekit.backends.rabbitmq.subscription import RabbitMQDelivery, RabbitMQSubscription
from queuekit.settings import Settings

__all__ = ["RabbitMQBroker", "RabbitMQDelivery", "RabbitMQSubscription", "from_settings"]


def from_settings(settings: Settings) -> RabbitMQBroker:
    """A RabbitMQ broker for ``settings.rabbitmq_url`` (not connected yet)."""
    return RabbitMQBroker(
        settings.rabbitmq_url,
        management_url=settings.rabbitmq_management_url or None,
        visibility_timeout=settings.visibility_timeout,
    )
