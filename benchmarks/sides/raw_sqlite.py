"""SQLite by hand at its best: WAL, synchronous=FULL, batched inserts, batched claim and ack.

A producer thread inserts batches in one transaction each. A consumer thread claims up to
PREFETCH ready rows with one ``UPDATE ... RETURNING`` (a lease, so a crash would not lose
them), handles them, and deletes the batch in one transaction. Same durability as queuekit's
SQLite backend: every commit is synchronous.
"""

from __future__ import annotations

import sqlite3
import tempfile
import threading
import time
from pathlib import Path

from benchmarks.workload import PAYLOAD, PREFETCH, PUBLISH_BATCH, WARMUP, Stopwatch, handle, report

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY,
    payload BLOB NOT NULL,
    lease_until REAL
);
"""
CLAIM = """
UPDATE messages SET lease_until = ?
WHERE id IN (SELECT id FROM messages WHERE lease_until IS NULL ORDER BY id LIMIT ?)
RETURNING id, payload
"""


def connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    return db


def produce(db: sqlite3.Connection, count: int, wake: threading.Event) -> None:
    for first in range(0, count, PUBLISH_BATCH):
        rows = [(PAYLOAD,)] * min(PUBLISH_BATCH, count - first)
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO messages (payload) VALUES (?)", rows)
        db.execute("COMMIT")
        wake.set()


def consume(db: sqlite3.Connection, count: int, wake: threading.Event) -> None:
    handled = 0
    while handled < count:
        db.execute("BEGIN IMMEDIATE")
        claimed = db.execute(CLAIM, (time.time() + 30, PREFETCH)).fetchall()
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
    producer, consumer = connect(path), connect(path)
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
