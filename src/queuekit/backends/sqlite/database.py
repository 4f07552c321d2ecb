"""The database thread: one sqlite3 connection, owned by one thread, called from asyncio.

sqlite3 calls block, so every call runs on a single-thread executor that owns the
connection; the event loop only awaits. sqlite3 errors are mapped onto queuekit's error tree
here, at the boundary.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

from queuekit.backends.sqlite.checkpoint import Checkpointer
from queuekit.backends.sqlite.store import SqliteStore
from queuekit.errors import BrokerError, BrokerUnavailable
from queuekit.interpreter import SWITCH_INTERVAL

T = TypeVar("T")

# Primary result codes meaning "the store cannot be used right now", not "it refused this".
_UNAVAILABLE_CODES = frozenset(
    {
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_NOTADB,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_READONLY,
    }
)


def map_error(exc: sqlite3.Error, failure: type[BrokerError]) -> BrokerError:
    """The queuekit error for a sqlite3 error: unavailable, or ``failure``."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(exc, sqlite3.ProgrammingError) or (
        code is not None and code & 0xFF in _UNAVAILABLE_CODES
    ):
        return BrokerUnavailable(f"SQLite store unavailable: {exc}")
    return failure(f"SQLite store failed: {exc}")


def _run(
    function: Callable[[SqliteStore], T],
    store: SqliteStore,
    checkpointer: Checkpointer,
    failure: type[BrokerError],
) -> T:
    """``function(store)`` on the database thread, its sqlite3 errors mapped."""
    try:
        return function(store)
    except sqlite3.Error as exc:
        raise map_error(exc, failure) from exc
    finally:
        checkpointer.wrote()


class Database:
    """A :class:`SqliteStore` on its own thread; ``call`` runs a function on it.

    While open it holds the interpreter's switch interval at ``switch_interval`` seconds
    at most (None leaves it alone), see :mod:`queuekit.interpreter`.
    """

    def __init__(
        self, path: Path, *, busy_timeout: float, switch_interval: float | None = None
    ) -> None:
        self.path = path
        self._busy_timeout = busy_timeout
        self._switch_interval = switch_interval
        self._executor: ThreadPoolExecutor | None = None
        self._store: SqliteStore | None = None
        self._checkpointer: Checkpointer | None = None

    @property
    def is_open(self) -> bool:
        """Whether the connection is open."""
        return self._store is not None

    @property
    def store(self) -> SqliteStore:
        """The open store (raises BrokerUnavailable when closed)."""
        if self._store is None:
            raise BrokerUnavailable(f"SQLite broker on {self.path} is not connected")
        return self._store

    async def open(self) -> None:
        """Start the thread and open the connection; idempotent.

        Raises:
            BrokerUnavailable: the file cannot be opened.
        """
        if self._store is not None:
            return
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="queuekit-sqlite")
        loop = asyncio.get_running_loop()
        try:
            self._store = await loop.run_in_executor(
                executor, lambda: SqliteStore.open(self.path, busy_timeout=self._busy_timeout)
            )
        except sqlite3.Error as exc:
            executor.shutdown(wait=False)
            raise BrokerUnavailable(f"cannot open SQLite store {self.path}: {exc}") from exc
        except BaseException:
            executor.shutdown(wait=False)
            raise
        self._executor = executor
        self._checkpointer = Checkpointer(self.path)
        self._checkpointer.start()
        if self._switch_interval is not None:
            SWITCH_INTERVAL.hold(self._switch_interval)

    async def call(
        self, function: Callable[[SqliteStore], T], *, failure: type[BrokerError] = BrokerError
    ) -> T:
        """Run ``function(store)`` on the database thread and return its result.

        Raises:
            BrokerUnavailable: not open, or SQLite busy/locked for longer than the busy
                timeout, or the file became unusable.
            failure: any other SQLite error.
        """
        return await self.submit(function, failure=failure)

    def submit(
        self, function: Callable[[SqliteStore], T], *, failure: type[BrokerError] = BrokerError
    ) -> asyncio.Future[T]:
        """Hand ``function(store)`` to the database thread now; its result comes later.

        Unlike a task that awaits :meth:`call`, the job is queued before this returns, not
        once the event loop gets round to the task's first step: a claim made ahead then
        runs while the loop handles the batch before it.

        Raises:
            BrokerUnavailable: not open (at once); the future fails as :meth:`call` does.
        """
        store = self.store
        assert self._executor is not None
        assert self._checkpointer is not None
        return asyncio.get_running_loop().run_in_executor(
            self._executor, _run, function, store, self._checkpointer, failure
        )

    async def close(self) -> None:
        """Close the connection and stop the thread; idempotent."""
        store, executor, checkpointer = self._store, self._executor, self._checkpointer
        self._store, self._executor, self._checkpointer = None, None, None
        if checkpointer is not None:
            await asyncio.to_thread(checkpointer.stop)
        if store is None or executor is None:
            return
        if self._switch_interval is not None:
            SWITCH_INTERVAL.let_go(self._switch_interval)
        try:
            await asyncio.get_running_loop().run_in_executor(executor, store.close)
        finally:
            executor.shutdown(wait=False)
