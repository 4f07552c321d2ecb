"""Message <-> Kafka record: the value is the payload, metadata rides in Kafka headers.

Headers written (only when they differ from the default, to keep records small):

* ``x-queuekit-id``          message id (a plain record gets a stable id from its position)
* ``x-queuekit-attempt``     delivery number of the next delivery (retries carry attempt + 1)
* ``x-queuekit-priority``    0-9 (the lane topic already says it; kept for retry/delay topics)
* ``x-queuekit-not-before``  unix time before which the record must not be handled
* ``x-queuekit-created-at``  unix time of creation (else the record's Kafka timestamp)

Every other header is the message's own (``x-dlq-*`` included) and is passed through.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

from queuekit.message import MIN_PRIORITY, Message

_restore = Message.restore

H_ID = "x-queuekit-id"
H_ATTEMPT = "x-queuekit-attempt"
H_PRIORITY = "x-queuekit-priority"
H_NOT_BEFORE = "x-queuekit-not-before"
H_CREATED_AT = "x-queuekit-created-at"
_OWN = frozenset((H_ID, H_ATTEMPT, H_PRIORITY, H_NOT_BEFORE, H_CREATED_AT))

Headers = list[tuple[str, bytes]]


OutRecord = tuple[str, bytes, bytes | None, Headers, int]
"""One record to produce: (Kafka topic, value, key, headers, timestamp in ms). A plain tuple:
publishing builds one per message, so it must be cheap."""


def to_record(message: Message, kafka_topic: str, now_ms: int | None = None) -> OutRecord:
    """The record for ``message`` on ``kafka_topic`` (retries pass a copy with the next
    ``attempt`` and their ``not_before``); ``now_ms`` saves a clock read per message."""
    headers: Headers = [(H_ID, message.id.encode())]
    for name, value in message.headers.items():
        if name not in _OWN:
            headers.append((name, value.encode()))
    if message.attempt != 1:
        headers.append((H_ATTEMPT, str(message.attempt).encode()))
    if message.priority != MIN_PRIORITY:
        headers.append((H_PRIORITY, str(message.priority).encode()))
    if message.not_before is not None:
        headers.append((H_NOT_BEFORE, repr(message.not_before).encode()))
    if now_ms is None:
        now_ms = int(time.time() * 1000)
    created_ms = int(message.created_at * 1000)
    if abs(now_ms - created_ms) > 1000:
        # Kafka retention runs on record timestamps: an old CreateTime would expire a retry
        # early, so old messages carry their creation time in a header instead.
        headers.append((H_CREATED_AT, repr(message.created_at).encode()))
        created_ms = now_ms
    key = message.key.encode() if message.key is not None else None
    return (kafka_topic, message.payload, key, headers, created_ms)


def from_record(record: Any, topic: str, priority: int, offset: int | None = None) -> Message:
    """The message in a consumed ``confluent_kafka.Message``.

    ``topic`` is the queuekit topic, ``priority`` the lane's (a header overrides it). A record
    without queuekit headers (any plain producer) is a valid message: id derived from its
    position, so a redelivery keeps it; attempt 1; created at its Kafka timestamp.
    ``offset``: the record's offset when the caller already read it.
    """
    raw_headers = record.headers()
    if (
        raw_headers is not None
        and len(raw_headers) == 1
        and raw_headers[0][0] == H_ID
        and record.key() is None
    ):
        # What queuekit itself publishes most: a fresh message with only its id. Its
        # timestamp is its creation time (see to_record).
        raw_id = raw_headers[0][1]
        kind, stamp = record.timestamp()
        value = record.value()
        return _restore(
            topic,
            value if value is not None else b"",
            raw_id.decode("utf-8", "replace") if raw_id is not None else "",
            {},
            None,
            priority,
            None,
            1,
            stamp / 1000 if kind and stamp > 0 else time.time(),
        )
    message_id: str | None = None
    attempt = 1
    not_before: float | None = None
    created_at: float | None = None
    headers: dict[str, str] = {}
    for name, raw in raw_headers or ():
        value = raw.decode("utf-8", "replace") if raw is not None else ""
        if name == H_ID:
            message_id = value
        elif name == H_ATTEMPT:
            attempt = _int(value, 1)
        elif name == H_PRIORITY:
            priority = min(9, max(0, _int(value, priority)))
        elif name == H_NOT_BEFORE:
            not_before = _float(value)
        elif name == H_CREATED_AT:
            created_at = _float(value)
        else:
            headers[name] = value
    if message_id is None:
        if offset is None:
            offset = record.offset()
        position = f"{record.topic()}/{record.partition()}/{offset}"
        message_id = hashlib.blake2b(position.encode(), digest_size=16).hexdigest()
    if created_at is None:
        kind, stamp = record.timestamp()
        created_at = stamp / 1000 if kind and stamp > 0 else time.time()
    raw_key = record.key()
    key = raw_key.decode("utf-8", "replace") if isinstance(raw_key, bytes) else raw_key
    value = record.value()
    return Message.restore(
        topic,
        value if value is not None else b"",
        message_id,
        headers,
        key,
        priority,
        not_before,
        max(1, attempt),
        created_at,
    )


def _int(text: str, default: int) -> int:
    try:
        return int(text)
    except ValueError:
        return default


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
