"""Switching a SQLite database to WAL while other connections may be doing the same.

``PRAGMA journal_mode = WAL`` needs an exclusive lock on the file, and SQLite answers
"database is locked" at once when another connection holds it, without waiting out the
connection's busy timeout. Two connections opening a new database together (two workers
starting on one queue file, two idempotency stores) failed that way 28 times in 600 tries.
"""

from __future__ import annotations

import sqlite3
import time

_RETRY_PAUSE = 0.005  # seconds between tries: the lock is held for one short transaction


def enable_wal(connection: sqlite3.Connection, timeout: float) -> str:
    """Put ``connection``'s database in WAL mode, trying again while it is locked, for up to
    ``timeout`` seconds; return the journal mode in force afterwards (``"wal"``, unless the
    file cannot use it). Blocks the calling thread.

    Raises:
        sqlite3.OperationalError: still locked after ``timeout``, or any other failure.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            return str(connection.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(_RETRY_PAUSE)
