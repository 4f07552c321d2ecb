"""The contract every backend keeps: :class:`Broker`, :class:`Subscription`, :class:`Delivery`.

Semantics (the conformance suite, :mod:`queuekit.testing.conformance`, checks every line):

* ``publish`` returns only when the broker holds the messages durably (for backends whose
  ``Features.durable`` is true). It is safe to call concurrently and batches internally:
  many concurrent single publishes become one round trip (group commit).
* Groups: each consumer group of a topic receives every message of the topic; within a group
  each message goes to one consumer. A message published to a topic before any consumer
  exists is kept for the topic's default group (``"default"``), and a group that subscribes
  for the first time starts from the beginning of what the topic still retains.
* Delivery is at-least-once: a message is settled only by ``ack``, ``nack`` or
  ``dead_letter``. While a delivery is unsettled and its subscription open, the backend keeps
  the message leased to this consumer (extending the lease as needed, so long handlers are
  not processed twice). When the consumer goes away without settling (``close``, crash,
  SIGKILL) the message is redelivered to another consumer of the same group, at the latest
  ``visibility_timeout`` seconds later, with ``attempt + 1``.
* ``attempt`` counts deliveries, starting at 1, and survives crashes where
  ``Features.crash_safe_attempts`` says so.
* ``nack(delay)`` redelivers the message to the same group only (never to other groups of
  the topic), not before ``delay`` seconds, with ``attempt + 1``.
* ``not_before`` (delayed publish) and ``priority`` (0-9, 9 first) are honoured on every
  backend; ``Features`` states how strictly.
* ``dead_letter`` moves the message to ``<topic>.dlq`` with ``x-dlq-*`` headers (reason,
  error, group, attempts) and settles it, atomically where the backend allows.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import ClassVar, Self

from mypy_extensions import mypyc_attr  # mypyc: a runtime dependency then

from queuekit.message import DEFAULT_GROUP, DeadLetter, Message


@dataclass(frozen=True, slots=True)
class Features:
    """What a backend truly guarantees; the conformance suite skips (loudly) what is False.

    Attributes:
        durable: published messages survive a restart of the process and of the broker.
        delayed_delivery: ``not_before`` and ``nack(delay)`` are honoured.
        priorities: on a backlog, higher priorities are delivered before lower ones.
        strict_priority: priority order holds across the whole backlog of a group, not only
            within a fetched batch or lane.
        ordering_per_key: messages with the same key are delivered in publish order
            (to one consumer at a time), as long as none is retried.
        crash_safe_attempts: the attempt count survives a consumer crash, so a message that
            kills its consumer every time is dead-lettered after its attempts.
        cross_process: several processes can share one store / broker.
    """

    durable: bool = True
    delayed_delivery: bool = True
    priorities: bool = True
    strict_priority: bool = True
    ordering_per_key: bool = False
    crash_safe_attempts: bool = True
    cross_process: bool = True


@mypyc_attr(allow_interpreted_subclasses=True)  # mypyc: subclassed by interpreted backends
class Delivery(abc.ABC):
    """One delivery of a message to one consumer of one group.

    Exactly one of ``ack``, ``nack`` or ``dead_letter`` must be called; calling a second
    one raises :class:`RuntimeError`. Each may batch with other deliveries' settlements.
    """

    __slots__ = ()

    @property
    @abc.abstractmethod
    def message(self) -> Message:
        """The message, with ``attempt`` set to this delivery's number (1 for the first)."""

    @property
    @abc.abstractmethod
    def group(self) -> str:
        """The consumer group this delivery belongs to."""

    @property
    def attempt(self) -> int:
        """Which delivery of the message this is, starting at 1."""
        return self.message.attempt

    @abc.abstractmethod
    async def ack(self) -> None:
        """Settle: the message was handled and will not be delivered to this group again."""

    @abc.abstractmethod
    async def nack(self, delay: float = 0.0) -> None:
        """Settle: redeliver to this group only, not before ``delay`` seconds, attempt + 1."""

    @abc.abstractmethod
    async def dead_letter(self, reason: str, *, error: str | None = None) -> None:
        """Settle: move the message to ``<topic>.dlq`` with why it failed, for this group."""


@mypyc_attr(allow_interpreted_subclasses=True)  # mypyc: subclassed by interpreted backends
class Subscription(abc.ABC):
    """An async iterator of deliveries for one (topic, group) in one consumer.

    At most ``prefetch`` deliveries are unsettled at a time: iteration waits while the
    consumer holds that many. Iteration ends (``StopAsyncIteration``) after ``close``.
    """

    def __aiter__(self) -> Self:
        return self

    @abc.abstractmethod
    async def __anext__(self) -> Delivery:
        """The next delivery; waits for one. Raises StopAsyncIteration once closed."""

    def take_ready(self, limit: int) -> Sequence[Delivery]:
        """Up to ``limit`` deliveries that are ready now, handed out without waiting.

        Exactly what as many ``__anext__`` calls would return at once (same order, same
        ``prefetch`` bound), or fewer: ``[]`` whenever returning one would need a wait or
        any I/O, and always once closed. Never blocks and never raises. A consumer of a
        backlog takes a batch per call instead of a coroutine per delivery, and falls back
        to ``__anext__`` when it gets none. The default has no buffer to hand out: ``[]``.
        """
        return []

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop fetching and give prefetched, not yet returned messages back to the group.

        Unsettled deliveries already returned stay leased to this consumer until settled or
        until the broker treats them as abandoned; idempotent.
        """

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


@mypyc_attr(allow_interpreted_subclasses=True)  # mypyc: subclassed by interpreted backends
class Broker(abc.ABC):
    """A connection to one backend. Use ``async with broker:`` or ``connect``/``close``."""

    backend: ClassVar[str]
    features: ClassVar[Features]

    @abc.abstractmethod
    async def connect(self) -> None:
        """Open connections; raises :class:`~queuekit.errors.BrokerUnavailable` on failure."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Flush pending publishes, close subscriptions and connections; idempotent."""

    @abc.abstractmethod
    async def ping(self) -> None:
        """Return if the broker answers now, else raise ``BrokerUnavailable``."""

    @abc.abstractmethod
    async def publish(self, messages: Sequence[Message]) -> None:
        """Publish messages (of any topics) and return once the broker holds them durably.

        Raises:
            InvalidTopic, InvalidMessage: a message is malformed (a bad topic name, or fields
                that :func:`~queuekit.message.check_fields` refuses); none of them was stored.
            BrokerUnavailable: the broker cannot be reached.
            PublishError: the broker refused or did not confirm the messages; none or only
                some of them may have been stored.
        """

    @abc.abstractmethod
    async def subscribe(
        self, topic: str, group: str = DEFAULT_GROUP, *, prefetch: int = 16
    ) -> Subscription:
        """Register ``group`` on ``topic`` (if new) and return a subscription to it.

        The group exists once this returns: messages published afterwards reach it.
        """

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()


@dataclass(frozen=True, slots=True)
class GroupStats:
    """Counts for one consumer group of a topic.

    Attributes:
        group: the group's name.
        depth: messages waiting to be delivered now (ready, not delayed, not in flight).
        in_flight: messages delivered and not yet settled.
        delayed: messages waiting for their ``not_before`` or retry delay.
        lag: messages not yet handled by the group (depth + in flight + delayed, or the
            broker's own lag figure where it has one).
        consumers: consumers attached, where the broker knows it, else None.
    """

    group: str
    depth: int
    in_flight: int
    delayed: int
    lag: int
    consumers: int | None = None


@dataclass(frozen=True, slots=True)
class TopicStats:
    """Counts for one topic: per group, and its dead-letter queue."""

    topic: str
    groups: tuple[GroupStats, ...] = field(default_factory=tuple)
    dead_letters: int = 0

    @property
    def depth(self) -> int:
        """Messages ready in all groups together."""
        return sum(g.depth for g in self.groups)

    @property
    def in_flight(self) -> int:
        """Messages in flight in all groups together."""
        return sum(g.in_flight for g in self.groups)


# mypyc: not native, else (Broker, Admin) subclasses get "instance lay-out conflict"
@mypyc_attr(native_class=False)
class Admin(abc.ABC):
    """Optional operations on topics and dead letters (all shipped backends implement it)."""

    @abc.abstractmethod
    async def list_topics(self) -> list[str]:
        """Topics known to the broker (not dead-letter queues), sorted."""

    @abc.abstractmethod
    async def topic_stats(self, topic: str) -> TopicStats:
        """Counts for ``topic``: per group and dead letters (zeros for an unknown topic)."""

    @abc.abstractmethod
    async def purge(self, topic: str) -> int:
        """Drop every undelivered message of ``topic`` in every group; return how many."""

    @abc.abstractmethod
    async def dead_letters(self, topic: str, limit: int = 100) -> list[DeadLetter]:
        """The oldest ``limit`` dead letters of ``topic``, oldest first, without removing them."""

    @abc.abstractmethod
    async def replay_dead_letters(self, topic: str, ids: Sequence[str] | None = None) -> int:
        """Send dead letters (all, or those with ``ids``) back to the group that failed them.

        Replayed messages keep their id and payload, start again at attempt 1, and leave the
        dead-letter queue. Returns how many were replayed.
        """

    @abc.abstractmethod
    async def purge_dead_letters(self, topic: str) -> int:
        """Delete every dead letter of ``topic``; return how many."""

    @abc.abstractmethod
    async def delete_topic(self, topic: str) -> None:
        """Delete ``topic`` and all the broker keeps for it, for every group.

        Its waiting, delayed and in-flight messages, retries, dead letters, groups and broker
        objects (queues, streams, Kafka topics) are gone; other topics are untouched, also
        those whose names begin with this one's. Close the topic's subscriptions first. A
        later publish starts the topic afresh. Deleting an unknown topic does nothing.
        """
