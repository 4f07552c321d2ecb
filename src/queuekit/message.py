"""The message: what a producer publishes and what a handler receives."""

from __future__ import annotations

import math
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from queuekit import codec
from queuekit.errors import InvalidMessage, InvalidTopic

MIN_PRIORITY = 0
MAX_PRIORITY = 9
DEFAULT_GROUP = "default"
DLQ_SUFFIX = ".dlq"

COMPILED = not __file__.endswith(".py")
"""This module, and with it the whole hot path (built as one), is the mypyc-compiled build."""

# Used with fullmatch: "$" alone would accept a trailing newline.
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
MAX_TOPIC_LENGTH = 120
MAX_GROUP_LENGTH = 100

# Headers that dead-lettering adds to a message (kept in the broker's native headers).
DLQ_REASON = "x-dlq-reason"
DLQ_ERROR = "x-dlq-error"
DLQ_GROUP = "x-dlq-group"
DLQ_ATTEMPTS = "x-dlq-attempts"
DLQ_AT = "x-dlq-at"
DLQ_TOPIC = "x-dlq-topic"
RESERVED_HEADER_PREFIX = "x-dlq-"


# Names that passed validate_topic: a process uses a handful of topics, and the regex is a
# third of the cost of building a small message. Bounded, in case names are generated.
_valid_topics: set[str] = set()
_VALID_TOPICS_KEPT = 1024


def new_message_id() -> str:
    """A fresh, globally unique message id (32 hex characters).

    128 bits from the OS's CSPRNG (unpredictable, as ids may serve as idempotency keys),
    read 64 ids at a time: a read is a system call that also hands the GIL to other threads
    (the SQLite backend's, say), too costly once per message.
    """
    try:
        return _spare_ids.pop()
    except IndexError:
        pass
    fresh = os.urandom(16 * _IDS_PER_READ).hex()
    ids = [fresh[start : start + 32] for start in range(32, len(fresh), 32)]
    _spare_ids.extend(ids)  # list operations are atomic: threads may share the spares
    return fresh[:32]


_IDS_PER_READ = 64
_spare_ids: list[str] = []
# A forked child must not hand out its parent's spare ids.
os.register_at_fork(after_in_child=_spare_ids.clear)


def validate_topic(topic: object) -> str:
    """Return ``topic`` if it is a valid topic name, else raise :class:`InvalidTopic`.

    A topic is 1-120 characters of ``A-Z a-z 0-9 . _ -`` starting with a letter or digit:
    the intersection of what Kafka, RabbitMQ and Redis accept, with room for suffixes such
    as ``.dlq``. Names ending in ``.dlq`` are reserved for dead-letter queues.
    """
    if type(topic) is str and topic in _valid_topics:
        return topic
    if not isinstance(topic, str) or not topic:
        raise InvalidTopic("topic must be a non-empty string")
    if len(topic) > MAX_TOPIC_LENGTH:
        raise InvalidTopic(f"topic is longer than {MAX_TOPIC_LENGTH} characters")
    if not _NAME_RE.fullmatch(topic):
        raise InvalidTopic(
            f"invalid topic {topic!r}: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    if topic.endswith(DLQ_SUFFIX):
        raise InvalidTopic(f"topic names ending in {DLQ_SUFFIX!r} are reserved for dead letters")
    if type(topic) is str:
        if len(_valid_topics) >= _VALID_TOPICS_KEPT:
            _valid_topics.clear()
        _valid_topics.add(topic)
    return topic


def validate_group(group: object) -> str:
    """Return ``group`` if it is a valid consumer-group name, else raise :class:`InvalidTopic`."""
    if not isinstance(group, str) or not group or len(group) > MAX_GROUP_LENGTH:
        raise InvalidTopic(f"group must be 1-{MAX_GROUP_LENGTH} characters")
    if not _NAME_RE.fullmatch(group):
        raise InvalidTopic(
            f"invalid group {group!r}: use letters, digits, '.', '_' and '-', "
            "starting with a letter or digit"
        )
    return group


def dlq_topic(topic: str) -> str:
    """The name of the dead-letter queue of ``topic``."""
    return topic + DLQ_SUFFIX


@dataclass(frozen=True, slots=True)
class Message:
    """An immutable message.

    Attributes:
        topic: where it is published; see :func:`validate_topic`.
        payload: the body, as bytes (JSON produced by :mod:`queuekit.codec` unless the
            producer sent other bytes). Backends store and return it byte for byte.
        id: unique id, kept across retries, redeliveries and dead-lettering.
        headers: string metadata; names starting with ``x-dlq-`` are reserved.
        key: optional partitioning/business key (Kafka partitions by it).
        priority: 0 (default, lowest) to 9 (most urgent).
        not_before: unix time before which the message must not be delivered, or None.
        attempt: which delivery this is, starting at 1; set by the backend on delivery.
        created_at: unix time at which the message was created.
    """

    topic: str
    payload: bytes
    id: str = field(default_factory=new_message_id)
    headers: Mapping[str, str] = field(default_factory=dict)
    key: str | None = None
    priority: int = MIN_PRIORITY
    not_before: float | None = None
    attempt: int = 1
    created_at: float = field(default_factory=time.time)

    @classmethod
    def build(
        cls,
        topic: object,
        payload: Any,
        *,
        headers: object = None,
        key: object = None,
        priority: object = MIN_PRIORITY,
        delay: object = None,
        message_id: object = None,
    ) -> Message:
        """Validate and build a message whose payload is ``payload`` encoded as JSON.

        ``delay`` (seconds from now, finite and >= 0) sets ``not_before``. ``key`` and
        ``message_id`` are strings; ``headers`` maps strings to strings, and names starting
        with ``x-dlq-`` are reserved for dead-lettering. The parameters are typed ``object``
        because this is where they are checked: a compiled build would otherwise refuse a
        wrong type with a bare ``TypeError`` that names no parameter, before the checks run.

        Raises:
            InvalidTopic: bad topic name.
            InvalidMessage: bad priority, delay, key, id, headers or a non-JSON payload.
        """
        name = topic if type(topic) is str and topic in _valid_topics else validate_topic(topic)
        level = (
            priority
            if type(priority) is int and MIN_PRIORITY <= priority <= MAX_PRIORITY
            else check_priority(priority)
        )
        seconds = 0.0
        if delay is not None:
            if isinstance(delay, bool) or not isinstance(delay, int | float):
                raise InvalidMessage("delay must be a finite, non-negative number of seconds")
            try:
                seconds = float(delay)
            except OverflowError:  # an int beyond any float: never deliverable either
                seconds = math.inf
            if not math.isfinite(seconds) or seconds < 0:
                raise InvalidMessage("delay must be a finite, non-negative number of seconds")
        if key is not None and not isinstance(key, str):
            raise InvalidMessage("key must be a string")
        if message_id is None:
            message_id = new_message_id()
        elif not isinstance(message_id, str) or not message_id:
            raise InvalidMessage("message_id must be a non-empty string")
        clean_headers: dict[str, str] = {}
        if headers is not None:
            clean_headers = check_headers(headers)
            for header in clean_headers:
                if header.lower().startswith(RESERVED_HEADER_PREFIX):
                    raise InvalidMessage(
                        f"header {header!r}: names starting with {RESERVED_HEADER_PREFIX!r} "
                        "are reserved"
                    )
        now = time.time()
        return Message.restore(
            name,
            codec.encode(payload),
            message_id,
            clean_headers,
            key,
            level,
            now + seconds if seconds else None,
            1,
            now,
        )

    @staticmethod
    def restore(
        topic: str,
        payload: bytes,
        id: str,
        headers: Mapping[str, str],
        key: str | None,
        priority: int,
        not_before: float | None,
        attempt: int,
        created_at: float,
    ) -> Message:
        """A message from fields a backend stored, every one given, nothing validated.

        The fast constructor for backends rebuilding messages they hold (about a quarter of
        the cost of ``Message(...)``, whose frozen ``__init__`` goes through
        ``object.__setattr__`` per field). Fields must already be valid: use
        :meth:`build` for anything that comes from a user.
        """
        if COMPILED:
            # mypyc: Message is a native class (its __class__ cannot be assigned) whose
            # dataclass __init__ is interpreted code calling object.__setattr__ per field; compiled
            # stores to a Message bypass the frozen __setattr__ and set the slots directly.
            fast = Message.__new__(Message)
            fast.topic = topic  # type: ignore[misc]
            fast.payload = payload  # type: ignore[misc]
            fast.id = id  # type: ignore[misc]
            fast.headers = headers  # type: ignore[misc]
            fast.key = key  # type: ignore[misc]
            fast.priority = priority  # type: ignore[misc]
            fast.not_before = not_before  # type: ignore[misc]
            fast.attempt = attempt  # type: ignore[misc]
            fast.created_at = created_at  # type: ignore[misc]
            return fast
        message: Any = _new_unfrozen(_UnfrozenMessage)
        message.topic = topic
        message.payload = payload
        message.id = id
        message.headers = headers
        message.key = key
        message.priority = priority
        message.not_before = not_before
        message.attempt = attempt
        message.created_at = created_at
        message.__class__ = Message  # see _UnfrozenMessage
        return message  # type: ignore[no-any-return]

    def __reduce__(self) -> tuple[Any, ...]:
        # mypyc: a native frozen class unpickles by setattr per field, which the frozen
        # __setattr__ refuses; rebuild through restore instead (same result interpreted).
        # restore takes the fields in their declared order.
        return (Message.restore, tuple(getattr(self, f.name) for f in fields(Message)))

    def json(self) -> Any:
        """The payload decoded from JSON (raises :class:`InvalidMessage` if it is not JSON)."""
        return codec.decode(self.payload)

    def with_attempt(self, attempt: int) -> Message:
        """A copy of this message with ``attempt`` set (backends call this on delivery)."""
        return Message.restore(
            self.topic,
            self.payload,
            self.id,
            self.headers,
            self.key,
            self.priority,
            self.not_before,
            attempt,
            self.created_at,
        )


# Message stays a frozen dataclass (the memory backend shares one instance between groups and
# deliveries, so an accidental write must fail), but its hot constructor fills the same slots
# on an unfrozen twin, then makes it a Message: Python allows assigning ``__class__`` between
# classes whose slots are the same. Plain attribute stores cost a fraction of the frozen
# ``__init__`` (``object.__setattr__`` per field) and half of calling each slot's descriptor.
class _UnfrozenMessage:
    """A :class:`Message` being built: the same slots, writable (filled by ``restore``)."""

    __slots__ = Message.__slots__


_new_unfrozen = object.__new__


def check_priority(priority: object) -> int:
    """Return ``priority`` if it is an int in 0-9, else raise :class:`InvalidMessage`."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidMessage("priority must be an integer from 0 to 9")
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise InvalidMessage(f"priority must be from {MIN_PRIORITY} to {MAX_PRIORITY}")
    return priority


def check_fields(message: Message) -> None:
    """Raise :class:`InvalidMessage` unless ``message``'s fields are what every backend
    stores: a non-empty ``str`` id, priority 0-9, ``bytes`` payload, ``str`` or None key and
    str -> str headers (the topic is each backend's to check, against its cached names).

    Backends check every message of a batch with it before storing any. A message from
    :meth:`Message.build` always passes; one made with ``Message(...)`` may not (a compiled
    build's native ``Message`` refuses a payload, key or id of the wrong type at construction
    already, with ``TypeError``). The fields are read as ``object``: compiled, their types
    are only what the class declares, and these checks are for values that are not.
    """
    priority: object = message.priority
    if type(priority) is not int or not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        check_priority(priority)
    payload: object = message.payload
    if not isinstance(payload, bytes):
        raise InvalidMessage("message payload must be bytes (see queuekit.codec)")
    key: object = message.key
    if key is not None and not isinstance(key, str):
        raise InvalidMessage("message key must be a string or None")
    message_id: object = message.id
    if not isinstance(message_id, str) or not message_id:
        raise InvalidMessage("message id must be a non-empty string")
    if message.headers:
        check_headers(message.headers)


def check_headers(headers: object) -> dict[str, str]:
    """Return headers as a plain str->str dict, or raise :class:`InvalidMessage`."""
    if not isinstance(headers, Mapping):
        raise InvalidMessage("headers must map non-empty strings to strings")
    clean: dict[str, str] = {}
    for name, value in headers.items():
        if not isinstance(name, str) or not name or not isinstance(value, str):
            raise InvalidMessage("headers must map non-empty strings to strings")
        clean[name] = value
    return clean


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A dead-lettered message and why it was dead-lettered."""

    message: Message
    reason: str
    error: str | None
    group: str
    attempts: int
    dead_lettered_at: float

    @property
    def topic(self) -> str:
        """The topic the message was originally published to."""
        return self.message.topic


def dead_letter_headers(
    message: Message, *, reason: str, error: str | None, group: str, attempts: int
) -> dict[str, str]:
    """The message's headers plus the ``x-dlq-*`` headers that describe its dead-lettering."""
    headers = dict(message.headers)
    headers[DLQ_REASON] = reason
    if error is not None:
        headers[DLQ_ERROR] = error[:2000]
    headers[DLQ_GROUP] = group
    headers[DLQ_ATTEMPTS] = str(attempts)
    headers[DLQ_AT] = repr(time.time())
    headers[DLQ_TOPIC] = message.topic
    return headers


def parse_dead_letter(message: Message) -> DeadLetter:
    """Rebuild a :class:`DeadLetter` from a message carrying ``x-dlq-*`` headers.

    The returned ``message`` has the original headers (without ``x-dlq-*``) and topic.
    Missing or malformed counts (a dead letter written by another client) read as 0.
    """
    headers = dict(message.headers)
    reason = headers.pop(DLQ_REASON, "unknown")
    error = headers.pop(DLQ_ERROR, None)
    group = headers.pop(DLQ_GROUP, DEFAULT_GROUP)
    attempts = int(_number(headers.pop(DLQ_ATTEMPTS, "0")))
    at = _number(headers.pop(DLQ_AT, "0"))
    topic = headers.pop(DLQ_TOPIC, message.topic.removesuffix(DLQ_SUFFIX))
    original = replace(message, topic=topic, headers=headers, attempt=1)
    return DeadLetter(original, reason, error, group, attempts, at)


def _number(raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        return 0.0
    return value if math.isfinite(value) else 0.0
