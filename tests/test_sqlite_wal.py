"""Switching a SQLite database to WAL while another connection holds it locked."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

import pytest

from queuekit import sqlite_wal
from queuekit.sqlite_wal import enable_wal


def test_enable_wal_tries_again_until_another_connection_lets_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a new database that another connection holds locked
    path = tmp_path / "queue.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    retried = threading.Event()

    class Clock:
        monotonic = staticmethod(time.monotonic)

        @staticmethod
        def sleep(seconds: float) -> None:
            retried.set()
            time.sleep(seconds)

    monkeypatch.setattr(sqlite_wal, "time", Clock)

    # When another connection enables WAL, and the lock is released once it has had to retry
    connection = sqlite3.connect(path, timeout=0.0, isolation_level=None, check_same_thread=False)
    modes: list[str] = []
    switching = threading.Thread(target=lambda: modes.append(enable_wal(connection, 10.0)))
    switching.start()
    assert retried.wait(10.0)
    holder.execute("COMMIT")
    switching.join(10.0)

    # Then it switched to WAL instead of failing with "database is locked"
    assert modes == ["wal"]
    holder.close()
    connection.close()


def test_enable_wal_gives_up_after_its_timeout(tmp_path: Path) -> None:
    # Given a database another connection keeps locked
    path = tmp_path / "queue.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    connection = sqlite3.connect(path, timeout=0.0, isolation_level=None)

    # When WAL is enabled with no time to wait, Then the lock is reported
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        enable_wal(connection, 0.0)
    holder.close()
    connection.close()
