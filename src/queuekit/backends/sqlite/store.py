"""Every SQL statement of the SQLite backend, run synchronously by one thread.

Only the broker's database thread calls a :class:`SqliteStore` (a sqlite3 connection is not
shared between threads). Multi-statement writes run in ``BEGIN IMMEDIATE`` transactions, so
that several processes on one file queue on SQLite's write lock (``busy_timeout``) instead of
failing when a read transaction tries to upgrade; a lone write statement is a transaction of
its own that takes the lock up front in the same way. Times are wall-clock unix seconds,
shared by every process using the file.

Every statement is at least one ``sqlite3_step``, on which the database thread gives the
GIL away; taking it back from a busy event loop can wait up to the interpreter's switch
interval. So each batch is a handful of statements, never one per row: multi-row INSERTs,
``json_each`` lists of seqs, and a claim's rows read back in one aggregated row.
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, NamedTuple

import orjson

from queuekit.backends.sqlite.schema import (
    CONNECTION_PRAGMAS,
    DURABLE_PRAGMAS,
    MIGRATIONS,
    RELAXED_PRAGMAS,
    SCHEMA,
    SCHEMA_VERSION,
)
from queuekit.broker import GroupStats, TopicStats
from queuekit.errors import BrokerUnavailable
from queuekit.message import DEFAULT_GROUP, DLQ_GROUP, Message, dlq_topic, parse_dead_letter
from queuekit.sqlite_wal import enable_wal

# Same shape for both tables, so one row decoder serves both.
_DEAD_LETTER_COLUMNS = "dl_seq, id, topic, payload, headers, key, priority, NULL, created_at"


class Settlement(NamedTuple):
    """How one delivery was settled, to be written with others in one transaction.

    A named tuple: one is made per settled message, and a tuple is built in a fraction of
    the time of a frozen dataclass.

    Attributes:
        kind: ``ack`` deletes the delivery; ``nack`` unleases it until ``available_at``;
            ``dead_letter`` stores ``dead_letter`` (the message with ``x-dlq-*`` headers)
            and deletes the delivery.
        queue_id: the delivery's queue (its topic and group).
        seq: the delivery's sequence number.
        owner: the subscription that holds the lease (a nack by a consumer that lost its
            lease is ignored: another consumer owns that delivery now).
    """

    kind: Literal["ack", "nack", "dead_letter"]
    queue_id: int
    seq: int
    owner: str
    available_at: float = 0.0
    dead_letter: Message | None = None


_DELIVERY_COLUMNS = (
    "queue_id, priority, visible_at, attempts, id, payload, headers, key, not_before, created_at,"
    " message_seq"
)
# Rows per multi-row INSERT (one step for all of them, see the module docstring): SQLite
# allows 32766 parameters per statement since 3.32, 999 before; a row has 10.
_ROWS_PER_INSERT = 500 if sqlite3.sqlite_version_info >= (3, 32, 0) else 90


@functools.lru_cache(maxsize=16)
def _insert_deliveries_sql(rows: int) -> str:
    return f"INSERT INTO deliveries ({_DELIVERY_COLUMNS}) VALUES " + ",".join(
        ["(?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?)"] * rows
    )


def _delivery_rows(queue_id: int, messages: Sequence[Message], first_copy: int | None) -> list[Any]:
    """The parameters of :func:`_insert_deliveries_sql` for ``messages`` in one queue, flat.

    ``first_copy`` is the seq of the first message's first copy, the others following it
    (None when these rows are the first copies).
    """
    values: list[Any] = []
    for n, m in enumerate(messages):
        values += (
            queue_id,
            m.priority,
            m.not_before or 0.0,
            m.id,
            m.payload,
            _encode_headers(m),
            m.key,
            m.not_before,
            m.created_at,
            None if first_copy is None else first_copy + n,
        )
    return values


_DELETE_DELIVERIES = "DELETE FROM deliveries WHERE seq IN (SELECT value FROM json_each(?))"


def _encode_headers(message: Message) -> bytes | None:
    return orjson.dumps(dict(message.headers)) if message.headers else None


def _json_array(values: Iterable[Any]) -> str:
    """``values`` as JSON text for ``json_each`` (text: newer SQLite reads a BLOB as JSONB)."""
    return orjson.dumps(list(values)).decode()


def _statements(script: str) -> Iterator[str]:
    """The SQL statements of ``script`` (semicolons in comments and strings do not split)."""
    statement = ""
    for line in script.splitlines(keepends=True):
        statement += line
        if sqlite3.complete_statement(statement):
            yield statement.strip()
            statement = ""


# The rows a claim just leased, read in ONE step: their metadata as a JSON array (one
# [seq, id, payload length, headers, key, priority, not_before, created_at, attempts] per
# message) and their payloads concatenated in the same order. Row by row, each step would
# hand the GIL to the event loop and wait (up to the interpreter's switch interval) to get
# it back: measured, that convoy made a claim of 256 rows 3-15 times slower while the loop
# was busy. Reals travel as 17-digit text, which JSON's 15-digit reals would round.
_CLAIMED_BATCH = (
    "SELECT json_group_array(json_array(seq, id, length(payload),"
    " json(CAST(headers AS TEXT)), key, priority,"
    " iif(not_before IS NULL, NULL, printf('%!.17g', not_before)),"
    " printf('%!.17g', created_at), attempts)),"
    " CAST(group_concat(payload, '') AS BLOB)"
    " FROM deliveries INDEXED BY deliveries_leased"
    " WHERE queue_id = ? AND visible_at = ? AND lease_owner = ?"
)


class ClaimedRows(NamedTuple):
    """A claim's rows as :data:`_CLAIMED_BATCH` read them, decoded by ``messages``.

    Decoding is left to the caller: the event loop has time to spare while the database
    thread, the pipeline's bottleneck, goes on to its next statement.
    """

    leased: int
    metadata: str
    payloads: bytes

    def messages(self, topic: str) -> list[tuple[int, Message]]:
        """(seq, message) pairs in claim order (priority first, then seq)."""
        claimed: list[tuple[int, Message]] = []
        restore = Message.restore
        offset = 0
        for (
            seq,
            message_id,
            size,
            headers,
            key,
            priority,
            not_before,
            created_at,
            attempts,
        ) in orjson.loads(self.metadata):
            end = offset + size
            message = restore(
                topic,
                self.payloads[offset:end],
                message_id,
                headers or {},
                key,
                priority,
                None if not_before is None else float(not_before),
                attempts,
                float(created_at),
            )
            claimed.append((seq, message))
            offset = end
        claimed.sort(key=lambda item: (-item[1].priority, item[0]))
        return claimed


_NOTHING_CLAIMED = ClaimedRows(0, "[]", b"")

# Waiting rows that are due and leases that expired become ready (see schema.py): both are
# range scans of their partial index, empty most of the time.
_MAKE_DUE_READY = (
    "UPDATE deliveries SET lease_owner = NULL, visible_at = 0 WHERE seq IN ("
    " SELECT seq FROM deliveries INDEXED BY deliveries_waiting"
    "  WHERE queue_id = ?1 AND lease_owner IS NULL AND visible_at > 0 AND visible_at <= ?2"
    " UNION ALL SELECT seq FROM deliveries INDEXED BY deliveries_leased"
    "  WHERE queue_id = ?1 AND lease_owner IS NOT NULL AND visible_at <= ?2)"
)
# The head of the claim order: leased and waiting rows are not in deliveries_ready at all.
_CLAIM = (
    "UPDATE deliveries SET lease_owner = ?1, visible_at = ?2, attempts = attempts + 1"
    " WHERE seq IN ("
    "  SELECT seq FROM deliveries INDEXED BY deliveries_ready"
    "  WHERE queue_id = ?3 AND lease_owner IS NULL AND visible_at = 0"
    "  ORDER BY priority DESC, seq LIMIT ?4)"
)
_NEXT_VISIBLE = (
    "SELECT EXISTS (SELECT 1 FROM deliveries INDEXED BY deliveries_ready"
    "  WHERE queue_id = ?1 AND lease_owner IS NULL AND visible_at = 0),"
    " (SELECT min(visible_at) FROM deliveries INDEXED BY deliveries_waiting"
    "  WHERE queue_id = ?1 AND lease_owner IS NULL AND visible_at > 0),"
    " (SELECT min(visible_at) FROM deliveries INDEXED BY deliveries_leased"
    "  WHERE queue_id = ?1 AND lease_owner IS NOT NULL)"
)


def _message_from_row(row: Sequence[Any], attempt: int = 1) -> Message:
    """The message of a row in the :data:`_DEAD_LETTER_COLUMNS` layout."""
    headers = row[4]
    return Message.restore(
        row[2],
        row[3],
        row[1],
        orjson.loads(headers) if headers else {},
        row[5],
        row[6],
        row[7],
        attempt,
        row[8],
    )


class SqliteStore:
    """The backend's tables on two connections to one file, both used by one thread.

    Publishes commit on a connection with synchronous=FULL (durable when they return);
    everything else on one with synchronous=NORMAL: losing the last claims or settlements
    to a power cut means redeliveries, which at-least-once allows (and a later durable
    commit syncs the whole WAL, hardening every relaxed commit before it). Two connections
    instead of switching one's ``synchronous`` back and forth, which costs statements.

    ``write_transactions`` counts committed write transactions (group commit shows in it).
    """

    def __init__(self, connection: sqlite3.Connection, durable: sqlite3.Connection) -> None:
        self._db = connection
        self._durable = durable
        self.write_transactions = 0
        # Topics seen with a queue, so that only a topic's first publish through this store
        # looks for a group to create; a topic deleted since (by any process) is noticed by
        # the publish that finds it without a queue.
        self._topics_with_queues: set[str] = set()

    @classmethod
    def open(cls, path: Path, *, busy_timeout: float) -> SqliteStore:
        """Open (creating if needed) the database at ``path`` in WAL mode with the schema.

        Raises:
            BrokerUnavailable: the file cannot be opened or is not a queuekit database.
            sqlite3.Error: other failures (mapped by the caller).
        """
        connections: list[sqlite3.Connection] = []
        try:
            for pragmas in (RELAXED_PRAGMAS, DURABLE_PRAGMAS):
                connection = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
                connections.append(connection)
                mode = enable_wal(connection, busy_timeout)
                for pragma in (*CONNECTION_PRAGMAS, *pragmas):
                    connection.execute(pragma)
                if mode != "wal":
                    raise BrokerUnavailable(f"{path}: cannot use WAL journal mode (got {mode!r})")
            store = cls(*connections)
            store._migrate()
        except BaseException:
            for connection in connections:
                connection.close()
            raise
        return store

    def _migrate(self) -> None:
        with self._write():
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise BrokerUnavailable(
                    f"database schema version {version} is newer than this queuekit "
                    f"({SCHEMA_VERSION}): upgrade queuekit"
                )
            for old_version in range(max(version, 1), SCHEMA_VERSION) if version else ():
                for statement in MIGRATIONS[old_version]:
                    self._db.execute(statement)
            # executescript would commit our transaction; run statements one by one.
            for statement in _statements(SCHEMA):
                self._db.execute(statement)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    def close(self) -> None:
        """Close the connections (a last checkpoint happens if no one else uses the file)."""
        try:
            self._durable.close()
        finally:
            self._db.close()

    def ping(self) -> None:
        """Run a trivial query."""
        self._db.execute("SELECT 1").fetchone()

    @contextmanager
    def _write(self, *, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """A write transaction; ``durable`` ones are fsynced before COMMIT returns."""
        db = self._durable if durable else self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            # commit() prepares and steps COMMIT in one release of the GIL; execute("COMMIT")
            # releases it three times, and each time the thread must win it back.
            db.commit()
        except BaseException:
            if db.in_transaction:
                db.rollback()
            raise
        self.write_transactions += 1

    # -- publishing -----------------------------------------------------------------------

    def insert_messages(self, messages: Sequence[Message], now: float) -> set[str]:
        """Store each message once per group of its topic, atomically.

        A topic without any group gets the default group first. Returns the topics.
        """
        by_topic: dict[str, list[Message]] = {}
        for message in messages:
            by_topic.setdefault(message.topic, []).append(message)
        new_topics = by_topic.keys() - self._topics_with_queues
        with self._write(durable=True) as db:
            if new_topics:
                self._create_default_queues(db, new_topics, now)
            queues = self._queues_of(db, by_topic)
            deleted = by_topic.keys() - {topic for topic, _ in queues}
            if deleted:  # deleted since this store saw them: they start afresh
                self._create_default_queues(db, deleted, now)
                queues = self._queues_of(db, by_topic)
            first_copies: dict[tuple[str, int], int] = {}  # (topic, chunk start) -> seq
            for topic, queue_id in queues:
                batch = by_topic[topic]
                for start in range(0, len(batch), _ROWS_PER_INSERT):
                    chunk = batch[start : start + _ROWS_PER_INSERT]
                    first_copy = first_copies.get((topic, start))
                    cursor = db.execute(
                        _insert_deliveries_sql(len(chunk)),
                        _delivery_rows(queue_id, chunk, first_copy),
                    )
                    if first_copy is None:
                        # One statement under our write lock: its rows got consecutive seqs.
                        assert cursor.lastrowid is not None
                        first_copies[topic, start] = cursor.lastrowid - len(chunk) + 1
        self._topics_with_queues.update(by_topic)
        return set(by_topic)

    @staticmethod
    def _create_default_queues(db: sqlite3.Connection, topics: Iterable[str], now: float) -> None:
        """The default group's queue of each of ``topics`` that has no queue at all."""
        db.executemany(
            "INSERT INTO queues (topic, grp, created_at) SELECT ?1, ?2, ?3"
            " WHERE NOT EXISTS (SELECT 1 FROM queues WHERE topic = ?1)",
            [(topic, DEFAULT_GROUP, now) for topic in topics],
        )

    @staticmethod
    def _queues_of(db: sqlite3.Connection, topics: Iterable[str]) -> list[tuple[str, int]]:
        """(topic, queue id) of every group of ``topics``, in queue id order."""
        rows: list[tuple[str, int]] = db.execute(
            "SELECT topic, queue_id FROM queues"
            " WHERE topic IN (SELECT value FROM json_each(?)) ORDER BY queue_id",
            (_json_array(topics),),
        ).fetchall()
        return rows

    # -- consuming ------------------------------------------------------------------------

    def ensure_group(
        self, topic: str, group: str, *, owner: str, seen_until: float, now: float
    ) -> int:
        """Create ``group`` if new, giving it every message ``topic`` still retains.

        Also registers ``owner`` as a consumer of the group until ``seen_until``. Returns
        the group's queue id.
        """
        with self._write():
            queue_id = self._create_queue(topic, group, now)
            self._touch_consumer(owner, topic, group, seen_until, now)
        return queue_id

    def _create_queue(self, topic: str, group: str, now: float) -> int:
        """The queue id of (topic, group), creating it with the topic's retained messages.

        A message is retained while any group of the topic has not settled it; the new
        group gets one copy of each, in publish order (see ``message_seq``).
        """
        created = self._db.execute(
            "INSERT OR IGNORE INTO queues (topic, grp, created_at) VALUES (?, ?, ?)",
            (topic, group, now),
        ).rowcount
        queue_id: int = self._db.execute(
            "SELECT queue_id FROM queues WHERE topic = ? AND grp = ?", (topic, group)
        ).fetchone()[0]
        if created:
            self._db.execute(
                f"INSERT INTO deliveries ({_DELIVERY_COLUMNS})"
                " SELECT ?1, priority, coalesce(not_before, 0), 0, id, payload, headers, key,"
                " not_before, created_at, coalesce(message_seq, seq) FROM deliveries"
                " WHERE seq IN ("
                "   SELECT min(seq) FROM deliveries WHERE queue_id IN ("
                "     SELECT queue_id FROM queues WHERE topic = ?2 AND queue_id != ?1)"
                "   GROUP BY coalesce(message_seq, seq))"
                " ORDER BY coalesce(message_seq, seq)",
                (queue_id, topic),
            )
        return queue_id

    def _touch_consumer(
        self, owner: str, topic: str, group: str, seen_until: float, now: float
    ) -> None:
        self._db.execute(
            "INSERT INTO consumers (owner, topic, grp, seen_until) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (owner) DO UPDATE SET seen_until = excluded.seen_until",
            (owner, topic, group, seen_until),
        )
        self._db.execute("DELETE FROM consumers WHERE seen_until < ?", (now,))

    def next_visible(self, queue_id: int) -> float | None:
        """When the queue's next delivery becomes claimable (may be in the past), or None.

        0.0 when a delivery is ready now; otherwise the earliest due time of a waiting
        delivery or of a lease.
        """
        ready, waiting, leased = self._db.execute(_NEXT_VISIBLE, (queue_id,)).fetchone()
        if ready:
            return 0.0
        due = [value for value in (waiting, leased) if value is not None]
        return min(due) if due else None

    def claim(
        self,
        queue_id: int,
        *,
        owner: str,
        limit: int,
        now: float,
        lease_until: float,
        make_due_ready: bool = True,
    ) -> ClaimedRows:
        """Lease up to ``limit`` claimable deliveries to ``owner``, by priority then seq.

        Claimable: ready, and (with ``make_due_ready``) waiting until ``now`` or earlier or
        leased until ``now`` or earlier (their consumer died). The attempt count is
        incremented here, in the same statement, so a consumer that crashes while handling
        a message still used up an attempt. ``lease_until`` must differ from the lease of
        every delivery ``owner`` already holds (a subscription's leases only grow): it is how
        this claim's rows are found again.
        """
        # Each statement is a transaction of its own: nobody else touches rows leased to
        # us, and making due rows ready twice (a concurrent claim) changes nothing.
        if make_due_ready:
            self._db.execute(_MAKE_DUE_READY, (queue_id, now))
            self.write_transactions += 1
        leased = self._db.execute(_CLAIM, (owner, lease_until, queue_id, limit)).rowcount
        self.write_transactions += 1
        if not leased:
            return _NOTHING_CLAIMED
        metadata, payloads = self._db.execute(
            _CLAIMED_BATCH, (queue_id, lease_until, owner)
        ).fetchone()
        return ClaimedRows(leased, metadata, payloads)

    def extend_leases(
        self,
        topic: str,
        group: str,
        *,
        owner: str,
        seqs: Iterable[int],
        lease_until: float,
        now: float,
    ) -> None:
        """Push the leases ``owner`` holds on ``seqs`` to ``lease_until``; mark it alive."""
        with self._write() as db:
            db.execute(
                "UPDATE deliveries SET visible_at = ?"
                " WHERE seq IN (SELECT value FROM json_each(?)) AND lease_owner = ?",
                (lease_until, _json_array(seqs), owner),
            )
            self._touch_consumer(owner, topic, group, lease_until, now)

    def release(self, *, owner: str, seqs: Iterable[int]) -> None:
        """Give back deliveries claimed but never handed out: claimable now, attempt undone.

        Also forgets ``owner`` as a consumer.
        """
        with self._write() as db:
            db.execute(
                "UPDATE deliveries"
                " SET lease_owner = NULL, visible_at = 0, attempts = max(attempts - 1, 0)"
                " WHERE seq IN (SELECT value FROM json_each(?)) AND lease_owner = ?",
                (_json_array(seqs), owner),
            )
            db.execute("DELETE FROM consumers WHERE owner = ?", (owner,))

    def ack(self, seqs: Iterable[int]) -> None:
        """Delete the deliveries ``seqs`` (handled): one statement, its own transaction."""
        self._db.execute(_DELETE_DELIVERIES, (_json_array(seqs),))
        self.write_transactions += 1

    def settle(self, settlements: Sequence[Settlement]) -> None:
        """Apply acks, nacks and dead-letterings in one transaction (see also ``ack``)."""
        nacks = [s for s in settlements if s.kind == "nack"]
        dead = [s for s in settlements if s.dead_letter is not None]
        removed = _json_array(s.seq for s in settlements if s.kind != "nack")
        with self._write() as db:
            if dead:
                db.executemany(
                    "INSERT INTO dead_letters"
                    " (topic, id, payload, headers, key, priority, created_at)"
                    " SELECT ?, ?, ?, ?, ?, ?, ?"
                    " WHERE EXISTS (SELECT 1 FROM deliveries WHERE seq = ?)",
                    [self._dead_letter_row(s) for s in dead],
                )
            if nacks:
                db.executemany(
                    "UPDATE deliveries SET lease_owner = NULL, visible_at = ?"
                    " WHERE seq = ? AND lease_owner = ?",
                    [(s.available_at, s.seq, s.owner) for s in nacks],
                )
            db.execute(_DELETE_DELIVERIES, (removed,))

    @staticmethod
    def _dead_letter_row(settlement: Settlement) -> tuple[Any, ...]:
        message = settlement.dead_letter
        assert message is not None
        return (
            message.topic,
            message.id,
            message.payload,
            orjson.dumps(dict(message.headers)),
            message.key,
            message.priority,
            message.created_at,
            settlement.seq,
        )

    # -- administration -------------------------------------------------------------------

    def list_topics(self) -> list[str]:
        """Every topic with at least one group, sorted."""
        rows = self._db.execute("SELECT DISTINCT topic FROM queues ORDER BY topic").fetchall()
        return [row[0] for row in rows]

    def topic_stats(self, topic: str, now: float) -> TopicStats:
        """Per-group counts of ``topic`` and the size of its dead-letter queue."""
        rows = self._db.execute(
            "SELECT q.grp,"
            " count(d.seq) FILTER (WHERE d.visible_at <= ?2),"
            " count(d.seq) FILTER (WHERE d.visible_at > ?2 AND d.lease_owner IS NOT NULL),"
            " count(d.seq) FILTER (WHERE d.visible_at > ?2 AND d.lease_owner IS NULL),"
            " count(d.seq),"
            " (SELECT count(*) FROM consumers AS c"
            "  WHERE c.topic = q.topic AND c.grp = q.grp AND c.seen_until > ?2)"
            " FROM queues AS q LEFT JOIN deliveries AS d ON d.queue_id = q.queue_id"
            " WHERE q.topic = ?1 GROUP BY q.grp ORDER BY q.grp",
            (topic, now),
        ).fetchall()
        dead = self._db.execute(
            "SELECT count(*) FROM dead_letters WHERE topic = ?", (topic,)
        ).fetchone()[0]
        groups = tuple(GroupStats(*row) for row in rows)
        return TopicStats(topic=topic, groups=groups, dead_letters=dead)

    def purge(self, topic: str, now: float) -> int:
        """Delete every delivery of ``topic`` that is not leased; return how many."""
        with self._write() as db:
            purged: int = db.execute(
                "DELETE FROM deliveries"
                " WHERE queue_id IN (SELECT queue_id FROM queues WHERE topic = ?)"
                " AND (lease_owner IS NULL OR visible_at <= ?)",
                (topic, now),
            ).rowcount
        return purged

    def dead_letters(self, topic: str, limit: int) -> list[Message]:
        """The oldest ``limit`` dead letters of ``topic`` as ``<topic>.dlq`` messages."""
        rows = self._db.execute(
            f"SELECT {_DEAD_LETTER_COLUMNS} FROM dead_letters"
            " WHERE topic = ? ORDER BY dl_seq LIMIT ?",
            (topic, limit),
        ).fetchall()
        messages = [_message_from_row(row) for row in rows]
        return [
            Message(
                topic=dlq_topic(m.topic),
                payload=m.payload,
                id=m.id,
                headers=m.headers,
                key=m.key,
                priority=m.priority,
                created_at=m.created_at,
            )
            for m in messages
        ]

    def replay_dead_letters(
        self, topic: str, ids: Sequence[str] | None, now: float
    ) -> list[tuple[str, str]]:
        """Move dead letters back to the group that failed them, at attempt 0 (next is 1).

        Returns the (topic, group) of each replayed message.
        """
        query = f"SELECT {_DEAD_LETTER_COLUMNS} FROM dead_letters"
        with self._write() as db:
            if ids is None:
                rows = db.execute(query + " WHERE topic = ? ORDER BY dl_seq", (topic,))
            else:
                rows = db.execute(
                    query + " WHERE topic = ? AND id IN (SELECT value FROM json_each(?))"
                    " ORDER BY dl_seq",
                    (topic, _json_array(list(ids))),
                )
            replayed: list[tuple[str, str]] = []
            dl_seqs: list[tuple[int]] = []
            for row in rows.fetchall():
                dl_seqs.append((row[0],))
                stored = _message_from_row((row[0], row[1], dlq_topic(topic), *row[3:]))
                group = stored.headers.get(DLQ_GROUP, DEFAULT_GROUP)
                original = parse_dead_letter(stored).message
                db.execute(
                    "INSERT OR IGNORE INTO queues (topic, grp, created_at) VALUES (?, ?, ?)",
                    (topic, group, now),
                )
                db.execute(
                    f"INSERT INTO deliveries ({_DELIVERY_COLUMNS})"
                    " SELECT queue_id, ?, 0, 0, ?, ?, ?, ?, NULL, ?, NULL"
                    " FROM queues WHERE topic = ? AND grp = ?",
                    (
                        original.priority,
                        original.id,
                        original.payload,
                        _encode_headers(original),
                        original.key,
                        original.created_at,
                        topic,
                        group,
                    ),
                )
                replayed.append((topic, group))
            db.executemany("DELETE FROM dead_letters WHERE dl_seq = ?", dl_seqs)
        return replayed

    def purge_dead_letters(self, topic: str) -> int:
        """Delete every dead letter of ``topic``; return how many."""
        with self._write() as db:
            deleted: int = db.execute("DELETE FROM dead_letters WHERE topic = ?", (topic,)).rowcount
        return deleted

    def delete_topic(self, topic: str) -> None:
        """Delete ``topic``'s groups with every delivery in them (leased ones too), their
        consumers' registrations and its dead letters, in one transaction."""
        with self._write(durable=True) as db:
            db.execute(
                "DELETE FROM deliveries"
                " WHERE queue_id IN (SELECT queue_id FROM queues WHERE topic = ?)",
                (topic,),
            )
            db.execute("DELETE FROM queues WHERE topic = ?", (topic,))
            db.execute("DELETE FROM consumers WHERE topic = ?", (topic,))
            db.execute("DELETE FROM dead_letters WHERE topic = ?", (topic,))
        self._topics_with_queues.discard(topic)
