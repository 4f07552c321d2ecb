"""``Idempotency-Key``: a retried POST publishes once and gets the same answer.

Two mechanisms work together:

* Message ids are derived from the idempotency key (:func:`idempotent_message_id`), so a
  retry yields the same ids on every API replica, and the worker's idempotency middleware
  (which deduplicates by message id) drops a copy published twice by two replicas.
* Each API process remembers the keys it served in an :class:`IdempotencyCache` (bounded
  LRU, 100k keys, 24 h TTL): a retry with the same key and the same body does not publish
  again and gets the same 202 response; a concurrent duplicate waits for the first request
  and then answers likewise; the same key with a *different* body is a 422
  (``idempotency-key-reused``, as in the IETF httpapi Idempotency-Key draft).

Only successful publishes are remembered: after a failure (503...) the key may be retried.
Keys are scoped by the caller's principal (its API key), so clients cannot collide.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from queuekit.api.problems import Problem

IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_IDEMPOTENCY_KEY_LENGTH = 255
DEFAULT_MAX_KEYS = 100_000
DEFAULT_TTL_SECONDS = 24 * 3600.0


def check_idempotency_key(key: str) -> str:
    """Return ``key`` if it is 1-255 printable ASCII characters, else raise a 400 problem."""
    if not 0 < len(key) <= MAX_IDEMPOTENCY_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise Problem(
            400,
            "invalid-idempotency-key",
            f"{IDEMPOTENCY_HEADER} must be 1-{MAX_IDEMPOTENCY_KEY_LENGTH} printable ASCII "
            "characters (a UUID is a good choice)",
            title="Invalid idempotency key",
        )
    return key


def idempotent_message_id(principal: str, key: str, index: int) -> str:
    """The id of the ``index``-th message of the request sent with idempotency ``key``.

    32 hex characters, like :func:`queuekit.message.new_message_id`; the same on every
    replica for the same caller, key and position.
    """
    material = f"queuekit-idempotency\0{principal}\0{key}\0{index}".encode()
    return hashlib.sha256(material).hexdigest()[:32]


def reused_key() -> Problem:
    """The 422 problem for an idempotency key replayed with a different request."""
    return Problem(
        422,
        "idempotency-key-reused",
        f"this {IDEMPOTENCY_HEADER} was already used for a different request; "
        "use a new key for a new request",
        title="Idempotency key reused",
    )


@dataclass(slots=True)
class _Entry:
    fingerprint: bytes
    done: asyncio.Event = field(default_factory=asyncio.Event)
    succeeded: bool = False
    expires_at: float = float("inf")


class IdempotencyCache:
    """Run an operation at most once per key (per process), for a bounded time.

    The cache holds only request fingerprints, not responses: a response is recomputed from
    the request and the key (ids are derived from the key), so memory stays small.
    """

    def __init__(
        self,
        *,
        max_keys: int = DEFAULT_MAX_KEYS,
        ttl: float = DEFAULT_TTL_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_keys < 1 or ttl <= 0:
            raise ValueError("max_keys and ttl must be positive")
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._max_keys = max_keys
        self._ttl = ttl
        self._clock = clock
        self._waiting = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def waiting(self) -> int:
        """Requests now waiting for a concurrent request with the same key to finish."""
        return self._waiting

    async def run_once(
        self, key: str, fingerprint: bytes, operation: Callable[[], Awaitable[None]]
    ) -> bool:
        """Run ``operation`` unless it already succeeded for ``key``; return True if skipped.

        A concurrent call with the same key waits for the running one: if it succeeds the
        waiter is skipped, if it fails the waiter runs the operation itself.

        Raises:
            Problem: (422) ``key`` was used with a different ``fingerprint``.
        """
        while True:
            entry = self._lookup(key)
            if entry is None:
                break
            if entry.fingerprint != fingerprint:
                raise reused_key()
            if entry.succeeded:
                return True
            self._waiting += 1
            try:
                await entry.done.wait()
            finally:
                self._waiting -= 1
        entry = self._insert(key, fingerprint)
        try:
            await operation()
        except BaseException:
            if self._entries.get(key) is entry:
                del self._entries[key]
            raise
        else:
            entry.succeeded = True
            entry.expires_at = self._clock() + self._ttl
        finally:
            entry.done.set()
        return False

    def _lookup(self, key: str) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    def _insert(self, key: str, fingerprint: bytes) -> _Entry:
        entry = _Entry(fingerprint)
        self._entries[key] = entry
        while len(self._entries) > self._max_keys:
            self._entries.popitem(last=False)
        return entry
