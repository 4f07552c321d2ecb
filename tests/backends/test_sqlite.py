"""SQLite-backend specifics; the shared behaviour is in tests/conformance/test_sqlite.py.

Here: the file itself (WAL, restart, retention, locking), several OS processes on one file,
a consumer killed with SIGKILL, lease heartbeats and group commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from queuekit.backends import create_broker
from queuekit.backends.sqlite import SqliteBroker, from_settings
from queuekit.backends.sqlite.schema import SCHEMA_VERSION
from queuekit.backends.sqlite.store import SqliteStore
from queuekit.errors import BrokerUnavailable
from queuekit.message import Message
from queuekit.settings import Settings

WAIT = 10.0
VISIBILITY_TIMEOUT = 1.0


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "queuekit.db"


@pytest.fixture
async def broker(path: Path) -> AsyncIterator[SqliteBroker]:
    async with SqliteBroker(path, visibility_timeout=VISIBILITY_TIMEOUT) as connected:
        yield connected


async def lag_becomes(
    broker: SqliteBroker, topic: str, lag: int, *, group: str = "default"
) -> None:
    """Wait (bounded) until ``group`` of ``topic`` has ``lag`` deliveries left.

    Acks are written just after ``ack()`` returns, so the file catches up a moment later.
    """

    async def group_lag() -> int:
        stats = await broker.topic_stats(topic)
        return next(g.lag for g in stats.groups if g.group == group)

    deadline = time.monotonic() + WAIT
    while (current := await group_lag()) != lag:
        assert time.monotonic() < deadline, f"lag of {group} stayed {current}, not {lag}"
        await asyncio.sleep(0.01)  # polling the file, not synchronizing with a task


def table_count(path: Path, table: str) -> int:
    with sqlite3.connect(path) as db:
        count: int = db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
    return count


# -- configuration and the file ------------------------------------------------------------


def test_from_settings_creates_the_folder_and_uses_the_visibility_timeout(
    tmp_path: Path,
) -> None:
    # Given settings pointing into a folder that does not exist yet
    settings = Settings(sqlite_path=str(tmp_path / "nested" / "q.db"), visibility_timeout=7.5)

    # When the registry builds the default backend
    broker = create_broker(settings)

    # Then it is a SQLite broker on that path, and the folder exists
    assert isinstance(broker, SqliteBroker)
    assert broker.path == tmp_path / "nested" / "q.db"
    assert broker.visibility_timeout == 7.5
    assert (tmp_path / "nested").is_dir()
    assert from_settings(settings).backend == "sqlite"
    assert broker.features.durable
    assert broker.features.cross_process


@pytest.mark.parametrize(
    "options",
    [
        {"visibility_timeout": 0},
        {"poll_interval": -1},
        {"busy_timeout": float("nan")},
        {"switch_interval": 0},
        {"switch_interval": 2.0},
    ],
)
def test_non_positive_timings_are_rejected(path: Path, options: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(options))):
        SqliteBroker(path, **options)


async def test_the_switch_interval_is_short_while_brokers_are_connected(path: Path) -> None:
    # Given the interpreter's default switch interval
    found = sys.getswitchinterval()
    first = SqliteBroker(path, switch_interval=1e-4)
    second = SqliteBroker(path, switch_interval=2e-4)
    alone = SqliteBroker(path, switch_interval=None)

    # When brokers connect and close, overlapping
    await alone.connect()
    during_alone = sys.getswitchinterval()
    await first.connect()
    await second.connect()
    during_both = sys.getswitchinterval()
    await first.close()
    after_first = sys.getswitchinterval()
    await second.close()
    await alone.close()

    # Then the shortest interval asked for holds while any of them is connected,
    # a broker without one leaves it alone, and the last to close restores it
    assert during_alone == found
    assert during_both == pytest.approx(1e-4)
    assert after_first == pytest.approx(2e-4)
    assert sys.getswitchinterval() == found


@pytest.mark.parametrize(("setting", "during"), [(2e-4, 2e-4), (0.0, None)])
async def test_sqlite_switch_interval_sets_the_interval_or_leaves_it_alone(
    path: Path, setting: float, during: float | None
) -> None:
    # Given SQLITE_SWITCH_INTERVAL set (0: leave the interpreter alone)
    found = sys.getswitchinterval()
    broker = from_settings(Settings(sqlite_path=str(path), sqlite_switch_interval=setting))

    # When the broker is connected, Then the interval is the setting, or untouched
    async with broker:
        assert sys.getswitchinterval() == pytest.approx(during or found)
    assert sys.getswitchinterval() == found


async def test_the_file_is_in_wal_mode(broker: SqliteBroker, path: Path) -> None:
    # Given a connected broker, When another connection inspects the file
    with sqlite3.connect(path) as db:
        mode = db.execute("PRAGMA journal_mode").fetchone()[0]

    # Then it uses write-ahead logging (readers never block the writer)
    assert mode == "wal"


async def test_a_path_that_cannot_be_opened_is_unavailable(tmp_path: Path) -> None:
    # Given a path in a folder that does not exist, and a file that is not a database
    missing_folder = SqliteBroker(tmp_path / "missing" / "q.db")
    not_a_database = tmp_path / "notes.txt"
    not_a_database.write_bytes(b"this is not SQLite, " * 100)

    # When connecting, Then the broker says it is unavailable
    with pytest.raises(BrokerUnavailable, match="cannot open"):
        await missing_folder.connect()
    with pytest.raises(BrokerUnavailable):
        await SqliteBroker(not_a_database).connect()


async def test_a_write_lock_held_too_long_makes_publish_unavailable(path: Path) -> None:
    # Given another connection holding the write lock, and a broker that waits 0.2 s for it
    async with SqliteBroker(path, busy_timeout=0.2) as broker:
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        try:
            # When it publishes, Then it gives up with BrokerUnavailable
            with pytest.raises(BrokerUnavailable, match="locked"):
                await broker.publish([Message.build("locked", 1)])
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()

        # And once the lock is gone it works again
        await broker.publish([Message.build("locked", 2)])


async def test_messages_survive_a_restart_on_the_same_file(path: Path) -> None:
    # Given messages with metadata published by a broker that is then closed
    sent = [
        Message.build("orders", {"n": 1}, headers={"trace": "a"}, key="k", priority=4),
        Message.build("orders", {"n": 2}),
    ]
    async with SqliteBroker(path) as first:
        await first.publish(sent)

    # When a new broker opens the file
    async with SqliteBroker(path) as second:
        sub = await second.subscribe("orders")
        async with asyncio.timeout(WAIT):
            received = [await anext(sub), await anext(sub)]
        for delivery in received:
            await delivery.ack()

    # Then every message is there, intact, as a first delivery
    assert [d.message for d in received] == [m.with_attempt(1) for m in sent]


async def test_a_publish_after_another_broker_deleted_the_topic_is_kept(
    broker: SqliteBroker, path: Path
) -> None:
    # Given a broker that has published to a topic (and remembers it has a queue)
    await broker.publish([Message.build("orders", "before")])

    # When another broker on the file deletes the topic, and the first publishes again
    async with SqliteBroker(path) as other:
        await other.delete_topic("orders")
        assert await other.list_topics() == []
    after = Message.build("orders", "after")
    await broker.publish([after])

    # Then the new message is stored in a fresh default group, and only it is delivered
    assert table_count(path, "deliveries") == 1
    sub = await broker.subscribe("orders")
    async with asyncio.timeout(WAIT):
        delivery = await anext(sub)
    await delivery.ack()
    assert delivery.message.id == after.id


async def test_a_message_leaves_the_file_once_every_group_settled_it(
    broker: SqliteBroker, path: Path
) -> None:
    # Given a message held by two groups (one copy each)
    subs = [await broker.subscribe("retained", group) for group in ("billing", "audit")]
    await broker.publish([Message.build("retained", 1)])
    assert table_count(path, "deliveries") == 2

    # When the first group acks it, Then the file still holds it for the second
    await (await asyncio.wait_for(anext(subs[0]), WAIT)).ack()
    await lag_becomes(broker, "retained", 0, group="billing")
    assert table_count(path, "deliveries") == 1

    # When the second group dead-letters it, Then only the dead letter remains
    await (await asyncio.wait_for(anext(subs[1]), WAIT)).dead_letter("bad")
    assert table_count(path, "deliveries") == 0
    assert table_count(path, "dead_letters") == 1


async def test_a_new_group_gets_one_copy_of_each_retained_message_in_order(
    broker: SqliteBroker,
) -> None:
    # Given three messages held by two groups, one of which already took the first
    billing = await broker.subscribe("shared", "billing")
    await broker.subscribe("shared", "audit")
    sent = [Message.build("shared", n) for n in range(3)]
    await broker.publish(sent)
    await (await asyncio.wait_for(anext(billing), WAIT)).ack()
    await lag_becomes(broker, "shared", 2, group="billing")

    # When a third group subscribes
    reports = await broker.subscribe("shared", "reports")
    async with asyncio.timeout(WAIT):
        received = [await anext(reports) for _ in range(3)]

    # Then it gets every message still retained by some group, once each, in publish order
    assert [d.message.id for d in received] == [m.id for m in sent]
    assert (await broker.topic_stats("shared")).groups[2].lag == 3


async def test_the_wal_is_copied_into_the_database_file_in_the_background(
    broker: SqliteBroker, path: Path
) -> None:
    # Given 100 messages published: far fewer pages than SQLite's automatic checkpoint needs
    await broker.publish([Message.build("checkpointed", n) for n in range(100)])

    # When a moment passes, Then they are in the database file itself (read without the WAL)
    def rows_in_the_file() -> int:
        uri = f"file:{path}?mode=ro&immutable=1"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as db:
            try:
                count: int = db.execute("SELECT count(*) FROM deliveries").fetchone()[0]
            except sqlite3.DatabaseError:  # no schema yet, or read while a checkpoint writes
                return 0
        return count

    deadline = time.monotonic() + WAIT
    while rows_in_the_file() < 100:
        assert time.monotonic() < deadline, "the WAL was not checkpointed"
        await asyncio.sleep(0.05)  # polling the file, not synchronizing with a task


async def test_dead_letters_survive_a_restart_and_replay_to_their_group(path: Path) -> None:
    # Given a message that group "billing" dead-lettered, in a broker that is then closed
    sent = Message.build("payments", {"amount": 5}, headers={"trace": "t"})
    async with SqliteBroker(path) as first:
        billing = await first.subscribe("payments", "billing")
        await first.publish([sent])
        await (await asyncio.wait_for(anext(billing), WAIT)).dead_letter("bad", error="E")

    # When a new broker on the file lists and replays the dead letters
    async with SqliteBroker(path) as second:
        [letter] = await second.dead_letters("payments")
        replayed = await second.replay_dead_letters("payments")
        delivery = await asyncio.wait_for(
            anext(await second.subscribe("payments", "billing")), WAIT
        )

    # Then the dead letter was kept with why it failed, and came back to "billing" as new
    assert (letter.message.id, letter.reason, letter.error, letter.group) == (
        sent.id,
        "bad",
        "E",
        "billing",
    )
    assert replayed == 1
    assert delivery.message == sent.with_attempt(1)


# -- leases ---------------------------------------------------------------------------------


async def test_closing_returns_prefetched_messages_without_counting_an_attempt(
    path: Path,
) -> None:
    # Given a consumer that claimed five messages and handed out only one
    async with (
        SqliteBroker(path, visibility_timeout=VISIBILITY_TIMEOUT) as first,
        SqliteBroker(path, visibility_timeout=VISIBILITY_TIMEOUT) as second,
    ):
        await first.publish([Message.build("prefetched", n) for n in range(5)])
        greedy = await first.subscribe("prefetched", prefetch=5)
        handed_out = await asyncio.wait_for(anext(greedy), WAIT)
        other = await second.subscribe("prefetched", prefetch=5)

        # When it closes
        await greedy.close()

        # Then the four it never handed out come at once, still as first deliveries
        async with asyncio.timeout(VISIBILITY_TIMEOUT / 2):
            returned = [await anext(other) for _ in range(4)]
        assert sorted(d.message.json() for d in returned) == [1, 2, 3, 4]
        assert {d.attempt for d in returned} == {1}
        # And the one it held comes back after its lease, as attempt 2
        retried = await asyncio.wait_for(anext(other), WAIT)
        assert (retried.message.id, retried.attempt) == (handed_out.message.id, 2)


async def test_a_slow_handler_keeps_its_lease(path: Path) -> None:
    # Given a consumer holding a message for three visibility timeouts
    async with (
        SqliteBroker(path, visibility_timeout=VISIBILITY_TIMEOUT) as holder,
        SqliteBroker(path, visibility_timeout=VISIBILITY_TIMEOUT) as rival,
    ):
        await holder.publish([Message.build("slow", "work")])
        held = await asyncio.wait_for(anext(await holder.subscribe("slow")), WAIT)
        rival_sub = await rival.subscribe("slow")

        # When a rival consumer of the group waits meanwhile
        # Then it gets nothing: the heartbeat keeps extending the lease
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(3 * VISIBILITY_TIMEOUT):
                await anext(rival_sub)
        stats = await holder.topic_stats("slow")
        assert (stats.in_flight, stats.groups[0].consumers) == (1, 2)
        await held.ack()


async def test_concurrent_publishes_share_transactions(broker: SqliteBroker) -> None:
    # Given a connected broker
    before = broker.write_transactions

    # When 200 single-message publishes run concurrently
    await asyncio.gather(*(broker.publish([Message.build("burst", n)]) for n in range(200)))

    # Then they were written in a handful of transactions, and all are stored
    assert broker.write_transactions - before <= 5
    assert (await broker.topic_stats("burst")).depth == 200


# -- several OS processes ------------------------------------------------------------------

_CONSUMER = """
import asyncio, hashlib, sys
from queuekit.backends.sqlite import SqliteBroker

async def main(path, topic):
    async with SqliteBroker(path, visibility_timeout=5.0) as broker:
        sub = await broker.subscribe(topic, "workers", prefetch=10)
        print("ready", flush=True)
        async for delivery in sub:
            hashlib.pbkdf2_hmac("sha256", delivery.message.payload, b"salt", 1000)  # ~1 ms of work
            await delivery.ack()
            print(delivery.message.id, delivery.attempt, flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""

_CRASHER = """
import asyncio, sys
from queuekit.backends.sqlite import SqliteBroker

async def main(path, topic):
    async with SqliteBroker(path, visibility_timeout=1.0) as broker:
        sub = await broker.subscribe(topic, prefetch=5)
        for _ in range(2):
            delivery = await anext(sub)
            await delivery.ack()
            print("acked", delivery.message.id, flush=True)
        delivery = await anext(sub)
        print("holding", delivery.message.id, flush=True)
        await asyncio.Event().wait()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def start_python(code: str, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, *args, stdout=asyncio.subprocess.PIPE
    )


async def read_line(process: asyncio.subprocess.Process) -> list[str]:
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), WAIT)
    assert line, f"process {process.pid} exited with {await process.wait()}"
    return line.decode().split()


async def stop(process: asyncio.subprocess.Process, sig: int = signal.SIGTERM) -> None:
    if process.returncode is None:
        process.send_signal(sig)
    await asyncio.wait_for(process.wait(), WAIT)


async def test_two_processes_share_the_work_without_loss_or_duplication(
    broker: SqliteBroker, path: Path
) -> None:
    # Given two consumer processes of one group on the file
    consumers = [await start_python(_CONSUMER, str(path), "shared") for _ in range(2)]
    try:
        for process in consumers:
            assert await read_line(process) == ["ready"]

        # When 300 messages are published
        sent = [Message.build("shared", n) for n in range(300)]
        await broker.publish(sent)

        # Then each message is handled once, as a first attempt, by one of them
        handled: dict[int, list[str]] = {process.pid: [] for process in consumers}

        async def gather_output(process: asyncio.subprocess.Process) -> None:
            while sum(map(len, handled.values())) < len(sent):
                message_id, attempt = await read_line(process)
                assert attempt == "1"
                handled[process.pid].append(message_id)

        async with asyncio.timeout(3 * WAIT):
            done, pending = await asyncio.wait(
                [asyncio.create_task(gather_output(p)) for p in consumers],
                return_when=asyncio.FIRST_COMPLETED,
            )
        for task in pending:
            task.cancel()
        for task in done:
            task.result()
    finally:
        # SIGINT: asyncio.run cancels the consumer, whose broker then writes its last acks
        for process in consumers:
            await stop(process, signal.SIGINT)

    ids = [message_id for pid_ids in handled.values() for message_id in pid_ids]
    assert sorted(ids) == sorted(m.id for m in sent)
    assert all(handled.values()), {pid: len(ids) for pid, ids in handled.items()}
    stats = await broker.topic_stats("shared")
    assert [(g.group, g.lag) for g in stats.groups] == [("workers", 0)]


async def test_messages_of_a_killed_consumer_are_redelivered_after_its_lease(
    broker: SqliteBroker, path: Path
) -> None:
    # Given a consumer process that claimed five messages, acked two and holds the third
    sent = [Message.build("crash", n) for n in range(5)]
    await broker.publish(sent)
    crasher = await start_python(_CRASHER, str(path), "crash")
    try:
        acked = {(await read_line(crasher))[1] for _ in range(2)}
        assert (await read_line(crasher))[0] == "holding"
    finally:
        # When it is killed with SIGKILL, mid-batch
        # (once its two acks are in the file: they are written just after ack() returns)
        await lag_becomes(broker, "crash", 3)
        await stop(crasher, signal.SIGKILL)
    assert crasher.returncode == -signal.SIGKILL

    # Then the three messages it did not ack come back, each with attempt 2
    sub = await broker.subscribe("crash", prefetch=5)
    async with asyncio.timeout(VISIBILITY_TIMEOUT + WAIT):
        redelivered = [await anext(sub) for _ in range(3)]
    assert sorted(d.message.id for d in redelivered) == sorted(
        m.id for m in sent if m.id not in acked
    )
    assert {d.attempt for d in redelivered} == {2}
    # And the acked ones do not
    for delivery in redelivered:
        await delivery.ack()
    await lag_becomes(broker, "crash", 0)


def test_a_claim_returns_only_its_own_rows_when_the_clock_stands_still(path: Path) -> None:
    # Given five messages and a consumer that already holds two of them
    store = SqliteStore.open(path, busy_timeout=1.0)
    try:
        queue = store.ensure_group("jobs", "default", owner="c1", seen_until=1e12, now=1000.0)
        store.insert_messages([Message.build("jobs", n) for n in range(5)], 1000.0)
        first = store.claim(queue, owner="c1", limit=2, now=1000.0, lease_until=1030.0).messages(
            "jobs"
        )

        # When it claims again at the same instant (its lease is only nudged later)
        second = store.claim(
            queue, owner="c1", limit=2, now=1000.0, lease_until=1030.0000000001
        ).messages("jobs")

        # Then the second claim returns the next two, never the ones already held
        assert [m.json() for _, m in first] == [0, 1]
        assert [m.json() for _, m in second] == [2, 3]
        assert all(m.attempt == 1 for _, m in first + second)
    finally:
        store.close()


# The tables every schema version has had, verbatim.
UNCHANGED_SINCE_V1 = """
CREATE TABLE consumers (
    owner TEXT PRIMARY KEY, topic TEXT NOT NULL, grp TEXT NOT NULL, seen_until REAL NOT NULL
) WITHOUT ROWID;
CREATE TABLE dead_letters (
    dl_seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL, id TEXT NOT NULL,
    payload BLOB NOT NULL, headers BLOB NOT NULL, key TEXT, priority INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX dead_letters_by_topic ON dead_letters (topic, dl_seq);
"""
# The layout of schema version 1 (queuekit 0.1.0 before the queue-id layout), verbatim.
SCHEMA_V1 = (
    """
CREATE TABLE messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, topic TEXT NOT NULL,
    payload BLOB NOT NULL, headers BLOB, key TEXT, priority INTEGER NOT NULL,
    not_before REAL, created_at REAL NOT NULL
);
CREATE INDEX messages_by_topic ON messages (topic, seq);
CREATE TABLE groups (
    topic TEXT NOT NULL, grp TEXT NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (topic, grp)
) WITHOUT ROWID;
CREATE TABLE deliveries (
    seq INTEGER NOT NULL, grp TEXT NOT NULL, topic TEXT NOT NULL, priority INTEGER NOT NULL,
    visible_at REAL NOT NULL, attempts INTEGER NOT NULL, lease_owner TEXT,
    PRIMARY KEY (seq, grp)
) WITHOUT ROWID;
CREATE INDEX deliveries_claim_order ON deliveries (topic, grp, priority DESC, seq, visible_at);
CREATE INDEX deliveries_due ON deliveries (topic, grp, visible_at);
"""
    + UNCHANGED_SINCE_V1
    + "PRAGMA user_version = 1;"
)


async def test_a_version_1_file_is_migrated_without_losing_anything(path: Path) -> None:
    # Given a version-1 file: a message pending for two groups (one already tried it once,
    # with priority 3) and a dead letter of group "audit"
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_V1)
        db.executemany(
            "INSERT INTO messages (seq, id, topic, payload, headers, key, priority, not_before,"
            " created_at) VALUES (?, ?, 'orders', ?, NULL, NULL, ?, NULL, 1.0)",
            [(1, "m1", b'{"n":1}', 0), (2, "m2", b'{"n":2}', 3)],
        )
        db.executemany(
            "INSERT INTO groups (topic, grp, created_at) VALUES ('orders', ?, 1.0)",
            [("default",), ("audit",)],
        )
        db.executemany(
            "INSERT INTO deliveries (seq, grp, topic, priority, visible_at, attempts)"
            " VALUES (?, ?, 'orders', ?, 0, ?)",
            [(1, "default", 0, 0), (2, "default", 3, 1), (2, "audit", 3, 0)],
        )
        db.execute(
            "INSERT INTO dead_letters (topic, id, payload, headers, key, priority, created_at)"
            " VALUES ('orders', 'm0', ?, ?, NULL, 0, 1.0)",
            (b"{}", b'{"x-dlq-group":"audit","x-dlq-reason":"bad","x-dlq-attempts":"3"}'),
        )

    # When a broker opens it
    async with SqliteBroker(path) as broker:
        default = await broker.subscribe("orders")
        audit = await broker.subscribe("orders", "audit")
        async with asyncio.timeout(WAIT):
            first, second = await anext(default), await anext(default)
            other = await anext(audit)
        # (a new group inherits each retained message once, m2 being held by two groups)
        reports = await broker.subscribe("orders", "reports", prefetch=5)
        async with asyncio.timeout(WAIT):
            inherited = [(await anext(reports)).message.id for _ in range(2)]
        stats = await broker.topic_stats("orders")
        letters = await broker.dead_letters("orders")

    # Then each group gets its deliveries in priority order with their attempts counted on
    assert [(first.message.id, first.attempt), (second.message.id, second.attempt)] == [
        ("m2", 2),
        ("m1", 1),
    ]
    assert (other.message.id, other.attempt, other.message.priority) == ("m2", 1, 3)
    assert sorted(inherited) == ["m1", "m2"]
    assert [(group.group, group.lag) for group in stats.groups] == [
        ("audit", 1),
        ("default", 2),
        ("reports", 2),
    ]
    assert [(letter.message.id, letter.reason) for letter in letters] == [("m0", "bad")]
    # And the file is at the current layout
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    assert set(CURRENT_DELIVERY_INDEXES) | {"queues", "deliveries"} <= names
    assert not {"groups", "messages", "deliveries_v1", "deliveries_due"} & names


# The layout of schema version 2 (queuekit 0.1.0 before partial indexes), verbatim.
SCHEMA_V2 = (
    """
CREATE TABLE queues (
    queue_id INTEGER PRIMARY KEY, topic TEXT NOT NULL, grp TEXT NOT NULL,
    created_at REAL NOT NULL, UNIQUE (topic, grp)
);
CREATE TABLE deliveries (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, queue_id INTEGER NOT NULL,
    priority INTEGER NOT NULL, visible_at REAL NOT NULL, attempts INTEGER NOT NULL,
    lease_owner TEXT, id TEXT NOT NULL, payload BLOB NOT NULL, headers BLOB, key TEXT,
    not_before REAL, created_at REAL NOT NULL, message_seq INTEGER
);
CREATE INDEX deliveries_claim_order ON deliveries (queue_id, priority DESC, seq, visible_at);
CREATE INDEX deliveries_due ON deliveries (queue_id, visible_at);
"""
    + UNCHANGED_SINCE_V1
    + "PRAGMA user_version = 2;"
)
CURRENT_DELIVERY_INDEXES = ("deliveries_ready", "deliveries_waiting", "deliveries_leased")


async def test_a_version_2_file_is_migrated_with_every_delivery_in_its_state(path: Path) -> None:
    # Given a version-2 file with four deliveries of one group: m1 ready, m2 delayed until a
    # moment ago, m3 leased by a consumer whose lease expired, m4 leased for another hour
    now = time.time()
    with sqlite3.connect(path) as db:
        db.executescript(SCHEMA_V2)
        db.execute("INSERT INTO queues VALUES (1, 'orders', 'default', 1.0)")
        db.executemany(
            "INSERT INTO deliveries (seq, queue_id, priority, visible_at, attempts, lease_owner,"
            " id, payload, not_before, created_at) VALUES (?, 1, 0, ?, ?, ?, ?, '{}', ?, 1.0)",
            [
                (1, 0.0, 0, None, "m1", None),
                (2, now - 1, 0, None, "m2", now - 1),
                (3, now - 1, 1, "dead", "m3", None),
                (4, now + 3600, 1, "alive", "m4", None),
            ],
        )

    # When a broker opens it and a consumer takes what it can
    async with SqliteBroker(path) as broker:
        consumer = await broker.subscribe("orders", prefetch=10)
        async with asyncio.timeout(WAIT):
            deliveries = [await anext(consumer) for _ in range(3)]
        stats = await broker.topic_stats("orders")

    # Then the ready, the due and the expired one come, in publish order, the expired one at
    # attempt 2; the one still leased does not, and is counted as in flight
    assert [(d.message.id, d.attempt) for d in deliveries] == [("m1", 1), ("m2", 1), ("m3", 2)]
    assert [(g.lag, g.in_flight) for g in stats.groups] == [(4, 4)]
    # And the file has the current indexes only
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        indexes = {
            row[0]
            for row in db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'deliveries'"
            )
        }
    assert indexes == set(CURRENT_DELIVERY_INDEXES)
