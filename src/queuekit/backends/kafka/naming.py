"""How one queuekit topic and its groups map onto Kafka topics and consumer groups.

For a queuekit topic ``T`` and a group ``G``:

* ``T``                priority lane 0 (what plain Kafka producers write to)
* ``T.prio1`` … ``T.prio9``   priority lanes 1-9, read highest first
* ``T.delayed``        messages published with ``not_before`` in the future (all groups)
* ``T.G.retry``        ``nack(delay)`` retries of group ``G`` only
* ``T.dlq``            dead letters of every group
* Kafka consumer group ``T:G`` (a ``:`` never occurs in topic or group names, so the id is
  unambiguous and one queuekit topic's rebalances never disturb another's).
"""

from __future__ import annotations

from collections.abc import Iterable

from queuekit.message import DLQ_SUFFIX, MAX_PRIORITY, MIN_PRIORITY, dlq_topic

LANE_INFIX = ".prio"
DELAY_SUFFIX = ".delayed"
RETRY_SUFFIX = ".retry"
GROUP_SEPARATOR = ":"

PRIORITIES = range(MIN_PRIORITY, MAX_PRIORITY + 1)


def lane_topic(topic: str, priority: int) -> str:
    """The Kafka topic holding ``topic``'s ready messages of ``priority``."""
    return topic if priority == MIN_PRIORITY else f"{topic}{LANE_INFIX}{priority}"


def lane_topics(topic: str) -> list[str]:
    """Every priority lane of ``topic``, lowest priority first."""
    return [lane_topic(topic, priority) for priority in PRIORITIES]


def delay_topic(topic: str) -> str:
    """The Kafka topic of ``topic``'s delayed publishes, shared by all groups."""
    return topic + DELAY_SUFFIX


def retry_topic(topic: str, group: str) -> str:
    """The Kafka topic of ``group``'s retries of ``topic`` (no other group reads it)."""
    return f"{topic}.{group}{RETRY_SUFFIX}"


def group_id(topic: str, group: str) -> str:
    """The Kafka consumer group id of queuekit group ``group`` on ``topic``."""
    return f"{topic}{GROUP_SEPARATOR}{group}"


def group_of(kafka_group_id: str, topic: str) -> str | None:
    """The queuekit group name if ``kafka_group_id`` is a group of ``topic``, else None."""
    prefix = topic + GROUP_SEPARATOR
    if not kafka_group_id.startswith(prefix):
        return None
    group = kafka_group_id[len(prefix) :]
    return group if group and GROUP_SEPARATOR not in group else None


def topic_family(topic: str) -> list[str]:
    """The Kafka topics every user of ``topic`` needs: its lanes, delay topic and DLQ."""
    return [*lane_topics(topic), delay_topic(topic), dlq_topic(topic)]


def base_topics(kafka_topics: Iterable[str]) -> list[str]:
    """The queuekit topics among ``kafka_topics``, sorted: every topic not internal to Kafka
    and not a lane, delay, retry or dead-letter topic of another topic in the set."""
    names = {name for name in kafka_topics if not name.startswith("__")}
    bases = set()
    for name in names:
        if name.endswith(DLQ_SUFFIX) or _companion_of(name, names):
            continue
        bases.add(name)
    return sorted(bases)


def _companion_of(name: str, names: set[str]) -> bool:
    if name.endswith(DELAY_SUFFIX) and name.removesuffix(DELAY_SUFFIX) in names:
        return True
    head, sep, tail = name.rpartition(LANE_INFIX)
    if sep and tail.isdigit() and int(tail) in PRIORITIES and head in names:
        return True
    if name.endswith(RETRY_SUFFIX):
        stem = name.removesuffix(RETRY_SUFFIX)
        return any(stem.startswith(base + ".") for base in names if base != name)
    return False
