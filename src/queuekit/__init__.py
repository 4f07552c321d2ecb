"""queuekit: one programming model for message queues, the same semantics on every broker.

The public surface is what ``__all__`` lists; everything else is an implementation detail.
"""

from queuekit.broker import Admin, Broker, Delivery, Features, GroupStats, Subscription, TopicStats
from queuekit.client import Producer, send_message, send_message_sync
from queuekit.errors import (
    BrokerError,
    BrokerUnavailable,
    ConfigError,
    InvalidMessage,
    InvalidTopic,
    PublishError,
    QueuekitError,
    Reject,
    Retry,
)
from queuekit.message import DeadLetter, Message
from queuekit.settings import Settings
from queuekit.worker import App, Worker

__version__ = "0.1.0"

__all__ = [
    "Admin",
    "App",
    "Broker",
    "BrokerError",
    "BrokerUnavailable",
    "ConfigError",
    "DeadLetter",
    "Delivery",
    "Features",
    "GroupStats",
    "InvalidMessage",
    "InvalidTopic",
    "Message",
    "Producer",
    "PublishError",
    "QueuekitError",
    "Reject",
    "Retry",
    "Settings",
    "Subscription",
    "TopicStats",
    "Worker",
    "__version__",
    "send_message",
    "send_message_sync",
]
