"""Map confluent-kafka / librdkafka errors onto :mod:`queuekit.errors` at the boundary."""

from __future__ import annotations

from typing import Any

from queuekit.errors import BrokerError, BrokerUnavailable, PublishError

# librdkafka error names that mean "cannot reach / talk to the cluster right now".
_UNAVAILABLE = frozenset(
    {
        "_TRANSPORT",
        "_ALL_BROKERS_DOWN",
        "_MSG_TIMED_OUT",
        "_TIMED_OUT",
        "_TIMED_OUT_QUEUE",
        "_RESOLVE",
        "_DESTROY",
        "NOT_COORDINATOR",
        "COORDINATOR_NOT_AVAILABLE",
        "COORDINATOR_LOAD_IN_PROGRESS",
        "LEADER_NOT_AVAILABLE",
        "NOT_LEADER_FOR_PARTITION",
        "NOT_ENOUGH_REPLICAS",
        "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
        "REQUEST_TIMED_OUT",
        "NETWORK_EXCEPTION",
        "BROKER_NOT_AVAILABLE",
    }
)


# librdkafka error names of a record refused because its topic does not exist (any more).
_TOPIC_MISSING = frozenset({"_UNKNOWN_PARTITION", "_UNKNOWN_TOPIC", "UNKNOWN_TOPIC_OR_PART"})


class TopicMissing(PublishError):
    """A publish was refused because a topic it went to does not exist (deleted meanwhile)."""


def error_name(error: Any) -> str:
    """The librdkafka name of a ``KafkaError`` (or of the error inside a ``KafkaException``)."""
    inner = error.args[0] if getattr(error, "args", None) else error
    name = getattr(inner, "name", None)
    return str(name()) if callable(name) else type(inner).__name__


def is_unavailable(error: Any) -> bool:
    """Whether ``error`` means the cluster cannot be reached (retrying later may work)."""
    return error_name(error) in _UNAVAILABLE


def describe(error: Any) -> str:
    inner = error.args[0] if getattr(error, "args", None) else error
    text = getattr(inner, "str", None)
    return str(text()) if callable(text) else str(inner)


def to_publish_error(error: Any, what: str) -> BrokerError:
    """A queuekit error for a failed publish (``error`` is a KafkaError or KafkaException)."""
    if is_unavailable(error):
        return BrokerUnavailable(f"kafka unavailable while {what}: {describe(error)}")
    if error_name(error) in _TOPIC_MISSING:
        return TopicMissing(f"kafka refused {what}: {describe(error)}")
    return PublishError(f"kafka refused {what}: {describe(error)}")


def to_broker_error(error: Any, what: str) -> BrokerError:
    """A queuekit error for a failed admin or consumer operation."""
    if is_unavailable(error):
        return BrokerUnavailable(f"kafka unavailable while {what}: {describe(error)}")
    return BrokerError(f"kafka failed {what}: {describe(error)}")
