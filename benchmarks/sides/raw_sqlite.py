"""SQLite by hand at its best, doing the work queuekit's SQLite backend promises.

A producer thread inserts batches in one transaction each, synchronous=FULL (durable on
return). A consumer thread claims up to PREFETCH ready rows with one ``UPDATE ... RETURNING``,
highest priority first, counting the attempt in the same transaction (a lease, so a crash
would not lose them, and a crash-looping message would still run out of attempts), handles
them, and deletes the batch in one transaction. Like queuekit, claims and deletions commit
with synchronous=NORMAL (losing the last ones to a power cut only means redeliveries),
and ``visible_at`` serves both delayed messages and leases, through one covering index.

What queuekit does on top, and this side does not: consumer groups (a delivery row per group),
message ids, headers, keys and creation times, dead letters.
"""

from __future__ import annotations

import sqlite3
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.workload import (
    PREFETCH,
    PUBLISH_BATCH,
    WARMUP,
    Stopwatch,
    encode,
    handle,
    payload,
    report,
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    payload BLOB NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    visible_at REAL NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_claim_order ON messages (priority DESC, id, visible_at);
"""
CLAIM = """
UPDATE messages SET visible_at = ?1, attempts = attempts + 1
WHERE id IN (
    SELECT id FROM messages WHERE visible_at <= ?2 ORDER BY priority DESC, id LIMIT ?3
)
RETURNING id, payload
"""


def connect(path: Path, *, synchronous: str = "FULL") -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute(f"PRAGMA synchronous = {synchronous}")
    return db


def produce(db: sqlite3.Connection, count: int, wake: threading.Event) -> None:
    body = payload()
    for first in range(0, count, PUBLISH_BATCH):
        rows = [(encode(body),) for _ in range(min(PUBLISH_BATCH, count - first))]
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO messages (payload) VALUES (?)", rows)
        db.execute("COMMIT")
        wake.set()


def consume(db: sqlite3.Connection, count: int, wake: threading.Event) -> None:
    handled = 0
    while handled < count:
        db.execute("BEGIN IMMEDIATE")
        now = time.time()
        claimed = db.execute(CLAIM, (now + 30, now, PREFETCH)).fetchall()
        db.execute("COMMIT")
        if not claimed:
            wake.wait(0.05)
            wake.clear()
            continue
        for _id, body in claimed:
            handle(body)
        db.execute("BEGIN IMMEDIATE")
        db.executemany("DELETE FROM messages WHERE id = ?", [(row[0],) for row in claimed])
        db.execute("COMMIT")
        handled += len(claimed)


def one_pass(path: Path, count: int) -> float:
    producer, consumer = connect(path), connect(path, synchronous="NORMAL")
    wake = threading.Event()
    clock = Stopwatch()
    clock.start()
    reader = threading.Thread(target=consume, args=(consumer, count, wake))
    reader.start()
    produce(producer, count, wake)
    reader.join()
    clock.stop()
    producer.close()
    consumer.close()
    return clock.seconds


def run(count: int) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-raw-sqlite-") as folder:
        path = Path(folder) / "raw.db"
        with connect(path) as db:
            db.executescript(SCHEMA)
        one_pass(path, WARMUP)
        report(count, one_pass(path, count))
