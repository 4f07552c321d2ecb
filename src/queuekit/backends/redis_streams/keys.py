"""Where a topic lives in Redis: the names of its streams, sorted sets and sets.

Every key of a topic carries the topic in a hash tag (``{orders}``), so all of them land in
one Redis Cluster slot and a Lua script may touch them together.

=====================================  ===========================================================
``queuekit:{T}``                       stream, priority 0 lane (a plain ``XADD`` goes here)
``queuekit:{T}:p1`` .. ``:p9``         streams, priority lanes 1-9 (read highest first)
``queuekit:{T}:delayed``               sorted set, delayed publishes (score: due unix ms)
``queuekit:{T}:groups``                set, the queuekit consumer groups of the topic
``queuekit:{T}:group:<G>:retry``       stream, retries of group G that are due
``queuekit:{T}:group:<G>:delayed``     sorted set, retries of group G waiting for their delay
``queuekit:{T}:dlq``                   stream, dead letters of every group
``queuekit:topics``                    set, every topic published or subscribed to
=====================================  ===========================================================
"""

from __future__ import annotations

from dataclasses import dataclass

from queuekit.message import MAX_PRIORITY

PREFIX = "queuekit"
TOPICS_KEY = f"{PREFIX}:topics"
PRIORITIES = range(MAX_PRIORITY + 1)
# Position of the delayed set in :attr:`TopicKeys.publish_keys` (after the ten lanes).
DELAYED_KEY = MAX_PRIORITY + 1


@dataclass(frozen=True, slots=True)
class TopicKeys:
    """The Redis keys of one topic (see the module docstring for the layout)."""

    topic: str

    @property
    def base(self) -> str:
        """The priority-0 stream, also the prefix of every other key of the topic."""
        return f"{PREFIX}:{{{self.topic}}}"

    def lane(self, priority: int) -> str:
        """The stream holding ready messages of ``priority`` (0-9)."""
        return self.base if priority == 0 else f"{self.base}:p{priority}"

    @property
    def lanes(self) -> tuple[str, ...]:
        """The ten lane streams, priority 0 first."""
        return tuple(self.lane(priority) for priority in PRIORITIES)

    @property
    def publish_keys(self) -> tuple[bytes, ...]:
        """The keys a publish writes, encoded: the ten lanes, then the delayed set.

        A message's lane is at the index of its priority, the delayed set at
        :data:`DELAYED_KEY`.
        """
        return tuple(key.encode() for key in (*self.lanes, self.delayed))

    @property
    def delayed(self) -> str:
        return f"{self.base}:delayed"

    @property
    def groups(self) -> str:
        return f"{self.base}:groups"

    @property
    def dlq(self) -> str:
        return f"{self.base}:dlq"

    def retry(self, group: str) -> str:
        """The stream of group ``group``'s retries that are due."""
        return f"{self.base}:group:{group}:retry"

    def group_delayed(self, group: str) -> str:
        """The sorted set of group ``group``'s retries that wait for their delay."""
        return f"{self.base}:group:{group}:delayed"

    def read_order(self, group: str) -> tuple[str, ...]:
        """The streams a consumer of ``group`` reads, in the order it reads them.

        Due retries first, then the lanes from priority 9 down to 0.
        """
        return (self.retry(group), *reversed(self.lanes))


def read_order_priority(index: int) -> int | None:
    """The lane priority of position ``index`` in :meth:`TopicKeys.read_order` (None: retry)."""
    return None if index == 0 else MAX_PRIORITY - (index - 1)
