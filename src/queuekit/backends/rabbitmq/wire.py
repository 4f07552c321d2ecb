"""Message <-> AMQP 0-9-1 properties and headers.

A queuekit message is a persistent AMQP message: ``message_id`` is the id, ``priority`` the
priority, ``content_type`` ``application/json``, the body the payload byte for byte. The rest
rides in ``x-queuekit-*`` headers next to the user's own headers. A message published by any
other client is valid as it is: a missing ``message_id`` gets a fresh id on delivery (kept from
then on by every copy queuekit makes), a missing priority is 0, a missing attempt is 1.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from aiormq import spec

from queuekit.codec import JSON_CONTENT_TYPE
from queuekit.message import Message, new_message_id

ATTEMPT = "x-queuekit-attempt"
"""The attempt number of the message's next delivery (absent: 1)."""
KEY = "x-queuekit-key"
NOT_BEFORE = "x-queuekit-not-before"
"""The message's ``not_before`` (unix time, as published)."""
DUE = "x-queuekit-due"
"""When a retry (``nack(delay)``) may be delivered (unix time); absent for first deliveries."""

PERSISTENT = 2
_OWN_PREFIX = "x-queuekit-"
# Headers RabbitMQ adds when it dead-letters (our delay tiers): not the user's.
_BROKER_HEADERS = frozenset(
    {
        "x-death",
        "x-first-death-exchange",
        "x-first-death-queue",
        "x-first-death-reason",
        "x-last-death-exchange",
        "x-last-death-queue",
        "x-last-death-reason",
    }
)


def properties(
    message: Message, *, attempt: int = 1, due: float | None = None
) -> spec.Basic.Properties:
    """The AMQP properties that carry ``message`` (its next delivery being ``attempt``).

    A plain message (no headers, key, delay or retry) carries no header table at all, which
    keeps encoding and decoding it cheap; ``created_at`` rides in the standard ``timestamp``
    property (whole seconds, as AMQP defines it).
    """
    headers: dict[str, Any] | None = dict(message.headers) if message.headers else None
    if attempt > 1 or message.key is not None or message.not_before is not None or due is not None:
        headers = _own_headers(message, headers or {}, attempt, due)
    return spec.Basic.Properties(
        content_type=JSON_CONTENT_TYPE,
        delivery_mode=PERSISTENT,
        priority=message.priority,
        message_id=message.id,
        timestamp=datetime.fromtimestamp(message.created_at, UTC),
        headers=headers,
    )


def _own_headers(
    message: Message, headers: dict[str, Any], attempt: int, due: float | None
) -> dict[str, Any]:
    if attempt > 1:
        headers[ATTEMPT] = attempt
    if message.key is not None:
        headers[KEY] = message.key
    if message.not_before is not None:
        headers[NOT_BEFORE] = repr(message.not_before)
    if due is not None:
        headers[DUE] = repr(due)
    return headers


def decode(topic: str, body: bytes, props: spec.Basic.Properties) -> tuple[Message, float | None]:
    """The message carried by ``body`` and ``props``, and when it is due (None: now).

    ``attempt`` is what the headers say (1 if absent); the caller adds what the broker knows.
    """
    raw = props.headers or {}
    headers: dict[str, str] = {}
    for name, value in raw.items():
        if name.startswith(_OWN_PREFIX) or name in _BROKER_HEADERS:
            continue
        text = _as_text(value)
        if text is not None:
            headers[name] = text
    priority = props.priority or 0
    not_before = _as_float(raw.get(NOT_BEFORE))
    due = _as_float(raw.get(DUE))
    created_at = props.timestamp.timestamp() if props.timestamp is not None else time.time()
    key = raw.get(KEY)
    message = Message.restore(
        topic,
        body,
        props.message_id or new_message_id(),
        headers,
        key if isinstance(key, str) else None,
        min(max(priority, 0), 9),
        not_before,
        _as_int(raw.get(ATTEMPT)) or 1,
        created_at,
    )
    return message, due if due is not None else not_before


def _as_text(value: object) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, bool | int | float):
        return str(value)
    return None  # tables, arrays, timestamps: not representable as a str header


def _as_float(value: object) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _as_int(value: object) -> int | None:
    number = _as_float(value)
    return int(number) if number is not None and number >= 1 else None
