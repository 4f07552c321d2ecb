"""Payload <-> JSON bytes, with orjson. Brokers move bytes and never serialize."""

from __future__ import annotations

from typing import Any

import orjson

from queuekit.errors import InvalidMessage

JSON_CONTENT_TYPE = "application/json"


def encode(payload: Any) -> bytes:
    """Encode a JSON-compatible value (dicts, lists, str, numbers, bool, None, pydantic dumps).

    Raises:
        InvalidMessage: the value is not JSON-serializable.
    """
    try:
        encoded = orjson.dumps(payload)
    except TypeError as exc:
        raise InvalidMessage(f"payload is not JSON-serializable: {exc}") from exc
    if len(encoded) < _COMPACT_BELOW:
        # orjson's result keeps its whole output buffer (4-8 KiB even for a few bytes), and a
        # payload may stay in memory a long time (queued, retained by the memory backend):
        # a copy of the exact size saves most of that. A join with an empty part is the
        # cheapest exact copy (0.25 us for 1 KiB, a third of memoryview(...).tobytes());
        # bytes(x) and x[:] hand back x itself.
        encoded = b"".join((encoded, b""))
    return encoded


# Above this size orjson's spare capacity is a small fraction of the payload.
_COMPACT_BELOW = 64 * 1024


def decode(body: bytes) -> Any:
    """Decode JSON bytes into Python values.

    Raises:
        InvalidMessage: the body is not valid UTF-8 JSON.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidMessage(f"payload is not valid JSON: {exc}") from exc
