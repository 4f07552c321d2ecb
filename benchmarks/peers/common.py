"""What the peer runners share: a thread-safe handled counter and the timed round."""

from __future__ import annotations

import threading
import time

# Longest a round may wait for its messages: a stuck peer fails its round, loudly.
WAIT_LIMIT = 120.0


class Counter:
    """Counts handled messages (from any thread) and tells when a target is reached."""

    def __init__(self) -> None:
        self.handled = 0
        self.target = 0
        self._lock = threading.Lock()
        self._reached = threading.Event()

    def expect(self, more: int) -> None:
        with self._lock:
            self.target = self.handled + more
            self._reached.clear()

    def hit(self) -> None:
        with self._lock:
            self.handled += 1
            if self.handled >= self.target:
                self._reached.set()

    @property
    def reached(self) -> bool:
        return self._reached.is_set()

    def wait(self, timeout: float = WAIT_LIMIT) -> None:
        """Block until the target is reached (a stuck peer fails the round, loudly)."""
        if not self._reached.wait(timeout):
            raise TimeoutError(f"only {self.handled} of {self.target} handled in {timeout} s")


async def wait_async(counter: Counter) -> None:
    """:meth:`Counter.wait` for an event loop: polls with a short period, bounded."""
    import asyncio

    deadline = time.monotonic() + WAIT_LIMIT
    while not counter.reached:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {counter.handled} of {counter.target} handled")
        await asyncio.sleep(0.002)
