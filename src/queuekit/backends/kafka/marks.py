"""Crash-safe attempt counts, kept in the metadata of the group's committed offsets.

Kafka remembers nothing about a delivery that was never committed, so a consumer that is
killed while handling a message would leave no trace, and the message would come back with
the same attempt forever. Before a record is handed to a handler, its offset must be covered
by a *mark*: the partition's position committed again (synchronously) with the metadata
``qk1:d=<X>``, "records up to offset X may have been delivered". The consumer thread marks
what it fetches before the event loop sees it (one commit for every partition of a fetch, up
to ``FETCH_MARK_AHEAD`` records past the committed position), so a consumer that keeps up
never waits for a mark. A new fetch-time mark reaches ``FETCH_MARK_STEP`` records past the
last one fetched: a consumer that keeps up fetches a few records at a time, and marking
exactly what it fetched cost a synchronous commit per fetch (hundreds a second at 1,000
msg/s, which slowed the broker's answers to publishes too). Behind a backlog, marks are
requested as deliveries come near their end (``MARK_AHEAD`` records ahead), so a busy
partition pays one commit per few hundred messages. A graceful hand-over (revoke, close)
settles or releases everything and clears the mark.

The next owner of the partition reads the committed offset C and the mark. If ``X >= C``,
the records C..X were delivered and never settled: the previous owner died. They are handled
*one at a time* ("probing"), each with attempt + its earlier deliveries, and before each one
the consumer commits ``qk1:d=<X>:p=<offset>:n=<deliveries>``. A message that kills its
consumer every time therefore counts one more attempt per crash (and reaches the worker's
dead-letter limit), while the messages beside it are not blamed for it. A record marked but
never handed to a handler before the crash is counted once too many (attempt 2 on its first
real delivery): the price of marking ahead instead of one commit per message. That includes
records not fetched yet at the crash, up to ``FETCH_MARK_STEP`` of them per partition, if
they are fetched while the crashed owner's records are still being probed. A commit made
once everything fetched is settled clears the mark, so an idle consumer leaves none.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka import TopicPartition

Key = tuple[str, int]
PREFIX = "qk1"
FETCH_MARK_AHEAD = 2048  # records past the committed position a mark made at fetch may reach
FETCH_MARK_STEP = 256  # records past the last fetched one that a new fetch-time mark reaches


@dataclass(frozen=True, slots=True)
class Mark:
    """What the last owner of a partition delivered and had not settled."""

    delivered: int
    probe_offset: int = -1
    probe_count: int = 0

    def encode(self) -> str:
        text = f"{PREFIX}:d={self.delivered}"
        if self.probe_offset >= 0:
            text += f":p={self.probe_offset}:n={self.probe_count}"
        return text

    @classmethod
    def parse(cls, text: str | None) -> Mark | None:
        """The mark in commit metadata ``text``, or None (absent, cleared or foreign)."""
        if not text or not text.startswith(PREFIX + ":"):
            return None
        fields: dict[str, int] = {}
        for part in text.split(":")[1:]:
            name, _, value = part.partition("=")
            try:
                fields[name] = int(value)
            except ValueError:
                return None
        if "d" not in fields:
            return None
        return cls(fields["d"], fields.get("p", -1), fields.get("n", 0))

    def deliveries_of(self, offset: int) -> int:
        """How often the record at ``offset`` (within the mark) was delivered before."""
        return self.probe_count if offset == self.probe_offset else 1


class MarkBook:
    """The consumer thread's view of positions and marks (used by that thread only)."""

    def __init__(self) -> None:
        self._assigned: set[Key] = set()
        self._clean: set[Key] = set()  # assigned, and not taken over from a crashed owner
        self._positions: dict[Key, int] = {}
        self._marks: dict[Key, Mark] = {}
        self._fetched: dict[Key, int] = {}  # the last offset fetched, of clean partitions

    def assigned(self, committed: list[Any]) -> dict[Key, Mark]:
        """Take in the committed offsets of new partitions; return the marks of those whose
        previous owner died with delivered, unsettled records."""
        suspects: dict[Key, Mark] = {}
        for tp in committed:
            key = (tp.topic, tp.partition)
            self._assigned.add(key)
            self._clean.add(key)
            mark = Mark.parse(tp.metadata)
            if tp.offset < 0:
                continue
            self._positions[key] = tp.offset
            if mark is not None and mark.delivered >= tp.offset:
                self._marks[key] = mark
                suspects[key] = mark
                self._clean.discard(key)
        return suspects

    def hand_back(self, keys: list[Key], offsets: list[Any], *, clear: bool) -> list[Any]:
        """The final commits of partitions being revoked: ``offsets`` (the handled prefixes)
        plus a commit for every other partition that still carries a mark, so that records
        fetched but dropped unhandled are not taken for a crash. ``clear`` (every delivered
        record was settled or released) drops the marks."""
        given = {(tp.topic, tp.partition) for tp in offsets}
        extra = [
            TopicPartition(key[0], key[1], self._positions[key])
            for key in keys
            if key not in given and key in self._marks and key in self._positions
        ]
        return self.with_marks([*offsets, *extra], clear=clear)

    def forget(self, keys: list[Key]) -> None:
        for key in keys:
            self._assigned.discard(key)
            self._clean.discard(key)
            self._positions.pop(key, None)
            self._marks.pop(key, None)
            self._fetched.pop(key, None)

    def mark(self, key: Key, delivered: int, position: int) -> Any:
        """The commit recording that records up to ``delivered`` may be handed to handlers
        (``position``: where the partition starts if nothing was committed yet); None if
        the partition is no longer assigned."""
        if key not in self._assigned:
            return None
        old = self._marks.get(key)
        position = self._positions.setdefault(key, position)
        if old is None or old.probe_offset < position:
            mark = Mark(max(delivered, old.delivered if old else -1))
        else:
            mark = Mark(max(delivered, old.delivered), old.probe_offset, old.probe_count)
        self._marks[key] = mark
        return TopicPartition(key[0], key[1], position, metadata=mark.encode())

    def mark_fetched(self, key: Key, first: int, last: int) -> Any:
        """The commit marking records ``first``..``last`` just fetched from ``key`` and the
        next ``FETCH_MARK_STEP`` ones, as far as ``FETCH_MARK_AHEAD`` records past the
        committed position; None if they are covered already or beyond that reach, or if the
        partition is not assigned or was taken over from a crashed owner (for that whole
        assignment its marks follow its probes and deliveries instead)."""
        if key not in self._clean:
            return None
        self._fetched[key] = max(last, self._fetched.get(key, last))
        position = self._positions.get(key, first)
        reach = position + FETCH_MARK_AHEAD
        needed = min(last, reach)
        old = self._marks.get(key)
        if needed < first or (old is not None and old.delivered >= needed):
            return None
        return self.mark(key, min(last + FETCH_MARK_STEP, reach), position)

    def reach(self, key: Key) -> int:
        """The last offset of ``key`` its fetch-time marks cover (-1 if none does, or the
        partition is not marked at fetch)."""
        mark = self._marks.get(key)
        return -1 if mark is None or key not in self._clean else mark.delivered

    def probe(self, key: Key, offset: int, count: int) -> Any:
        """The commit recording that ``offset`` is delivered for the ``count``-th time (None
        if the partition is no longer assigned)."""
        if key not in self._assigned:
            return None
        mark = self._marks.get(key) or Mark(offset)
        mark = Mark(max(mark.delivered, offset), offset, count)
        self._marks[key] = mark
        position = self._positions.setdefault(key, offset)
        return TopicPartition(key[0], key[1], position, metadata=mark.encode())

    def with_marks(self, offsets: list[Any], *, clear: bool = False) -> list[Any]:
        """``offsets`` to commit, carrying each partition's mark (or none when ``clear``)."""
        marked = []
        for tp in offsets:
            key = (tp.topic, tp.partition)
            position = max(tp.offset, self._positions.get(key, tp.offset))
            self._positions[key] = position
            mark = None if clear else self._marks.get(key)
            # Records past the last one fetched were never delivered, whatever a fetch-time
            # mark reached (FETCH_MARK_STEP): an idle consumer's commit clears its mark.
            delivered = (
                -1 if mark is None else min(mark.delivered, self._fetched.get(key, mark.delivered))
            )
            if delivered < position:
                mark = None  # everything delivered is settled
            if mark is None:
                self._marks.pop(key, None)
                marked.append(TopicPartition(tp.topic, tp.partition, position))
            else:
                marked.append(TopicPartition(tp.topic, tp.partition, position, mark.encode()))
        return marked
