"""The Redis client: creation, the persistence check, error mapping and reconnect backoff."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from redis import exceptions as redis_errors
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from queuekit.errors import BrokerError, BrokerUnavailable, ConfigError, ConnectionLost

logger = logging.getLogger("queuekit.redis")

# Errors after which the same command may succeed on a new connection (Redis restarting,
# loading its AOF, a dropped socket).
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    redis_errors.ConnectionError,
    redis_errors.TimeoutError,
    OSError,
)

# Blocking reads wait at most this long, so the socket timeout must be well above it.
SOCKET_TIMEOUT = 15.0
CONNECT_TIMEOUT = 5.0


async def execute(client: Redis, *args: Any) -> Any:
    """``client.execute_command`` with types (redis-py leaves it untyped)."""
    return await client.execute_command(*args)  # type: ignore[no-untyped-call]


CRLF = b"\r\n"
# "\r\n$<n>\r\n": the end of one argument and the length of the next, made once for the
# lengths of every field but payloads.
_ARG_HEADS = [b"\r\n$%d\r\n" % size for size in range(256)]


def pack_commands(commands: list[list[bytes]]) -> bytes:
    """Commands in the Redis protocol (RESP), ready to be written in one go.

    redis-py encodes every argument of every command one by one; for a batch of thousands
    of arguments doing it here, on bytes only, costs a fraction of that.
    """
    parts: list[bytes] = []
    append, heads = parts.append, _ARG_HEADS
    for args in commands:
        append(b"\r\n*%d" % len(args))
        for arg in args:
            size = len(arg)
            append(heads[size] if size < 256 else b"\r\n$%d\r\n" % size)
            append(arg)
    if not parts:
        return b""
    append(CRLF)
    parts[0] = parts[0][2:]  # each part starts by ending the previous one: not the first
    return b"".join(parts)


async def run_packed(client: Redis, packed: bytes, replies: int) -> list[Any]:
    """Write commands packed by :func:`pack_commands` at once and read their replies.

    One round trip. An error reply is returned in place, as its ``ResponseError``, so the
    connection stays in step. A transient failure is retried once on a new connection (a
    pooled connection may be stale after a Redis restart); the commands may then apply
    twice, which at-least-once delivery allows.
    """
    pool = client.connection_pool
    for attempt in (1, 2):
        connection = await pool.get_connection()  # type: ignore[no-untyped-call]
        try:
            await _write(connection, packed)
            return await _read_replies(connection, replies)
        except TRANSIENT_ERRORS:
            await connection.disconnect()
            if attempt == 2:
                raise
        except BaseException:
            await connection.disconnect()
            raise
        finally:
            await pool.release(connection)
    raise AssertionError("unreachable")


async def _write(connection: Any, packed: bytes) -> None:
    """Write ``packed`` to ``connection`` (connected by the pool) under one deadline.

    Not ``send_packed_command``: with a socket timeout it runs the write in
    ``asyncio.wait_for``, which on Python 3.11 swallows a cancellation that arrives as the
    write completes. A consumer being closed then sat out its whole blocking read (1 s).
    """
    writer = connection._writer
    if writer is None:
        raise redis_errors.ConnectionError("connection closed before writing")
    writer.write(packed)
    try:
        async with asyncio.timeout(SOCKET_TIMEOUT):
            await writer.drain()
    except TimeoutError as exc:
        raise redis_errors.TimeoutError(f"no room to write within {SOCKET_TIMEOUT:g} s") from exc


async def _read_replies(connection: Any, replies: int) -> list[Any]:
    """The next ``replies`` replies of ``connection``, error replies in place.

    Straight from the connection's parser (hiredis) under one deadline for them all:
    ``connection.read_response`` arms a timer and formats the peer's address for every
    reply, which for a batch of hundreds of replies cost more than the batch itself. Both
    redis-py parsers return error replies as ``ResponseError`` objects instead of raising.
    """
    parser = connection._parser
    read = parser.read_response
    try:
        async with asyncio.timeout(SOCKET_TIMEOUT):
            return [await read() for _ in range(replies)]
    except TimeoutError as exc:
        raise redis_errors.TimeoutError(
            f"no reply from Redis within {SOCKET_TIMEOUT:.0f} s"
        ) from exc


def _raw(response: Any, **_options: Any) -> Any:
    return response


def create_client(url: str, name: str) -> Redis:
    """A client for ``url`` that retries a command twice on a fresh connection.

    Its connections are named ``name`` (CLIENT LIST shows which process holds them).

    Stream replies are left raw (nested lists of bytes) for speed: the backend parses them.
    """
    try:
        client = Redis.from_url(
            url,
            socket_timeout=SOCKET_TIMEOUT,
            socket_connect_timeout=CONNECT_TIMEOUT,
            socket_keepalive=True,
            retry=Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), retries=2),
            retry_on_error=[redis_errors.ConnectionError, redis_errors.TimeoutError],
            client_name=name,
            protocol=2,
        )
    except ValueError as exc:
        raise ConfigError(f"invalid REDIS_URL: {exc}") from exc
    for command in ("XREADGROUP", "XRANGE"):
        client.set_response_callback(command, _raw)
    return client


async def check_persistence(client: Redis, *, require: bool, where: str) -> None:
    """Warn (or raise :class:`ConfigError` when ``require``) if Redis does not persist streams.

    Without AOF a restart loses what was written since the last RDB snapshot; without AOF
    and RDB it loses every stream, consumer group and pending entry.
    """
    try:
        appendonly = await client.config_get("appendonly")
        save = await client.config_get("save")
    except redis_errors.ResponseError as exc:
        problem = f"cannot check the persistence of Redis at {where} (CONFIG GET: {exc})"
        if require:
            raise ConfigError(f"{problem}; REDIS_REQUIRE_DURABILITY is set") from exc
        logger.warning("%s; make sure appendonly is yes", problem)
        return
    if _value(appendonly, "appendonly") == "yes":
        return
    snapshots = _value(save, "save")
    if snapshots:
        problem = (
            f"Redis at {where} runs without AOF (appendonly no): a restart loses every "
            f"message published since the last RDB snapshot (save {snapshots!r})"
        )
    else:
        problem = (
            f"Redis at {where} persists nothing (appendonly no, save ''): a restart loses "
            "every stream, consumer group and pending message"
        )
    if require:
        raise ConfigError(f"{problem}; set 'appendonly yes' (REDIS_REQUIRE_DURABILITY is set)")
    logger.warning("%s; set 'appendonly yes' for durable queues", problem)


def _value(reply: Any, name: str) -> str:
    raw = reply.get(name.encode(), reply.get(name, b"")) if isinstance(reply, dict) else b""
    return raw.decode() if isinstance(raw, bytes) else str(raw)


@contextmanager
def mapped_errors(action: str, *, connected_before: bool = True) -> Iterator[None]:
    """Turn redis-py errors raised while doing ``action`` into queuekit errors."""
    try:
        yield
    except redis_errors.AuthenticationError as exc:
        raise BrokerUnavailable(f"Redis refused the credentials while {action}: {exc}") from exc
    except TRANSIENT_ERRORS as exc:
        kind = ConnectionLost if connected_before else BrokerUnavailable
        raise kind(f"Redis is unreachable while {action}: {exc}") from exc
    except redis_errors.RedisError as exc:
        raise BrokerError(f"Redis failed while {action}: {exc}") from exc


class Backoff:
    """Exponential backoff with jitter for reconnect loops (50 ms doubling up to ``cap``)."""

    def __init__(self, *, first: float = 0.05, cap: float = 2.0) -> None:
        self._first = first
        self._cap = cap
        self._next = first

    def reset(self) -> None:
        self._next = self._first

    async def wait(self) -> None:
        delay = self._next * random.uniform(0.5, 1.0)
        self._next = min(self._next * 2, self._cap)
        await asyncio.sleep(delay)
