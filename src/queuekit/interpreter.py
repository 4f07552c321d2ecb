"""Interpreter-wide settings that queuekit components hold while they run.

Two of CPython's process-wide knobs cost queuekit measurably at their defaults:

* **The thread switch interval** (5 ms), held at 100 µs by SQLite brokers. Every SQLite call
  releases the GIL, and to run the next line of Python the database thread must take it back.
  While the event loop is busy handling a batch it keeps the GIL until it blocks or until the
  interval runs out, and each pass through the loop's selector wakes the waiting thread too
  early to win and starts its wait over: a claim made ahead waited for the whole batch, and
  the two threads worked in turns instead of side by side. 5,000-message runs on two cores
  went from about 20k to 23k msg/s.
* **The garbage collector's first threshold** (700 container objects), held at 10,000 by
  workers. A worker allocates several tracked objects per message (the message, its delivery,
  coroutines, futures) that reference counting frees a moment later, but the young generation
  filled up every few dozen messages, and each collection walked everything then in flight:
  10% of a worker's CPU on the memory backend, 9% on Kafka (74 ms of 0.75 s for 20,000
  messages; 12 ms at 10,000). Cyclic garbage, which only the collector frees, is rare in the
  pipeline (about 450 objects per run).

Each is a :class:`HeldSetting`: components hold a value while they run, the most favourable one
held applies, and when the last lets go the value found before the first hold comes back,
unless someone else changed it meanwhile (then it is left as they set it).
"""

from __future__ import annotations

import gc
import sys
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T", int, float)

DEFAULT_SWITCH_INTERVAL = 1e-4
"""Seconds: hand-offs of a few dozen microseconds, and threads running Python side by side
still get whole timeslices."""

DEFAULT_GC_THRESHOLD = 10_000
"""Tracked allocations (net of deallocations) between young-generation collections."""


class HeldSetting(Generic[T]):
    """A process-wide setting that several holders may move in one direction at once.

    ``prefer`` picks the value that applies among the ones found and held (``min`` for an
    interval to shorten, ``max`` for a threshold to raise). Thread-safe.
    """

    def __init__(
        self, read: Callable[[], T], write: Callable[[T], None], prefer: Callable[..., T]
    ) -> None:
        self._read: Callable[[], T] = read
        self._write: Callable[[T], None] = write
        self._prefer: Callable[..., T] = prefer
        self._lock = threading.Lock()
        self._held: list[T] = []
        self._found: T | None = None  # the value before the first hold
        self._applied: T | None = None  # the value this object last wrote (read back)

    def hold(self, value: T) -> None:
        """Apply ``value`` (if the preferred one) until a matching :meth:`let_go`."""
        with self._lock:
            if not self._held:
                self._found = self._read()
            self._held.append(value)
            self._apply()

    def let_go(self, value: T) -> None:
        """End one :meth:`hold` of ``value``; the last one restores the value found."""
        with self._lock:
            self._held.remove(value)
            if self._held:
                self._apply()
                return
            if self._found is not None and self._read() == self._applied:
                self._write(self._found)
            self._found = self._applied = None

    def _apply(self) -> None:
        assert self._found is not None
        wanted = self._prefer(self._found, *self._held)
        if self._read() != wanted:
            self._write(wanted)
        self._applied = self._read()


def _gc_threshold() -> int:
    return gc.get_threshold()[0]


def _set_gc_threshold(threshold: int) -> None:
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(threshold, older, oldest)


SWITCH_INTERVAL: HeldSetting[float] = HeldSetting(sys.getswitchinterval, sys.setswitchinterval, min)
"""``sys.setswitchinterval``, held by SQLite brokers (the shortest interval held applies)."""

GC_THRESHOLD: HeldSetting[int] = HeldSetting(_gc_threshold, _set_gc_threshold, max)
"""The collector's first threshold, held by running workers (the highest applies)."""
