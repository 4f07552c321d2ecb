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
        return orjson.dumps(payload)
    except TypeError as exc:
        raise InvalidMessage(f"payload is not JSON-serializable: {exc}") from exc


def decode(body: bytes) -> Any:
    """Decode JSON bytes into Python values.

    Raises:
        InvalidMessage: the body is not valid UTF-8 JSON.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidMessage(f"payload is not valid JSON: {exc}") from exc
