"""WAL checkpoints on a thread of their own, off the database thread's path.

In WAL mode every commit appends pages to the ``-wal`` file; a checkpoint copies them back
into the database file and fsyncs it. SQLite's automatic checkpoint runs inside whichever
commit crosses its threshold, so every few thousand messages a claim or an ack would stall
on that copy and fsync while the event loop waits for it. Here a dedicated connection runs a
``PASSIVE`` checkpoint (it never blocks readers or writers, and they never wait for it) at
most every ``period`` seconds while there were writes. The store's connections keep a high
automatic threshold as a backstop should this thread fall behind.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

logger = logging.getLogger(__name__)


class Checkpointer:
    """Checkpoint the WAL of ``path`` in the background after writes, at most every ``period``.

    ``wrote`` may be called from any thread; ``start`` and ``stop`` from the owner.
    """

    def __init__(self, path: Path, *, period: float = 0.25) -> None:
        self.path = path
        self.period = period
        self.checkpoints = 0  # checkpoints run so far
        self._dirty = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="queuekit-sqlite-checkpoint", daemon=True
        )

    def start(self) -> None:
        """Start the thread (once)."""
        self._thread.start()

    def wrote(self) -> None:
        """Note that the WAL has grown: a checkpoint follows within ``period`` seconds."""
        self._dirty.set()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread, letting a checkpoint in progress finish (bounded by ``timeout``)."""
        self._stopping.set()
        self._dirty.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        try:
            connection = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as exc:
            logger.warning("no background checkpoints for %s: %s", self.path, exc)
            return
        try:
            while True:
                self._dirty.wait()
                if self._stopping.is_set():
                    return
                self._dirty.clear()
                try:
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.checkpoints += 1
                except sqlite3.Error as exc:  # the automatic checkpoint remains as a backstop
                    logger.warning("background checkpoint of %s failed: %s", self.path, exc)
                # Not synchronization: the pacing of checkpoints, so writes batch up between them.
                if self._stopping.wait(self.period):
                    return
        finally:
            connection.close()
