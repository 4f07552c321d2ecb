"""The thread that owns a ``confluent_kafka.Consumer`` for one subscription.

librdkafka's consumer is driven by one thread: it consumes in batches, runs the rebalance
callbacks (which must finish before the group moves on) and applies what the event loop asks
for through a command queue (commits, crash-safety marks, pauses). Records cross over to the
loop one batch at a time (``call_soon_threadsafe``), crash-safety marked already (see
:mod:`.marks`: a mark made here costs no round trip between the threads); a revoke runs a
coroutine on the loop and waits for it, so in-flight messages can finish and the handled
prefix is committed before the partitions move.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections.abc import Coroutine
from concurrent.futures import Future, InvalidStateError
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaException

from queuekit.backends.kafka.errors import describe, to_broker_error
from queuekit.backends.kafka.marks import Key, Mark, MarkBook
from queuekit.errors import ConnectionLost, QueuekitError

log = logging.getLogger(__name__)

CONSUME_BATCH = 1000
CONSUME_TIMEOUT = 0.1  # seconds the thread waits for a first record when idle
BUSY_CONSUME_TIMEOUT = 0.002  # ... while commands keep coming (marks wait for the thread)
BUSY_FOR = 1.0  # seconds after the last command that the thread stays quick to answer
COMMITTED_TIMEOUT = 30.0  # seconds to read committed offsets on an assignment

Command = tuple[str, list[Any], "Future[None] | None"]

Run = tuple[Key, list[Any]]
"""Consecutive records of one partition, as ``consume()`` returned them, in offset order."""


class Owner(Protocol):
    """What the consumer thread reports to (the subscription, on the event loop)."""

    topic: str
    group: str

    @property
    def closed(self) -> bool: ...

    def on_records(self, runs: list[Run], events: list[Any], marked: dict[Key, int]) -> None:
        """Take consumed records, split in runs of one partition, and the error or
        end-of-partition events among them; ``marked``: how far the marks of their
        partitions reach."""
        ...

    def assigned(self, keys: list[Key], suspects: dict[Key, Mark]) -> None: ...

    def revoke(self, keys: list[Key], *, lost: bool) -> Coroutine[Any, Any, tuple[list[Any], bool]]:
        """Hand partitions back; return (offsets to commit, every delivery settled)."""
        ...

    def fail(self, error: QueuekitError) -> None: ...

    def thread_finished(self) -> None: ...


class ConsumerThread:
    """Runs a consumer of ``topics`` for ``owner`` until :meth:`stop`."""

    def __init__(
        self,
        owner: Owner,
        config: dict[str, Any],
        topics: list[str],
        *,
        loop: asyncio.AbstractEventLoop,
        revoke_timeout: float,
    ) -> None:
        self._owner = owner
        self._topics = topics
        self._loop = loop
        self._revoke_timeout = revoke_timeout
        self._commands: queue.SimpleQueue[Command] = queue.SimpleQueue()
        self._book = MarkBook()  # this thread's only
        self._stopping = False
        self._last_command = 0.0
        try:
            self._consumer = Consumer(config)
        except KafkaException as exc:
            raise to_broker_error(exc, "creating a consumer") from exc
        self._thread = threading.Thread(
            target=self._run, name=f"queuekit-kafka-{owner.topic}-{owner.group}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Leave the group (revoking, and committing, what is assigned) and end the thread;
        the owner's ``thread_finished`` tells when it is done."""
        self._stopping = True

    def command(self, name: str, args: list[Any], done: Future[None] | None = None) -> None:
        """Queue ``commit`` / ``mark`` / ``probe`` / ``pause`` / ``resume`` for the thread;
        ``done`` is resolved once it was applied (or the thread ended)."""
        self._last_command = time.monotonic()
        self._commands.put((name, args, done))

    def release_waiters(self) -> None:
        """After the thread ended: resolve what is left, so nobody waits for it forever."""
        while True:
            try:
                _, _, done = self._commands.get_nowait()
            except queue.Empty:
                return
            _resolve(done)

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        consumer = self._consumer
        owner = self._owner
        try:
            consumer.subscribe(
                self._topics,
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
            while not self._stopping:
                self._apply_commands()
                busy = time.monotonic() - self._last_command < BUSY_FOR
                timeout = BUSY_CONSUME_TIMEOUT if busy else CONSUME_TIMEOUT
                try:
                    # Wait for the first record only, then take what is there: consume(n, t)
                    # alone waits until n records or t seconds, which held every record of
                    # an idle consumer for half of CONSUME_TIMEOUT on average.
                    first = consumer.poll(timeout)
                    records = (
                        [] if first is None else [first, *consumer.consume(CONSUME_BATCH - 1, 0)]
                    )
                except KafkaException as exc:
                    error = to_broker_error(exc, f"consuming {owner.topic}")
                    self._call(owner.fail, ConnectionLost(str(error)))
                    break
                if records and not owner.closed:  # a closing subscription drops records
                    runs, events = split_runs(records)
                    self._call(owner.on_records, runs, events, self._mark_fetched(runs))
            self._apply_commands()
        except Exception as exc:  # the thread must always report its end
            log.exception("kafka consumer thread of %s/%s failed", owner.topic, owner.group)
            self._call(owner.fail, ConnectionLost(f"kafka consumer failed: {exc}"))
        finally:
            try:
                consumer.close()  # revokes (and commits) what is still assigned
            except (KafkaException, RuntimeError) as exc:
                log.warning("closing kafka consumer of %s: %s", owner.topic, exc)
            self._call(owner.thread_finished)

    def _call(self, callback: Any, *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            self._loop.call_soon_threadsafe(callback, *args)

    def _apply_commands(self) -> None:
        consumer = self._consumer
        book = self._book
        while True:
            try:
                name, args, done = self._commands.get_nowait()
            except queue.Empty:
                return
            try:
                if name == "commit":
                    consumer.commit(offsets=book.with_marks(args), asynchronous=True)
                elif name in ("mark", "probe"):
                    [(key, offset, number)] = args
                    if name == "mark":
                        mark = book.mark(key, offset, number)
                    else:
                        mark = book.probe(key, offset, number)
                    if mark is not None:
                        consumer.commit(offsets=[mark], asynchronous=False)
                elif name == "pause":
                    consumer.pause(args)
                elif name == "resume":
                    consumer.resume(args)
            except KafkaException as exc:
                # A partition revoked meanwhile, or the coordinator moving: the next commit
                # (or the revoke's synchronous one) carries the same or a later position.
                log.debug("kafka %s of %s failed: %s", name, self._owner.topic, describe(exc))
            _resolve(done)

    def _mark_fetched(self, runs: list[Run]) -> dict[Key, int]:
        """Mark the records just fetched, with one synchronous commit for all their partitions,
        before the loop may deliver them; return how far each partition's mark now reaches
        (nothing if the commit failed: the loop then asks for marks itself)."""
        spans: dict[Key, list[int]] = {}
        for key, records in runs:
            span = spans.get(key)
            if span is None:
                spans[key] = [records[0].offset(), records[-1].offset()]
            else:
                span[1] = records[-1].offset()
        book = self._book
        marks = [
            mark
            for key, (first, last) in spans.items()
            if (mark := book.mark_fetched(key, first, last)) is not None
        ]
        if marks:
            try:
                self._consumer.commit(offsets=marks, asynchronous=False)
            except KafkaException as exc:
                log.debug("kafka mark of %s failed: %s", self._owner.topic, describe(exc))
                return {}
        return {key: book.reach(key) for key in spans}

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        try:
            committed = consumer.committed(partitions, timeout=COMMITTED_TIMEOUT)
            suspects = self._book.assigned(committed)
        except KafkaException as exc:
            log.warning("reading committed offsets of %s: %s", self._owner.topic, describe(exc))
            suspects = {}
        self._call(self._owner.assigned, keys, suspects)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        self._hand_back(consumer, partitions, lost=False)

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        self._hand_back(consumer, partitions, lost=True)

    def _hand_back(self, consumer: Any, partitions: list[Any], *, lost: bool) -> None:
        keys = [(tp.topic, tp.partition) for tp in partitions]
        revoke = self._owner.revoke(keys, lost=lost)
        try:
            future = asyncio.run_coroutine_threadsafe(revoke, self._loop)
        except RuntimeError:  # the loop is closed: nothing to finish, nothing to commit
            revoke.close()
            self._book.forget(keys)
            return
        try:
            offsets, all_settled = future.result(timeout=self._revoke_timeout)
        except Exception as exc:  # loop stuck: the group redelivers uncommitted ones
            log.warning("revoking %s from %s: %r", keys, self._owner.topic, exc)
            self._book.forget(keys)
            return
        self._apply_commands()  # earlier async commits go out before the final one
        final = [] if lost else self._book.hand_back(keys, offsets, clear=all_settled)
        if final:
            try:
                consumer.commit(offsets=final, asynchronous=False)
            except KafkaException as exc:
                log.warning("final commit of %s failed: %s", self._owner.topic, describe(exc))
        self._book.forget(keys)


def split_runs(records: list[Any]) -> tuple[list[Run], list[Any]]:
    """``consume()``'s records as runs of one partition, and its error or end-of-partition
    events: the one pass over every record that both the marks and the loop need."""
    runs: list[Run] = []
    events: list[Any] = []
    run: list[Any] = []
    run_topic: str | None = None
    run_partition = -1
    for record in records:
        if record.error() is not None:
            events.append(record)
            continue
        topic = record.topic()
        partition = record.partition()
        if partition != run_partition or topic != run_topic:
            run = []
            runs.append(((topic, partition), run))
            run_topic, run_partition = topic, partition
        run.append(record)
    return runs, events


def _resolve(done: Future[None] | None) -> None:
    if done is not None:
        with contextlib.suppress(InvalidStateError):  # its waiter was cancelled
            done.set_result(None)
