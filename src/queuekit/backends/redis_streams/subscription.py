"""Consuming one (topic, group): a background fetch loop, lease extension, deliveries.

The fetch loop keeps up to ``prefetch`` entries leased to this consumer (fetched and not
returned, or returned and not settled), fetching at most half of that per batch. Each batch
takes: entries other consumers abandoned
(XAUTOCLAIM, at most every ``claim_interval``); then new ones - the PLAN script moves due
delayed messages and counts what waits in each stream, and plain XREADGROUPs (one write)
take exactly that many, retries first, then priority 9 down to 0; and when there is
nothing, one blocking XREADGROUP on every stream of the group wakes on the first new entry.
The reads of a batch carry the acks queued since the last write (see settle.py) and the next
batch's PLAN in the same write, so while a backlog lasts each batch costs one round trip (an
entry published in between waits at most one batch longer to be counted, as it would if it
had arrived just after a separate PLAN).
A second task extends the leases of everything this consumer holds (XCLAIM ... JUSTID resets
the idle time without counting a delivery) every third of the visibility timeout, and trims
the topic now and then. A lost connection is retried with backoff for as long as the
subscription is open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from redis import exceptions as redis_errors

from queuekit.backends.redis_streams import entries
from queuekit.backends.redis_streams.connection import (
    TRANSIENT_ERRORS,
    Backoff,
    pack_commands,
    run_packed,
)
from queuekit.backends.redis_streams.keys import TopicKeys, read_order_priority
from queuekit.backends.redis_streams.scripts import run
from queuekit.backends.redis_streams.settle import (
    AckBuffer,
    Command,
    Settlement,
    acks_write,
    check_replies,
)
from queuekit.broker import Delivery, Subscription
from queuekit.errors import BrokerError
from queuekit.message import Message, dead_letter_headers
from queuekit.tasks import cancel_and_wait

if TYPE_CHECKING:
    from queuekit.backends.redis_streams.broker import RedisStreamsBroker

logger = logging.getLogger("queuekit.redis")

# Longest a closing consumer waits for its queued acks before giving entries back (s).
ACKS_BEFORE_GIVE_BACK = 1.0
# Entries given back on close get an idle time past any sane visibility timeout (ms).
GIVE_BACK_IDLE_MS = 10**12
# Holds given-back entries until a live consumer claims them (never deleted while it holds any).
PARKING_CONSUMER = "queuekit-returned"
# How many XAUTOCLAIM pages one claim round may scan per stream.
CLAIM_SCANS = 10
# Longest blocking read: bounds how late a due delayed message published elsewhere is seen.
MAX_BLOCK = 1.0
# Deliveries handed out between two yields to the event loop (see __anext__).
YIELD_EVERY = 64
# Delayed messages moved into the lanes per plan.
PROMOTE_LIMIT = 1000

_GIVE_BACK_ERRORS: tuple[type[Exception], ...] = (*TRANSIENT_ERRORS, redis_errors.ResponseError)

Ref = tuple[int, bytes]
"""An entry this consumer holds: (position in the read order, entry id)."""


class RedisDelivery(Delivery):
    """One delivery of a stream entry to this consumer; settles through the broker."""

    __slots__ = ("_message", "_settled", "_sub", "ref")

    def __init__(self, sub: RedisSubscription, ref: Ref, message: Message) -> None:
        self._sub = sub
        self.ref = ref
        self._message = message
        self._settled = False

    @property
    def message(self) -> Message:
        return self._message

    @property
    def group(self) -> str:
        return self._sub.group

    async def ack(self) -> None:
        """Queue the acknowledgement for the broker's next batch and return (see settle.py)."""
        if self._settled:
            raise RuntimeError(f"delivery of message {self._message.id} is already settled")
        self._sub.acknowledge(self.ref)
        self._settled = True

    async def nack(self, delay: float = 0.0) -> None:
        if not delay >= 0 or math.isinf(delay):
            raise ValueError("delay must be a non-negative, finite number of seconds")
        keys, group, message = self._sub.keys, self._sub.group, self._message
        fields = entries.encode(message, prior_attempts=message.attempt)
        command: Command
        if delay > 0:
            due_ms = math.ceil((time.time() + delay) * 1000)
            member = entries.pack(message.priority, fields)
            command = ("ZADD", keys.group_delayed(group), due_ms, member)
        else:
            command = ("XADD", keys.retry(group), "*", *fields)
        await self._settle((command,))

    async def dead_letter(self, reason: str, *, error: str | None = None) -> None:
        message = self._message
        headers = dead_letter_headers(
            message, reason=reason, error=error, group=self._sub.group, attempts=message.attempt
        )
        fields = entries.encode(replace(message, headers=headers))
        await self._settle((("XADD", self._sub.keys.dlq, "*", *fields),))

    async def _settle(self, commands: tuple[Command, ...]) -> None:
        if self._settled:
            raise RuntimeError(f"delivery of message {self._message.id} is already settled")
        self._settled = True
        await self._sub.settle(self.ref, commands)


class RedisSubscription(Subscription):
    """The deliveries of one consumer (a unique Redis consumer name) of one group."""

    def __init__(
        self, broker: RedisStreamsBroker, topic: str, group: str, prefetch: int, consumer: str
    ) -> None:
        self.topic = topic
        self.group = group
        self.keys = TopicKeys(topic)
        self.consumer = consumer
        self._broker = broker
        self._prefetch = prefetch
        # A batch takes at most half the prefetch, and the next one is fetched once half is
        # free: while the worker handles one half, the other is on its way. Batches of all
        # the free room left the worker idle for a round trip after each burst of handling.
        self._refill_at = max(1, prefetch // 2)
        self._streams = self.keys.read_order(group)
        self._plan_keys = [self.keys.delayed, self.keys.group_delayed(group), *self._streams]
        self._stream_names = [stream.encode() for stream in self._streams]
        self._plan_key_names = [key.encode() for key in self._plan_keys]
        self._group_name = group.encode()
        self._next_plan: list[Any] | None = None
        self._priorities = [read_order_priority(index) or 0 for index in range(len(self._streams))]
        self._acks = AckBuffer(broker.settler, group, self._streams, delete_first=True)
        self._read_prefix = [b"XREADGROUP", b"GROUP", group.encode(), consumer.encode(), b"COUNT"]
        self._buffer: deque[RedisDelivery] = deque()
        self._unsettled: set[Ref] = set()
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._closed = False
        self._failure: BaseException | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._next_claim = 0.0
        self._handed = 0

    # -- the consumer's side

    async def __anext__(self) -> RedisDelivery:
        if not self._tasks and not self._closed:
            self._start()
        while True:
            if self._closed:  # what is buffered goes back to the group (see close)
                raise StopAsyncIteration
            if self._buffer:
                break
            if self._failure is not None:
                raise self._failure
            self._arrived.clear()
            await self._arrived.wait()
        [delivery] = self._hand_out(1)
        if not self._handed % YIELD_EVERY:
            # A consumer whose handler never awaits would otherwise starve the fetch loop
            # until the buffer is empty; this lets the next batch be fetched meanwhile.
            await asyncio.sleep(0)
        return delivery

    def take_ready(self, limit: int) -> list[RedisDelivery]:
        """The fetched deliveries :meth:`__anext__` would hand out now, up to ``limit``
        (none once closing)."""
        return [] if self._closed else self._hand_out(limit)

    def _hand_out(self, limit: int) -> list[RedisDelivery]:
        """Up to ``limit`` buffered deliveries, counted as handed out and unsettled."""
        buffer = self._buffer
        taken = [buffer.popleft() for _ in range(min(limit, len(buffer)))]
        unsettled = self._unsettled
        for delivery in taken:
            unsettled.add(delivery.ref)
        self._handed += len(taken)
        return taken

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._arrived.set()
        await cancel_and_wait(self._tasks)
        self._buffer.clear()
        self._broker.forget(self)
        if self._tasks:
            # The acks the fetch loop held went to the settler when it stopped: applied
            # first, or RELEASE would hand their entries back to the group meanwhile (not
            # for long if Redis is unreachable: then they are redelivered at worst).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(ACKS_BEFORE_GIVE_BACK):
                    await self._broker.settler.drain()
            await self._give_back()

    def acknowledge(self, ref: Ref) -> None:
        """Queue the ack of the entry ``ref``; its lease ends now.

        Raises:
            BrokerUnavailable: the broker is closed (the entry is redelivered to the group).
        """
        self._broker.client  # noqa: B018  (raises BrokerUnavailable when not connected)
        self._acks.add(*ref)
        self._unsettled.discard(ref)
        self._room.set()

    async def settle(self, ref: Ref, commands: tuple[Command, ...]) -> None:
        """Apply a settlement of the entry ``ref``; its lease ends either way."""
        index, entry_id = ref
        settlement = Settlement(self._streams[index], self.group, entry_id, index == 0, commands)
        try:
            await self._broker.settler.apply(settlement)
        finally:
            self._unsettled.discard(ref)
            self._room.set()

    # -- background work

    def _start(self) -> None:
        name = f"queuekit-redis-{self.topic}-{self.group}"
        self._tasks = [
            asyncio.create_task(self._fetch_loop(), name=f"{name}-fetch"),
            asyncio.create_task(self._lease_loop(), name=f"{name}-leases"),
        ]

    @property
    def _leased(self) -> int:
        return len(self._buffer) + len(self._unsettled)

    async def _fetch_loop(self) -> None:
        """Fetch batch after batch; between two, the acks wait for the next one's write.

        The ack buffer is held from the start of a batch until the loop has to wait (for
        room, for a blocking read, after an error), so that acks arriving meanwhile reach
        Redis with the next write within about a round trip, and otherwise on their own.
        """
        backoff = Backoff()
        try:
            while not self._closed:
                try:
                    await self._wait_for_room()
                    self._acks.hold()
                    await self._fetch_batch()
                    backoff.reset()
                except TRANSIENT_ERRORS as exc:
                    self._acks.release()
                    logger.warning(
                        "redis consumer of %s/%s lost its connection, retrying: %s",
                        self.topic,
                        self.group,
                        exc,
                    )
                    await backoff.wait()
                except redis_errors.ResponseError as exc:
                    self._acks.release()
                    if not _group_is_gone(exc):
                        self._fail(exc)
                        return
                    # The streams are gone (Redis restarted without persistence, or deleted).
                    logger.warning("group %s of %s is gone; recreating it", self.group, self.topic)
                    await self._broker.ensure_group(self.topic, self.group)
                except Exception as exc:
                    self._fail(exc)
                    return
        finally:
            self._acks.release()

    def _fail(self, exc: Exception) -> None:
        """Stop consuming; the consumer's next ``__anext__`` raises a queuekit error."""
        logger.error("redis consumer of %s/%s stopped: %s", self.topic, self.group, exc)
        failure = BrokerError(f"consuming {self.topic}/{self.group} failed: {exc}")
        failure.__cause__ = exc
        self._failure = failure
        self._arrived.set()

    async def _wait_for_room(self) -> None:
        while True:
            free = self._prefetch - self._leased
            if free >= (1 if not self._buffer else self._refill_at):
                return
            self._acks.release()
            self._room.clear()
            await self._room.wait()

    async def _fetch_batch(self) -> None:
        free = min(self._prefetch - self._leased, self._refill_at)
        scripts, group = self._broker.scripts, self.group
        now = time.monotonic()
        claimed = 0
        if now >= self._next_claim:
            self._next_claim = now + self._broker.claim_interval
            reply = await run(
                scripts.autoclaim,
                list(self._streams),
                [group, self.consumer, self._broker.visibility_ms, free, CLAIM_SCANS],
            )
            claimed = self._accept(reply)
            free -= claimed
            if free <= 0:
                return
        plan, self._next_plan = self._next_plan, None
        if plan is None:
            plan = await run(scripts.plan, self._plan_keys, [group, _now_ms(), PROMOTE_LIMIT])
        next_due = float(plan[0]) / 1000 if plan[0] else math.inf
        if await self._read(free, [int(waiting) for waiting in plan[1:]]) or claimed:
            return
        wait = min(self._next_claim - time.monotonic(), next_due - time.time(), MAX_BLOCK)
        block_ms = max(1, math.ceil(wait * 1000))
        streams = self._stream_names
        block = [
            *self._read_prefix,
            b"1",
            b"BLOCK",
            b"%d" % block_ms,
            b"STREAMS",
            *streams,
            *([b">"] * len(streams)),
        ]
        # The queued acks go before the wait, those of the wait on their own; the plan
        # runs once the read returns.
        read, plan = await self._write_with_acks([block, self._plan_command()], hold=False)
        # NOSCRIPT or NOGROUP: the next batch plans on its own (see _read).
        self._next_plan = None if isinstance(plan, Exception) else plan
        if isinstance(read, Exception):
            raise read
        if read:
            positions = {key: index for index, key in enumerate(streams)}
            for stream, stream_entries in read:
                self._accept_new(positions[stream], stream_entries)

    async def _read(self, free: int, waiting: list[int]) -> int:
        """Read up to ``free`` new entries, taking the streams in read order.

        ``waiting`` is the PLAN script's count of undelivered entries per stream (-1:
        unknown). All reads go in one write, after the queued acks and before the next
        PLAN; returns how many deliveries were buffered.
        """
        commands: list[list[bytes]] = []
        positions: list[int] = []
        for index, count in enumerate(waiting):
            if free <= 0:
                break
            if count == 0:
                continue
            take = free if count < 0 else min(count, free)
            commands.append(
                [*self._read_prefix, b"%d" % take, b"STREAMS", self._stream_names[index], b">"]
            )
            positions.append(index)
            free -= take
        if not commands:
            return 0
        commands.append(self._plan_command())
        replies = await self._write_with_acks(commands, hold=True)
        plan = replies.pop()
        # NOSCRIPT (a restarted Redis) or NOGROUP: the next batch plans on its own and
        # recovers as it always does.
        self._next_plan = None if isinstance(plan, Exception) else plan
        accepted = 0
        for index, reply in zip(positions, replies, strict=True):
            if isinstance(reply, Exception):
                raise reply
            if reply:
                accepted += self._accept_new(index, reply[0][1])
        return accepted

    async def _write_with_acks(self, commands: list[list[bytes]], *, hold: bool) -> list[Any]:
        """Run ``commands`` after the queued acks, in one write; return their replies.

        ``hold``: acks arriving during the round trip wait for the next write (else the
        buffer is released to the settler first). Acks that may not have reached Redis
        when the write fails are handed to the settler, which retries them.
        """
        taken = self._acks.take()
        acks = acks_write(taken)
        if not hold:
            self._acks.release()
        try:
            replies = await run_packed(
                self._broker.client, pack_commands([*acks, *commands]), len(acks) + len(commands)
            )
        except BaseException:
            if taken:
                self._broker.settler.submit_commands(taken)
            raise
        try:
            check_replies(replies[: len(acks)])
        except redis_errors.ResponseError as exc:
            logger.warning("acks on %s were refused, to be redelivered: %s", self.topic, exc)
        return replies[len(acks) :]

    def _plan_command(self) -> list[bytes]:
        """The PLAN script as a command to send after the reads of a batch.

        Its counts (taken right after the reads) are what the next batch reads, which
        saves that batch a round trip of its own.
        """
        return [
            b"EVALSHA",
            self._broker.scripts.plan.sha.encode(),
            b"%d" % len(self._plan_keys),
            *self._plan_key_names,
            self._group_name,
            b"%d" % _now_ms(),
            b"%d" % PROMOTE_LIMIT,
        ]

    def _accept_new(self, index: int, read: Sequence[Any]) -> int:
        """Buffer deliveries of the entries XREADGROUP read from stream ``index``.

        The hot path: one decode and one delivery per entry, nothing else. Returns how many
        deliveries were buffered.
        """
        topic, stream, priority = self.topic, self._streams[index], self._priorities[index]
        decode, append = entries.decode, self._buffer.append
        accepted = 0
        for entry_id, fields in read:
            try:
                message = decode(topic, stream, entry_id, fields, priority=priority, deliveries=1)
            except entries.InvalidEntry as exc:
                self._reject_malformed((index, entry_id), fields, str(exc))
                continue
            append(RedisDelivery(self, (index, entry_id), message))
            accepted += 1
        if accepted:
            self._arrived.set()
        return accepted

    def _accept(self, flat: Sequence[Any]) -> int:
        """Buffer deliveries of AUTOCLAIM's flat reply (index, id, deliveries, fields...)."""
        accepted = 0
        for offset in range(0, len(flat), 4):
            index, entry_id = int(flat[offset]), flat[offset + 1]
            deliveries, fields = int(flat[offset + 2]), flat[offset + 3]
            ref = (index, entry_id)
            try:
                message = entries.decode(
                    self.topic,
                    self._streams[index],
                    entry_id,
                    fields,
                    priority=self._priorities[index],
                    deliveries=deliveries,
                )
            except entries.InvalidEntry as exc:
                self._reject_malformed(ref, fields, str(exc))
                continue
            self._buffer.append(RedisDelivery(self, ref, message))
            accepted += 1
        if accepted:
            self._arrived.set()
        return accepted

    def _reject_malformed(self, ref: Ref, fields: Sequence[bytes], why: str) -> None:
        """Dead-letter an entry that is not a message, so it never blocks the group."""
        logger.warning("dead-lettering a malformed entry of %s: %s", self.topic, why)
        message_id = f"{self._streams[ref[0]]}/{ref[1].decode()}"
        message = Message(self.topic, entries.salvage(fields), id=message_id)
        delivery = RedisDelivery(self, ref, message)
        self._unsettled.add(ref)
        task = asyncio.create_task(delivery.dead_letter("malformed-entry", error=why))
        task.add_done_callback(_log_failure)

    async def _lease_loop(self) -> None:
        broker = self._broker
        next_trim = time.monotonic() + broker.trim_interval
        while True:
            await asyncio.sleep(broker.extend_interval)
            try:
                await self._extend()
                if time.monotonic() >= next_trim:
                    next_trim = time.monotonic() + broker.trim_interval
                    await broker.trim(self.topic)
            except TRANSIENT_ERRORS as exc:
                logger.warning("could not extend leases on %s: %s", self.topic, exc)
            except redis_errors.ResponseError as exc:
                logger.warning("could not extend leases on %s: %s", self.topic, exc)

    async def _extend(self) -> None:
        held: dict[int, list[bytes]] = {}
        for index, entry_id in [d.ref for d in self._buffer] + list(self._unsettled):
            held.setdefault(index, []).append(entry_id)
        if not held:
            return
        keys: list[str] = []
        args: list[Any] = [self.group, self.consumer]
        for index, ids in held.items():
            keys.append(self._streams[index])
            args += (len(ids), *ids)
        lost = await run(self._broker.scripts.extend, keys, args)
        if lost:
            logger.warning(
                "%d deliveries of %s/%s outlived the visibility timeout and went to another "
                "consumer; they will be processed twice",
                len(lost) // 2,
                self.topic,
                self.group,
            )

    async def _give_back(self) -> None:
        """Return every entry this consumer holds but did not hand out (see RELEASE)."""
        keep = [f"{index}:{entry_id.decode()}" for index, entry_id in self._unsettled]
        try:
            await run(
                self._broker.scripts.release,
                list(self._streams),
                [self.group, self.consumer, GIVE_BACK_IDLE_MS, PARKING_CONSUMER, *keep],
            )
        except _GIVE_BACK_ERRORS as exc:
            logger.warning(
                "could not give back prefetched messages of %s/%s (they return after the "
                "visibility timeout): %s",
                self.topic,
                self.group,
                exc,
            )


def _group_is_gone(exc: redis_errors.ResponseError) -> bool:
    text = str(exc)
    return "NOGROUP" in text or "no longer exists" in text


def _now_ms() -> int:
    return int(time.time() * 1000)


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        logger.error("could not dead-letter a malformed entry: %s", task.exception())
