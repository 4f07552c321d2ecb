"""A consumer of one (topic, group) on the SQLite store, and its deliveries.

Claiming leases up to ``prefetch - unsettled`` deliveries in one transaction; they are handed
out one by one from a local buffer. While the subscription is open a heartbeat extends the
leases of everything it holds, so a slow handler is not redelivered under its feet. Waiting
for work: a local publish wakes the subscription at once; publishes of other processes are
found by polling every ``poll_interval`` (a cheap read, no write lock).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Literal

from queuekit.backends.sqlite.database import Database
from queuekit.backends.sqlite.store import ClaimedRows, Settlement
from queuekit.broker import Delivery, Subscription
from queuekit.errors import BrokerError, BrokerUnavailable
from queuekit.message import Message, dead_letter_headers

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LeaseSettings:
    """Timing of a subscription: lease length and idle polling period, in seconds."""

    visibility_timeout: float
    poll_interval: float


class SqliteDelivery(Delivery):
    """One claimed delivery; settling it goes through the broker's batched settler."""

    __slots__ = ("_message", "_settled", "_subscription", "seq")

    def __init__(self, subscription: SqliteSubscription, seq: int, message: Message) -> None:
        self._subscription = subscription
        self._message = message
        self._settled = False
        self.seq = seq

    @property
    def message(self) -> Message:
        return self._message

    @property
    def group(self) -> str:
        return self._subscription.group

    async def ack(self) -> None:
        """Queue the acknowledgement for the broker's next batch and return.

        Raises:
            BrokerUnavailable: the broker is closed.
        """
        if self._settled:
            raise RuntimeError(f"message {self._message.id} was already settled")
        self._subscription.acknowledge(self.seq)
        self._settled = True

    async def nack(self, delay: float = 0.0) -> None:
        if not 0 <= delay < math.inf:  # also rejects NaN
            raise ValueError(f"nack delay must be a finite number of seconds >= 0, not {delay!r}")
        await self._settle("nack", available_at=time.time() + delay)

    async def dead_letter(self, reason: str, *, error: str | None = None) -> None:
        headers = dead_letter_headers(
            self._message,
            reason=reason,
            error=error,
            group=self.group,
            attempts=self._message.attempt,
        )
        await self._settle("dead_letter", dead_letter=replace(self._message, headers=headers))

    async def _settle(
        self,
        kind: Literal["ack", "nack", "dead_letter"],
        *,
        available_at: float = 0.0,
        dead_letter: Message | None = None,
    ) -> None:
        if self._settled:
            raise RuntimeError(f"message {self._message.id} was already settled")
        self._settled = True
        settlement = Settlement(
            kind,
            self._subscription.queue_id,
            self.seq,
            self._subscription.owner,
            available_at=available_at,
            dead_letter=dead_letter,
        )
        try:
            await self._subscription.settle(settlement)
        except Exception:
            # The batch's transaction was rolled back: the caller may settle again. (On
            # cancellation the batch may still commit, so the delivery stays settled.)
            self._settled = False
            raise


class SqliteSubscription(Subscription):
    """Deliveries of ``topic`` for ``group`` (queue ``queue_id``), leased to ``owner``."""

    def __init__(
        self,
        database: Database,
        topic: str,
        group: str,
        queue_id: int,
        *,
        owner: str,
        prefetch: int,
        timing: LeaseSettings,
        settle: Callable[[Settlement], Awaitable[None]],
        acknowledge: Callable[[int], None],
        on_close: Callable[[SqliteSubscription], None],
    ) -> None:
        self.topic = topic
        self.group = group
        self.queue_id = queue_id
        self.owner = owner
        self.prefetch = prefetch
        self._database = database
        self._timing = timing
        self._settle = settle
        self._acknowledge = acknowledge
        self._on_close = on_close
        self._buffer: deque[SqliteDelivery] = deque()
        self._held: set[int] = set()  # seqs leased to us and not settled (buffered or out)
        self._wakeup = asyncio.Event()
        self._closed = False
        self._backlog = False  # the last claim was full: claim again without checking
        self._next_visible: float | None = None
        self._lease = 0.0  # the latest lease given (see _next_lease)
        self._due_checked_at = -math.inf  # when a claim last made due deliveries ready
        self._claiming: asyncio.Task[None] | None = None
        self._low_water = max(1, prefetch // 4)
        # At most half the prefetch per claim: the next half can then be claimed while this
        # one is handled. A claim of everything left the database thread idle while the
        # loop handled, and the loop idle while the database thread claimed.
        self._claim_size = max(1, (prefetch + 1) // 2)
        self._closing: asyncio.Task[None] | None = None
        self._heartbeat = asyncio.create_task(self._keep_leases(), name=f"queuekit-lease-{owner}")

    def wake(self) -> None:
        """Tell the subscription that there may be new work (a local publish or release)."""
        self._wakeup.set()

    async def __anext__(self) -> SqliteDelivery:
        while True:
            if self._closed:  # what is buffered goes back to the group (see close)
                raise StopAsyncIteration
            ready = self.take_ready(1)
            if ready:
                return ready[0]
            self._wakeup.clear()
            claiming = self._claiming
            if claiming is None and len(self._held) < self.prefetch:
                claiming = self._claiming = self._start_claim()
            if claiming is not None:
                # Waited on, not awaited: if this caller is cancelled, the claimed rows
                # still reach the buffer (and are released by close) instead of waiting
                # for lease expiry.
                if not claiming.done():
                    await asyncio.wait((claiming,))
                self._claiming = None
                claiming.result()  # a failed claim fails this call; the next one retries
                if self._buffer or self._backlog:
                    continue
            await self._wait()

    def take_ready(self, limit: int) -> list[SqliteDelivery]:
        """The claimed deliveries :meth:`__anext__` would hand out now, up to ``limit``
        (none once closing: those are released)."""
        buffer = self._buffer
        if self._closed:
            return []
        taken = [buffer.popleft() for _ in range(min(limit, len(buffer)))]
        if taken:
            self._claim_ahead()
        return taken

    def _claim_ahead(self) -> None:
        """Start claiming the next batch in the background while this one is handled.

        Only while there is a backlog (the last claim was full), once the buffer runs low
        and at least a quarter of the prefetch is free: the database thread then claims
        while the event loop handles, instead of the two taking turns (claims take at most
        half the prefetch, so there is room for the next one while a batch is handled).
        A background claim that failed is kept for ``__anext__`` to raise once the buffer
        is empty.
        """
        claiming = self._claiming
        if claiming is not None:
            if not claiming.done() or claiming.cancelled() or claiming.exception() is not None:
                return
            self._claiming = None
        if (
            self._backlog
            and not self._closed
            and len(self._buffer) <= self._low_water
            and self.prefetch - len(self._held) >= self._low_water
        ):
            self._claiming = self._start_claim()

    def _start_claim(self) -> asyncio.Task[None]:
        """A task claiming up to half the prefetch (if free) into the buffer.

        With a backlog the claim reaches the database thread before this returns: a task's
        first step waits for the event loop's next round, which a lane handling a run of
        deliveries without suspending can postpone until the whole batch is handled, and
        the claim made ahead would then run while the loop sits idle.
        """
        if self._backlog and self._database.is_open:
            return asyncio.create_task(self._receive(*self._submit_claim(time.time())))
        return asyncio.create_task(self._claim_when_due())

    async def _claim_when_due(self) -> None:
        """Check whether anything is claimable, and if so claim it."""
        now = time.time()
        if not self._backlog:
            due = await self._database.call(lambda store: store.next_visible(self.queue_id))
            self._next_visible = due
            if due is None or due > now or self._closed:
                return
        await self._receive(*self._submit_claim(now))

    def _submit_claim(self, now: float) -> tuple[int, asyncio.Future[ClaimedRows]]:
        """Hand a claim to the database thread: its limit, and its rows to come.

        Waiting deliveries that fell due and expired leases are made ready by the first claim
        after an idle check and otherwise at most once per poll interval: while a backlog
        lasts they may wait that much longer, and the claims in between save a statement.
        """
        limit = min(self.prefetch - len(self._held), self._claim_size)
        lease_until = self._next_lease(now)
        make_due_ready = (
            not self._backlog or now - self._due_checked_at >= self._timing.poll_interval
        )
        if make_due_ready:
            self._due_checked_at = now
        rows = self._database.submit(
            lambda store: store.claim(
                self.queue_id,
                owner=self.owner,
                limit=limit,
                now=now,
                lease_until=lease_until,
                make_due_ready=make_due_ready,
            )
        )
        return limit, rows

    async def _receive(self, limit: int, rows: asyncio.Future[ClaimedRows]) -> None:
        """Buffer the deliveries of a claim of up to ``limit``."""
        claimed = await rows
        self._backlog = claimed.leased == limit
        held, buffer = self._held, self._buffer
        for seq, message in claimed.messages(self.topic):
            held.add(seq)
            buffer.append(SqliteDelivery(self, seq, message))

    async def _wait(self) -> None:
        timeout = self._timing.poll_interval
        due = self._next_visible
        if due is not None and due > time.time():
            timeout = min(timeout, due - time.time())
        try:
            async with asyncio.timeout(timeout):
                await self._wakeup.wait()
        except TimeoutError:
            pass

    def acknowledge(self, seq: int) -> None:
        """Queue the ack of ``seq`` (written with others soon after) and free its slot.

        An ack lost before it is written (a crash, a failed write) only means a redelivery
        once its lease expires, which at-least-once allows; so acks, unlike nacks and dead
        letters, do not wait for their transaction.

        Raises:
            BrokerUnavailable: the broker is closed.
        """
        if not self._database.is_open:
            raise BrokerUnavailable(
                f"cannot ack: the SQLite broker on {self._database.path} is closed"
            )
        self._acknowledge(seq)
        self._held.discard(seq)
        self._wakeup.set()
        self._claim_ahead()

    async def settle(self, settlement: Settlement) -> None:
        """Write a settlement (batched with others) and free its prefetch slot."""
        await self._settle(settlement)
        self._held.discard(settlement.seq)
        self._wakeup.set()
        self._claim_ahead()

    async def _keep_leases(self) -> None:
        while True:
            # Not synchronization: the heartbeat period, a third of the lease.
            await asyncio.sleep(self._timing.visibility_timeout / 3)
            try:
                await self._extend_leases(list(self._held))
            except BrokerError as exc:
                logger.warning("could not extend leases of %s: %s", self.owner, exc)

    async def _extend_leases(self, seqs: list[int]) -> None:
        now = time.time()
        lease_until = self._next_lease(now)
        await self._database.call(
            lambda store: store.extend_leases(
                self.topic,
                self.group,
                owner=self.owner,
                seqs=seqs,
                lease_until=lease_until,
                now=now,
            )
        )

    def _next_lease(self, now: float) -> float:
        """``now`` + the visibility timeout, but always later than the previous lease.

        So a claim's lease differs from every lease this consumer already holds, which is
        how the store finds the claimed rows (see ``SqliteStore.claim``), even if the wall
        clock stands still or steps back.
        """
        lease = max(now + self._timing.visibility_timeout, math.nextafter(self._lease, math.inf))
        self._lease = lease
        return lease

    async def close(self) -> None:
        """Stop claiming and release claimed deliveries not handed out yet; idempotent.

        Concurrent calls all return once the deliveries are released.
        """
        if self._closing is None:
            self._closed = True
            self._wakeup.set()
            self._closing = asyncio.create_task(self._close(), name=f"queuekit-close-{self.owner}")
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        self._heartbeat.cancel()
        if self._claiming is not None:
            await asyncio.gather(self._claiming, return_exceptions=True)
        await asyncio.gather(self._heartbeat, return_exceptions=True)
        unhanded = [delivery.seq for delivery in self._buffer]
        self._buffer.clear()
        self._held.difference_update(unhanded)
        try:
            await self._database.call(lambda store: store.release(owner=self.owner, seqs=unhanded))
        except BrokerError as exc:
            # They come back anyway when their leases expire (with one attempt more).
            logger.warning(
                "could not release %d deliveries of %s: %s", len(unhanded), self.owner, exc
            )
        finally:
            self._on_close(self)
