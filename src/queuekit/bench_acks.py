"""The benchmark's measuring instrument: counts the worker's acks as they happen.

A module of its own so that the compiled build compiles it (``queuekit.bench``, whose publish
loop stands for user code, stays interpreted). It runs once per message, and an instrument
must cost next to nothing beside the work it measures: the raw sides count a whole batch with
one addition, and interpreted, this count was about 5% of a Kafka worker's CPU per message.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from queuekit.worker.middleware.base import Context, Observer, Observing, Outcome, Services

if TYPE_CHECKING:
    from queuekit.worker.app import HandlerSpec

__all__ = ["AckCounter"]

_SUCCESS = Outcome.SUCCESS  # read once: an enum member read through its class is slow


class AckCounter(Observing):
    """Outermost middleware, an observer: counts acks (cumulative over phases) and records
    scheduled-send -> ack latencies of the messages in :attr:`scheduled`.

    ``reached`` is set once :attr:`acked` reaches the target of :meth:`expect`; ``on_ack``,
    if set, is called with the running count after each ack.
    """

    def __init__(self) -> None:
        self.acked = 0
        self.target = 0
        self.reached = asyncio.Event()
        self.scheduled: dict[str, float] = {}
        self.latencies: list[float] = []
        self.on_ack: Callable[[int], None] | None = None

    def expect(self, total: int) -> None:
        """Set the ack count that ends the current phase (counts are cumulative)."""
        self.target = total
        self.reached.clear()
        if self.acked >= total:
            self.reached.set()

    def observer(self, spec: HandlerSpec, services: Services) -> Observer:
        """Counting is the same for every handler."""
        return self.count

    def count(self, ctx: Context) -> None:
        """Count ``ctx`` if it was acked, recording its latency if it was scheduled."""
        if ctx.outcome is not _SUCCESS:
            return
        if self.scheduled:
            sent = self.scheduled.pop(ctx.delivery.message.id, None)
            if sent is not None:
                self.latencies.append(time.perf_counter() - sent)
        self.acked += 1
        if self.on_ack is not None:
            self.on_ack(self.acked)
        if self.acked >= self.target:
            self.reached.set()
