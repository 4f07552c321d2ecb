"""Idempotency stores: remember which messages were processed, so a redelivery is skipped.

The protocol is a *claim*, safe with concurrent duplicates across processes:

1. ``begin(key, token, lease)`` atomically claims ``key`` for the caller (who picks a unique
   ``token``) for ``lease`` seconds and answers :class:`ClaimState`:
   ``CLAIMED`` (go ahead), ``DONE`` (processed before: skip) or ``BUSY`` (someone else holds
   a live claim: ask again later; the claim frees itself when its lease runs out, so a
   consumer that crashed mid-handler does not block the key forever).
2. After handling: ``complete(key, token)`` remembers the key as done for the store's
   ``ttl``; after a failure: ``release(key, token)`` frees the claim at once (only if the
   caller still holds it) so a retry can claim it.

Every store batches: concurrent calls share one transaction (SQLite) or one pipeline (Redis).
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import enum
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from queuekit.batching import GroupCommitter
from queuekit.errors import BackendNotInstalled, ConfigError, QueuekitError
from queuekit.settings import Settings
from queuekit.sqlite_wal import enable_wal

if TYPE_CHECKING:
    from redis.asyncio import Redis

__all__ = [
    "DEFAULT_TTL",
    "ClaimState",
    "IdempotencyStore",
    "IdempotencyStoreError",
    "MemoryIdempotencyStore",
    "RedisIdempotencyStore",
    "SqliteIdempotencyStore",
    "create_idempotency_store",
]

DEFAULT_TTL = 7 * 24 * 3600.0
"""How long a processed key is remembered by default: a week of redeliveries and replays."""

_log = logging.getLogger("queuekit.idempotency")


class IdempotencyStoreError(QueuekitError):
    """The idempotency store could not be read or written."""


class ClaimState(enum.Enum):
    """The answer of :meth:`IdempotencyStore.begin`."""

    CLAIMED = "claimed"
    DONE = "done"
    BUSY = "busy"


class IdempotencyStore(abc.ABC):
    """Where processed keys are remembered. See the module docstring for the protocol.

    Keys are opaque strings; callers scope them (the worker uses ``topic/group/key``).
    """

    ttl: float

    @abc.abstractmethod
    async def begin(
        self, key: str, token: str, lease: float, *, take_over: bool = False
    ) -> ClaimState:
        """Claim ``key`` for ``token`` for ``lease`` seconds unless it is done or claimed.

        Calling it again with the token that holds the claim answers ``CLAIMED`` again.
        With ``take_over``, a live claim of another token is replaced (a done key stays
        done): the worker does this for a *redelivered* message, because a broker only
        redelivers once the previous holder gave the message up or died, and a dead
        holder's claim must not block the redelivery until its lease runs out.
        """

    @abc.abstractmethod
    async def complete(self, key: str, token: str) -> None:
        """Remember ``key`` as processed for ``ttl`` seconds (whoever holds the claim now)."""

    @abc.abstractmethod
    async def release(self, key: str, token: str) -> None:
        """Drop the claim on ``key`` if ``token`` still holds it; a done key stays done."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release resources (connections, threads); idempotent."""


def _check_ttl(ttl: float) -> float:
    if not ttl > 0:
        raise ConfigError("the idempotency ttl must be a positive number of seconds")
    return ttl


@dataclass(slots=True)
class _Entry:
    token: str
    done: bool
    expires_at: float


class MemoryIdempotencyStore(IdempotencyStore):
    """Keys in this process's memory: for tests and single-process workers."""

    _SWEEP_EVERY = 1024

    def __init__(self, *, ttl: float = DEFAULT_TTL) -> None:
        self.ttl = _check_ttl(ttl)
        self._entries: dict[str, _Entry] = {}
        self._calls = 0

    async def begin(
        self, key: str, token: str, lease: float, *, take_over: bool = False
    ) -> ClaimState:
        now = time.monotonic()
        self._sweep(now)
        entry = self._entries.get(key)
        if entry is None or entry.expires_at <= now or (take_over and not entry.done):
            self._entries[key] = _Entry(token, False, now + lease)
            return ClaimState.CLAIMED
        if entry.done:
            return ClaimState.DONE
        return ClaimState.CLAIMED if entry.token == token else ClaimState.BUSY

    async def complete(self, key: str, token: str) -> None:
        self._entries[key] = _Entry(token, True, time.monotonic() + self.ttl)

    async def release(self, key: str, token: str) -> None:
        entry = self._entries.get(key)
        if entry is not None and not entry.done and entry.token == token:
            del self._entries[key]

    async def close(self) -> None:
        """Nothing to release: the keys live as long as the store object."""

    def _sweep(self, now: float) -> None:
        self._calls += 1
        if self._calls % self._SWEEP_EVERY == 0:
            expired = [key for key, entry in self._entries.items() if entry.expires_at <= now]
            for key in expired:
                del self._entries[key]


# --- SQLite ------------------------------------------------------------------------------

_TABLE = "queuekit_idempotency"
_SCHEMA = (
    f"CREATE TABLE IF NOT EXISTS {_TABLE} (key TEXT PRIMARY KEY, token TEXT NOT NULL,"
    " done INTEGER NOT NULL, expires_at REAL NOT NULL) WITHOUT ROWID",
    f"CREATE INDEX IF NOT EXISTS {_TABLE}_expiry ON {_TABLE} (expires_at)",
)
_SQL_CLAIM = (
    f"INSERT INTO {_TABLE} (key, token, done, expires_at) VALUES (?, ?, 0, ?)"
    " ON CONFLICT (key) DO UPDATE SET token = excluded.token, done = 0,"
    f" expires_at = excluded.expires_at WHERE {_TABLE}.expires_at <= ?"
)
_SQL_TAKE_OVER = (
    f"INSERT INTO {_TABLE} (key, token, done, expires_at) VALUES (?, ?, 0, ?)"
    " ON CONFLICT (key) DO UPDATE SET token = excluded.token, done = 0,"
    f" expires_at = excluded.expires_at WHERE {_TABLE}.done = 0 OR {_TABLE}.expires_at <= ?"
)
_SQL_STATE = f"SELECT token, done FROM {_TABLE} WHERE key = ?"
_SQL_COMPLETE = (
    f"INSERT INTO {_TABLE} (key, token, done, expires_at) VALUES (?, ?, 1, ?)"
    " ON CONFLICT (key) DO UPDATE SET token = excluded.token, done = 1,"
    " expires_at = excluded.expires_at"
)
_SQL_RELEASE = f"DELETE FROM {_TABLE} WHERE key = ? AND token = ? AND done = 0"
_SQL_CLEANUP = (
    f"DELETE FROM {_TABLE} WHERE key IN (SELECT key FROM {_TABLE} WHERE expires_at <= ? LIMIT 1000)"
)


class _Kind(enum.Enum):
    BEGIN = enum.auto()
    TAKE_OVER = enum.auto()
    COMPLETE = enum.auto()
    RELEASE = enum.auto()


@dataclass(slots=True)
class _Op:
    kind: _Kind
    key: str
    token: str
    seconds: float
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[ClaimState | None]


def _resolve(future: asyncio.Future[ClaimState | None], outcome: Any) -> None:
    if future.done():  # the caller was cancelled; the operation still happened
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)


class SqliteIdempotencyStore(IdempotencyStore):
    """Keys in a SQLite file (WAL), shared by every process that opens the same path.

    One thread owns the connection; the operations queued while it works are applied in one
    transaction (``BEGIN IMMEDIATE``, so a claim is atomic across processes). Expired keys are
    deleted in small batches every ``cleanup_interval`` seconds. Times are wall-clock, so
    processes on one machine agree on lease expiry.
    """

    _MAX_BATCH = 512

    def __init__(
        self, path: str | Path, *, ttl: float = DEFAULT_TTL, cleanup_interval: float = 60.0
    ) -> None:
        self.ttl = _check_ttl(ttl)
        self.path = Path(path)
        self._cleanup_interval = cleanup_interval
        self._ops: queue.SimpleQueue[_Op | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._lock = threading.Lock()
        self._ready = threading.Event()
        self._open_error: IdempotencyStoreError | None = None

    async def begin(
        self, key: str, token: str, lease: float, *, take_over: bool = False
    ) -> ClaimState:
        kind = _Kind.TAKE_OVER if take_over else _Kind.BEGIN
        state = await self._submit(kind, key, token, lease)
        assert state is not None
        return state

    async def complete(self, key: str, token: str) -> None:
        await self._submit(_Kind.COMPLETE, key, token, self.ttl)

    async def release(self, key: str, token: str) -> None:
        await self._submit(_Kind.RELEASE, key, token, 0.0)

    async def close(self) -> None:
        with self._lock:
            already_closed, self._closed = self._closed, True
            thread = self._thread
            if thread is not None and not already_closed:
                self._ops.put(None)
        if thread is not None:
            await asyncio.to_thread(thread.join)

    async def _submit(self, kind: _Kind, key: str, token: str, seconds: float) -> ClaimState | None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ClaimState | None] = loop.create_future()
        # Queued under the lock so that closing (or failing to open) never strands an op.
        with self._lock:
            if self._open_error is not None:
                raise self._open_error
            if self._closed:
                raise IdempotencyStoreError(f"the idempotency store {self.path} is closed")
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="queuekit-idempotency", daemon=True
                )
                self._thread.start()
            self._ops.put(_Op(kind, key, token, seconds, loop, future))
        return await future

    def _open(self) -> sqlite3.Connection:
        if str(self.path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        enable_wal(conn, 30.0)
        conn.execute("PRAGMA synchronous=NORMAL")
        for statement in _SCHEMA:
            conn.execute(statement)
        return conn

    def _serve(self) -> None:
        try:
            conn = self._open()
        except (sqlite3.Error, OSError) as exc:
            self._fail_all(IdempotencyStoreError(f"cannot open {self.path}: {exc}"))
            return
        last_cleanup = 0.0
        try:
            while True:
                batch, stop = self._next_batch()
                if batch:
                    self._apply(conn, batch)
                if time.time() - last_cleanup >= self._cleanup_interval:
                    last_cleanup = time.time()
                    self._cleanup(conn)
                if stop:
                    return
        finally:
            conn.close()

    def _next_batch(self) -> tuple[list[_Op], bool]:
        first = self._ops.get()
        if first is None:
            return [], True
        batch = [first]
        while len(batch) < self._MAX_BATCH:
            try:
                op = self._ops.get_nowait()
            except queue.Empty:
                break
            if op is None:
                return batch, True
            batch.append(op)
        return batch, False

    def _apply(self, conn: sqlite3.Connection, batch: Sequence[_Op]) -> None:
        now = time.time()
        try:
            conn.execute("BEGIN IMMEDIATE")
            results = [self._execute(conn, op, now) for op in batch]
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            error = IdempotencyStoreError(f"idempotency store {self.path} failed: {exc}")
            for op in batch:
                self._settle(op, error)
            return
        for op, result in zip(batch, results, strict=True):
            self._settle(op, result)

    @staticmethod
    def _execute(conn: sqlite3.Connection, op: _Op, now: float) -> ClaimState | None:
        if op.kind is _Kind.BEGIN or op.kind is _Kind.TAKE_OVER:
            claim = _SQL_CLAIM if op.kind is _Kind.BEGIN else _SQL_TAKE_OVER
            conn.execute(claim, (op.key, op.token, now + op.seconds, now))
            token, done = conn.execute(_SQL_STATE, (op.key,)).fetchone()
            if done:
                return ClaimState.DONE
            return ClaimState.CLAIMED if token == op.token else ClaimState.BUSY
        if op.kind is _Kind.COMPLETE:
            conn.execute(_SQL_COMPLETE, (op.key, op.token, now + op.seconds))
        else:
            conn.execute(_SQL_RELEASE, (op.key, op.token))
        return None

    def _cleanup(self, conn: sqlite3.Connection) -> None:
        try:
            while conn.execute(_SQL_CLEANUP, (time.time(),)).rowcount >= 1000:
                pass
        except sqlite3.Error as exc:  # cleanup is housekeeping: retried at the next interval
            _log.warning("idempotency cleanup failed", extra={"path": str(self.path)}, exc_info=exc)

    @staticmethod
    def _settle(op: _Op, outcome: Any) -> None:
        # A closed loop (RuntimeError) means nobody is waiting for the result any more.
        with contextlib.suppress(RuntimeError):
            op.loop.call_soon_threadsafe(_resolve, op.future, outcome)

    def _fail_all(self, error: IdempotencyStoreError) -> None:
        with self._lock:
            self._closed = True
            self._open_error = error
        while True:  # nothing can be queued any more: _submit checks _closed under the lock
            try:
                op = self._ops.get_nowait()
            except queue.Empty:
                return
            if op is not None:
                self._settle(op, error)


# --- Redis -------------------------------------------------------------------------------

_DONE_MARKER = "!done"
_LUA_BEGIN = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
local value = redis.call('GET', KEYS[1])
if value == ARGV[3] then return 2 end
if value == ARGV[1] then return 1 end
return 0
"""
_LUA_TAKE_OVER = """
local value = redis.call('GET', KEYS[1])
if value == ARGV[3] then return 2 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"""
_LUA_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
_BEGIN_STATES = {0: ClaimState.BUSY, 1: ClaimState.CLAIMED, 2: ClaimState.DONE}


@dataclass(slots=True)
class _RedisOp:
    kind: _Kind
    key: str
    token: str
    millis: int
    result: Any = field(default=None)


class RedisIdempotencyStore(IdempotencyStore):
    """Keys in Redis (``SET NX PX``; Lua for the token-checked steps), shared by every worker.

    Concurrent calls are sent together in one pipeline. Keys live under ``prefix``.
    """

    def __init__(
        self,
        url: str,
        *,
        ttl: float = DEFAULT_TTL,
        prefix: str = "queuekit:idempotency:",
        client: Redis | None = None,
    ) -> None:
        self.ttl = _check_ttl(ttl)
        self.prefix = prefix
        if client is None:
            try:
                from redis.asyncio import Redis
            except ImportError as exc:
                raise BackendNotInstalled(
                    'the Redis idempotency store needs redis: pip install "queuekit[redis]"'
                ) from exc
            client = Redis.from_url(url)
        self._client = client
        self._committer = GroupCommitter(self._flush)

    async def begin(
        self, key: str, token: str, lease: float, *, take_over: bool = False
    ) -> ClaimState:
        kind = _Kind.TAKE_OVER if take_over else _Kind.BEGIN
        result = await self._run(_RedisOp(kind, key, token, max(1, int(lease * 1000))))
        return _BEGIN_STATES[int(result)]

    async def complete(self, key: str, token: str) -> None:
        await self._run(_RedisOp(_Kind.COMPLETE, key, token, max(1, int(self.ttl * 1000))))

    async def release(self, key: str, token: str) -> None:
        await self._run(_RedisOp(_Kind.RELEASE, key, token, 0))

    async def close(self) -> None:
        await self._committer.drain()
        await self._client.aclose()

    async def _run(self, op: _RedisOp) -> Any:
        await self._committer.submit([op])
        if isinstance(op.result, Exception):
            raise IdempotencyStoreError(f"idempotency store failed: {op.result}") from op.result
        return op.result

    async def _flush(self, ops: Sequence[_RedisOp]) -> None:
        from redis.exceptions import RedisError

        pipe = self._client.pipeline(transaction=False)
        for op in ops:
            name = self.prefix + op.key
            if op.kind is _Kind.BEGIN:
                pipe.eval(_LUA_BEGIN, 1, name, op.token, op.millis, _DONE_MARKER)
            elif op.kind is _Kind.TAKE_OVER:
                pipe.eval(_LUA_TAKE_OVER, 1, name, op.token, op.millis, _DONE_MARKER)
            elif op.kind is _Kind.COMPLETE:
                pipe.set(name, _DONE_MARKER, px=op.millis)
            else:
                pipe.eval(_LUA_RELEASE, 1, name, op.token)
        try:
            results = await pipe.execute(raise_on_error=False)
        except (RedisError, OSError) as exc:
            results = [exc] * len(ops)
        for op, result in zip(ops, results, strict=True):
            op.result = result


def create_idempotency_store(settings: Settings) -> IdempotencyStore:
    """The store ``settings.idempotency_store`` names: ``memory``, a ``redis://`` URL or a path.

    Raises:
        ConfigError: the setting is empty.
    """
    target = settings.idempotency_store.strip()
    if not target:
        raise ConfigError("IDEMPOTENCY_STORE must be 'memory', a redis:// URL or a file path")
    if target == "memory":
        return MemoryIdempotencyStore()
    if target.startswith(("redis://", "rediss://", "unix://")):
        return RedisIdempotencyStore(target)
    return SqliteIdempotencyStore(target)
