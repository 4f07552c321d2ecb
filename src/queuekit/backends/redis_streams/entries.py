"""A message as the fields of a Redis stream entry, and back.

Field names (all optional except ``payload``; a plain ``XADD <stream> * payload <json>`` is a
valid message):

==================  ==========================================================================
``payload``         the body, byte for byte
``id``              queuekit message id (default: ``<stream key>/<entry id>``, e.g.
                    ``queuekit:{orders}/1700000000000-0``: stable and globally unique)
``created_at``      unix seconds (default: the time in the stream entry id)
``headers``         a JSON object of string to string
``key``             the message key
``priority``        0-9 (default: the priority of the lane stream the entry is in)
``not_before``      unix seconds the message was delayed to (informative once delivered)
``prior_attempts``  deliveries before this entry existed (set on retries; default 0)
==================  ==========================================================================

The attempt of a delivery is ``prior_attempts`` plus the delivery counter Redis keeps in the
group's pending entries list, so it survives consumer crashes.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from queuekit.errors import InvalidMessage
from queuekit.message import Message, check_headers, check_priority

PAYLOAD = b"payload"
ID = b"id"
CREATED_AT = b"created_at"
HEADERS = b"headers"
KEY = b"key"
PRIORITY = b"priority"
NOT_BEFORE = b"not_before"
PRIOR_ATTEMPTS = b"prior_attempts"

Fields = list[bytes]
"""A stream entry's fields as Redis returns them: name, value, name, value..."""


class InvalidEntry(InvalidMessage):
    """A stream entry that cannot be read as a message (no payload, bad headers...)."""


def encode(message: Message, prior_attempts: int = 0) -> Fields:
    """The fields of a stream entry that holds ``message``."""
    fields = [
        PAYLOAD,
        message.payload,
        ID,
        message.id.encode(),
        CREATED_AT,
        repr(message.created_at).encode(),
    ]
    if message.headers:
        fields += (HEADERS, orjson.dumps(dict(message.headers)))
    if message.key is not None:
        fields += (KEY, message.key.encode())
    if message.priority:
        fields += (PRIORITY, b"%d" % message.priority)
    if message.not_before is not None:
        fields += (NOT_BEFORE, repr(message.not_before).encode())
    if prior_attempts:
        fields += (PRIOR_ATTEMPTS, b"%d" % prior_attempts)
    return fields


def decode(
    topic: str,
    stream: str,
    entry_id: bytes,
    fields: Sequence[bytes],
    *,
    priority: int,
    deliveries: int,
) -> Message:
    """Rebuild the message of an entry of ``stream`` delivered ``deliveries`` times to a group.

    ``priority`` is the priority of the lane the entry was read from (used when the entry
    does not say). Raises :class:`InvalidEntry` if the entry is not a message.
    """
    if len(fields) == 6 and fields[0] == PAYLOAD and fields[2] == ID and fields[4] == CREATED_AT:
        # The shape queuekit itself writes for a plain message: skip the general parsing.
        try:
            return Message.restore(
                topic,
                fields[1],
                fields[3].decode(),
                {},
                None,
                priority,
                None,
                deliveries,
                float(fields[5]),
            )
        except (ValueError, UnicodeDecodeError):
            pass  # the general parsing below says what is wrong
    values = dict(zip(fields[::2], fields[1::2], strict=True))
    payload = values.get(PAYLOAD)
    if payload is None:
        raise InvalidEntry(f"stream entry {entry_id.decode()} has no 'payload' field")
    try:
        raw_headers = values.get(HEADERS)
        headers = check_headers(orjson.loads(raw_headers)) if raw_headers else {}
        raw_priority = values.get(PRIORITY)
        if raw_priority is not None:
            priority = check_priority(int(raw_priority))
        raw_id = values.get(ID)
        raw_created = values.get(CREATED_AT)
        raw_not_before = values.get(NOT_BEFORE)
        raw_key = values.get(KEY)
        prior = int(values.get(PRIOR_ATTEMPTS, b"0"))
        return Message.restore(
            topic,
            payload,
            raw_id.decode() if raw_id else f"{stream}/{entry_id.decode()}",
            headers,
            raw_key.decode() if raw_key is not None else None,
            priority,
            float(raw_not_before) if raw_not_before else None,
            prior + deliveries,
            float(raw_created) if raw_created else entry_time(entry_id),
        )
    except (ValueError, AttributeError, orjson.JSONDecodeError) as exc:
        raise InvalidEntry(f"stream entry {entry_id.decode()} is malformed: {exc}") from exc


def entry_time(entry_id: bytes) -> float:
    """The unix time, in seconds, at which Redis generated ``entry_id``."""
    return int(entry_id.split(b"-", 1)[0]) / 1000


def salvage(fields: Sequence[bytes]) -> bytes:
    """A JSON payload holding every field of a malformed entry, to dead-letter it readably."""
    return orjson.dumps(
        {
            name.decode(errors="replace"): value.decode(errors="replace")
            for name, value in zip(fields[::2], fields[1::2], strict=False)
        }
    )


def pack(priority: int, fields: Fields) -> bytes:
    """One binary-safe string holding a lane priority and an entry's fields.

    Sorted-set members of delayed messages use it; the Lua scripts unpack it with
    ``struct.unpack('>I4', ...)``: each item is a 4-byte big-endian length and its bytes.
    """
    items = [b"%d" % priority, *fields]
    return b"".join(len(item).to_bytes(4, "big") + item for item in items)


def unpack(member: bytes) -> tuple[int, Fields]:
    """The inverse of :func:`pack`."""
    items: Fields = []
    position = 0
    while position < len(member):
        size = int.from_bytes(member[position : position + 4], "big")
        position += 4
        items.append(member[position : position + size])
        position += size
    return int(items[0]), items[1:]
