"""Which offset of a partition may be committed while its messages are handled concurrently.

Kafka commits one position per partition: "everything before this offset is done". Several
messages of a partition are in flight at once, and they finish in any order, so the ledger
commits only the contiguous handled prefix: the position is the first offset that was fetched
and not yet settled. A crash redelivers everything from there, so nothing is lost; messages
settled beyond a gap may be handled again (at-least-once).
"""

from __future__ import annotations

from collections import deque


class OffsetLedger:
    """Fetched and settled offsets of one assigned partition (one assignment's lifetime)."""

    __slots__ = ("_committed", "_done", "_next", "_pending")

    def __init__(self) -> None:
        self._pending: deque[int] = deque()  # fetched, in offset order
        self._done: set[int] = set()  # settled but not yet at the head of _pending
        self._next: int | None = None  # the position once every pending offset is settled
        self._committed: int | None = None

    def fetched(self, offset: int) -> bool:
        """Record a fetched offset; False (ignore the record) if it is not new."""
        if self._next is not None and offset < self._next:
            return False
        self._pending.append(offset)
        self._next = offset + 1
        return True

    @property
    def next_offset(self) -> int:
        """The lowest offset that :meth:`fetched` would take as new (-1 before any)."""
        return -1 if self._next is None else self._next

    def fetched_run(self, offsets: list[int]) -> None:
        """Record a run of new offsets, increasing, each at least :attr:`next_offset`."""
        self._pending.extend(offsets)
        self._next = offsets[-1] + 1

    def settled(self, offset: int) -> None:
        """Record that ``offset`` was handled (acked, retried, dead-lettered or dropped)."""
        pending = self._pending
        if pending and pending[0] == offset:
            pending.popleft()
            done = self._done
            while pending and pending[0] in done:
                done.discard(pending.popleft())
        else:
            self._done.add(offset)

    @property
    def position(self) -> int | None:
        """The offset to commit: the first unsettled one (None before the first fetch)."""
        return self._pending[0] if self._pending else self._next

    def uncommitted(self) -> int | None:
        """``position`` if it moved since the last :meth:`committed`, else None."""
        position = self.position
        if position is None or position == self._committed:
            return None
        return position

    def committed(self, position: int) -> None:
        """Note that ``position`` was handed to Kafka for commit."""
        if self._committed is None or position > self._committed:
            self._committed = position

    @property
    def highest(self) -> int:
        """The highest offset fetched so far (-1 before the first)."""
        return -1 if self._next is None else self._next - 1

    @property
    def unsettled(self) -> int:
        """Fetched offsets not settled yet."""
        return len(self._pending) - len(self._done)
