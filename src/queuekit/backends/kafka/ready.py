"""Which fetched record a consumer delivers next: priorities, due times, crash suspects.

* Lane records wait in one queue per priority; the highest non-empty one is served first.
  Right after an assignment, a lower lane waits (up to ``PRIORITY_SETTLE``) for the higher
  lanes' first fetch (or end of partition), so a backlog comes out highest first. Not
  strict across partitions, consumers or later arrivals (``Features.strict_priority``).
* Delay and retry records wait in a heap until ``not_before``.
* Records of a partition whose previous owner crashed (see :mod:`.marks`) are handed out
  one at a time, before anything behind them in that partition.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import deque
from dataclasses import replace
from typing import TYPE_CHECKING

from queuekit.backends.kafka.naming import PRIORITIES
from queuekit.backends.kafka.partition import LANE, Partition

if TYPE_CHECKING:
    from queuekit.backends.kafka.delivery import KafkaDelivery

PRIORITY_SETTLE = 1.0  # seconds a lower lane waits for higher lanes after an assignment


class ReadyRecords:
    """Fetched, not yet delivered records of one subscription (event loop only)."""

    def __init__(self) -> None:
        self._lanes: list[deque[KafkaDelivery]] = [deque() for _ in PRIORITIES]
        self._highest = 0  # no lane above this one holds a record
        self._delayed: list[tuple[float, int, KafkaDelivery]] = []
        self._order = itertools.count()
        self._waiting_lanes: set[Partition] = set()  # lanes not fetched since assignment
        self._settle_until = 0.0
        self.probing: set[Partition] = set()

    # ------------------------------------------------------------------ filling

    def assigned(self, part: Partition) -> None:
        """A new partition: a higher lane holds lower ones back until its first fetch."""
        if part.role == LANE and part.priority > 0:
            self._waiting_lanes.add(part)
            self._settle_until = time.monotonic() + PRIORITY_SETTLE

    def reached_end(self, part: Partition) -> None:
        """``part`` has nothing more to fetch for now."""
        self._waiting_lanes.discard(part)

    def revoked(self, part: Partition) -> None:
        self._waiting_lanes.discard(part)

    def add(self, part: Partition, fetched: list[KafkaDelivery], now: float) -> None:
        """Queue records fetched from ``part``, in offset order (``now``: wall clock, read
        once per batch)."""
        if part.suspect is not None:
            for record in fetched:
                self._hold(record)
        elif part.role == LANE:
            priority = part.priority
            if priority:
                self._waiting_lanes.discard(part)
                if priority > self._highest:
                    self._highest = priority
            self._lanes[priority].extend(fetched)
        else:
            for record in fetched:
                self._route(record, now)

    def _route(self, fetched: KafkaDelivery, now: float) -> None:
        due = fetched.message.not_before
        if fetched.part.role != LANE and due is not None and due > now:
            heapq.heappush(self._delayed, (due, next(self._order), fetched))
        else:
            self._make_ready(fetched)

    def _make_ready(self, fetched: KafkaDelivery) -> None:
        priority = fetched.message.priority
        self._lanes[priority].append(fetched)
        if priority > self._highest:
            self._highest = priority

    def _hold(self, fetched: KafkaDelivery) -> None:
        part = fetched.part
        suspect = part.suspect
        if suspect is not None and fetched.offset <= suspect.delivered:
            fetched.earlier = suspect.deliveries_of(fetched.offset)
            message = fetched.message
            fetched.message = replace(message, attempt=message.attempt + fetched.earlier)
            part.suspects.append(fetched)
        else:
            part.held.append(fetched)
        self.probing.add(part)

    # ------------------------------------------------------------------ taking

    def next_suspect(self) -> tuple[KafkaDelivery | None, Partition | None, float | None]:
        """A crash suspect to deliver now (popped), or a partition whose head suspect needs
        its probe mark first, and the seconds until a suspect is due."""
        wait: float | None = None
        now = time.time()
        for part in list(self.probing):
            if part.revoked:
                self.probing.discard(part)
            elif part.deliveries:
                continue  # one suspect at a time, so a crash blames only that one
            elif not part.suspects:
                self.probing.discard(part)
                part.suspect = None
                for fetched in part.held:
                    self._route(fetched, now)
                part.held.clear()
            else:
                head = part.suspects[0]
                due = head.message.not_before
                if due is not None and due > now:
                    wait = due - now if wait is None else min(wait, due - now)
                elif part.probed != head.offset:
                    return None, part, None
                else:
                    part.suspects.popleft()
                    return head, None, None
        return None, None, wait

    def take(self, limit: int) -> list[KafkaDelivery]:
        """Pop and return up to ``limit`` records to deliver now, in delivery order; stops at
        the first one that needs a crash-safety mark or must wait for a higher lane."""
        taken: list[KafkaDelivery] = []
        if self._delayed:
            self._release_due()
        for priority in range(self._highest, -1, -1):
            lane = self._lanes[priority]
            self._highest = priority  # every lane above is empty
            while lane:
                fetched = lane[0]
                part = fetched.part
                if part.revoked:
                    lane.popleft()
                    continue
                if fetched.offset > part.marked or (
                    self._waiting_lanes and self._must_wait_for(priority)
                ):
                    return taken
                taken.append(lane.popleft())
                if len(taken) == limit:
                    return taken
        return taken

    def blocked(self) -> tuple[KafkaDelivery | None, float | None]:
        """Why :meth:`take` just returned nothing: ``(record, None)`` if the next record needs
        a crash-safety mark first (it stays queued), else ``(None, seconds until a record
        may be due)``, or ``(None, None)`` if nothing waits."""
        wait: float | None = None
        if self._delayed:
            wait = self._delayed[0][0] - time.time()
        for priority in range(self._highest, -1, -1):
            lane = self._lanes[priority]
            if not lane:
                continue
            if self._waiting_lanes and self._must_wait_for(priority):
                settle = self._settle_until - time.monotonic()
                return None, settle if wait is None else min(wait, settle)
            return lane[0], None
        return None, wait

    def _release_due(self) -> None:
        """Move the delayed records that are due to their lanes."""
        delayed = self._delayed
        now = time.time()
        while delayed and delayed[0][0] <= now:
            _, _, fetched = heapq.heappop(delayed)
            if not fetched.part.revoked:
                self._make_ready(fetched)

    def _must_wait_for(self, priority: int) -> bool:
        if time.monotonic() >= self._settle_until:
            self._waiting_lanes.clear()
            return False
        return any(part.priority > priority for part in self._waiting_lanes)

    # ------------------------------------------------------------------ dropping

    def clear(self) -> None:
        """Drop every waiting record (the subscription is closing)."""
        for lane in self._lanes:
            lane.clear()
        self._delayed.clear()
        for part in self.probing:
            part.suspects.clear()
            part.held.clear()
        self.probing.clear()

    def drop_before(self, part: Partition, position: int) -> list[KafkaDelivery]:
        """Remove and return ``part``'s waiting records below ``position`` (purged)."""
        gone: list[KafkaDelivery] = []
        for lane in self._lanes:
            if any(f.part is part and f.offset < position for f in lane):
                kept = [f for f in lane if f.part is not part or f.offset >= position]
                gone.extend(f for f in lane if f.part is part and f.offset < position)
                lane.clear()
                lane.extend(kept)
        kept_delayed = []
        for entry in self._delayed:
            if entry[2].part is part and entry[2].offset < position:
                gone.append(entry[2])
            else:
                kept_delayed.append(entry)
        heapq.heapify(kept_delayed)
        self._delayed = kept_delayed
        return gone
