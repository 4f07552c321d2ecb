"""Publishing from Python code: :class:`Producer`, :func:`send_message`, :func:`send_message_sync`.

:class:`Producer` wraps a connected :class:`~queuekit.broker.Broker`: it validates and
encodes messages, enforces the payload size limit, publishes, and counts
``queue_messages_sent_total`` / ``queue_errors_total{stage="publish"}``. Concurrent sends
are batched by the broker (group commit), so ``asyncio.gather`` of many ``send`` calls costs
few round trips; ``send_many`` publishes a list in one call.

:func:`send_message` is the one-liner of the product spec::

    await send_message({"topic": "emails", "payload": {"to": "a@example.com"}})

It uses a *default producer*, created on first use from ``Settings.from_env()`` (or the
``settings`` passed), connected under a lock and then reused. A broker connection belongs
to the event loop that opened it, so there is one default producer per event loop (and per
settings); ``await close_default_producer()`` closes those of the running loop.
:func:`send_message_sync` does the same from non-async code: it runs on a private event
loop in a daemon thread, is safe to call from several threads at once, and closes its
producers at interpreter exit.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
import weakref
from collections import Counter
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from queuekit.backends import create_broker
from queuekit.broker import Broker
from queuekit.errors import (
    ConfigError,
    InvalidMessage,
    PayloadTooLarge,
    PublishError,
    QueuekitError,
)
from queuekit.message import Message
from queuekit.metrics import Metrics
from queuekit.settings import Settings

__all__ = [
    "Producer",
    "close_default_producer",
    "close_default_producer_sync",
    "get_default_producer",
    "send_message",
    "send_message_sync",
]

T = TypeVar("T")
DEFAULT_PUBLISH_TIMEOUT = 10.0


class _Required:
    """Marks ``payload=`` as required in keyword form (``None`` is a valid JSON payload)."""

    def __repr__(self) -> str:
        return "<required>"


_REQUIRED: Any = _Required()
_MESSAGE_FIELDS = frozenset({"topic", "payload", "priority", "delay", "key", "headers"})
_SEND_MANY_FIELDS = _MESSAGE_FIELDS | {"message_id"}


class Producer:
    """Validates, encodes and publishes messages on a connected broker.

    Args:
        broker: the broker to publish on; the producer neither connects nor closes it
            unless it owns it (see :meth:`close`).
        metrics: where to count sent messages and publish errors (optional).
        max_payload_bytes: the largest encoded payload accepted (None: no limit).
        owns_broker: whether :meth:`close` closes the broker too.
        publish_timeout: seconds to wait for the broker to confirm a publish before
            giving up with :class:`~queuekit.errors.PublishError` (None: wait forever).
    """

    def __init__(
        self,
        broker: Broker,
        *,
        metrics: Metrics | None = None,
        max_payload_bytes: int | None = None,
        owns_broker: bool = False,
        publish_timeout: float | None = DEFAULT_PUBLISH_TIMEOUT,
    ) -> None:
        self.broker = broker
        self.metrics = metrics
        self.max_payload_bytes = max_payload_bytes
        self.publish_timeout = publish_timeout
        self._owns_broker = owns_broker

    def build(
        self,
        topic: str,
        payload: Any,
        *,
        priority: int = 0,
        delay: float | None = None,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        message_id: str | None = None,
    ) -> Message:
        """Validate and build one message (see :meth:`Message.build`) within the size limit.

        Raises:
            InvalidTopic: bad topic name.
            PayloadTooLarge: the encoded payload is over ``max_payload_bytes``.
            InvalidMessage: bad priority, delay, key, headers or a non-JSON payload.
        """
        if key is not None and not isinstance(key, str):
            raise InvalidMessage("key must be a string")
        if delay is not None and (isinstance(delay, bool) or not isinstance(delay, int | float)):
            raise InvalidMessage("delay must be a number of seconds")
        message = Message.build(
            topic,
            payload,
            priority=priority,
            delay=delay,
            key=key,
            headers=headers,
            message_id=message_id,
        )
        limit = self.max_payload_bytes
        if limit is not None and len(message.payload) > limit:
            raise PayloadTooLarge(
                f"the payload is {len(message.payload)} bytes as JSON; "
                f"the limit is {limit} bytes (MAX_PAYLOAD_BYTES)"
            )
        return message

    async def publish(self, messages: Sequence[Message]) -> None:
        """Publish built messages in one broker call; return once the broker holds them.

        Raises:
            BrokerUnavailable, PublishError: as :meth:`Broker.publish`, or PublishError
                when the broker did not confirm within ``publish_timeout`` (in which case
                the messages may or may not have been stored). Counted as publish errors.
        """
        if not messages:
            return
        try:
            try:
                async with asyncio.timeout(self.publish_timeout):
                    await self.broker.publish(messages)
            except TimeoutError:
                raise PublishError(
                    f"the broker did not confirm within {self.publish_timeout} s"
                ) from None
        except QueuekitError:
            if self.metrics is not None:
                for topic, count in _per_topic(messages):
                    self.metrics.errors.labels(topic, self.metrics.backend, "publish").inc(count)
            raise
        if self.metrics is not None:
            for topic, count in _per_topic(messages):
                self.metrics.sent(topic, count)

    async def send(
        self,
        topic: str,
        payload: Any,
        *,
        priority: int = 0,
        delay: float | None = None,
        key: str | None = None,
        headers: Mapping[str, str] | None = None,
        message_id: str | None = None,
    ) -> str:
        """Publish one message and return its id once the broker holds it durably."""
        message = self.build(
            topic,
            payload,
            priority=priority,
            delay=delay,
            key=key,
            headers=headers,
            message_id=message_id,
        )
        await self.publish([message])
        return message.id

    async def send_many(self, messages: Iterable[Mapping[str, Any]]) -> list[str]:
        """Publish several messages in one broker call; return their ids in order.

        Each item has the keyword arguments of :meth:`send` (``topic`` and ``payload``
        required). Every item is validated before anything is published.

        Raises:
            InvalidMessage: an item is malformed (the message says which one).
        """
        built: list[Message] = []
        for index, item in enumerate(messages):
            try:
                built.append(self.build(**_message_fields(item, _SEND_MANY_FIELDS)))
            except QueuekitError as exc:
                raise type(exc)(f"message {index}: {exc}") from exc
        await self.publish(built)
        return [message.id for message in built]

    async def close(self) -> None:
        """Close the broker if this producer owns it; idempotent."""
        if self._owns_broker:
            await self.broker.close()

    @classmethod
    def from_settings(cls, settings: Settings, *, metrics: Metrics | None = None) -> Producer:
        """A producer owning a new (not yet connected) broker built from ``settings``."""
        return cls(
            create_broker(settings),
            metrics=metrics,
            max_payload_bytes=settings.max_payload_bytes,
            owns_broker=True,
        )


def _per_topic(messages: Sequence[Message]) -> Iterable[tuple[str, int]]:
    """``(topic, count)`` of non-empty ``messages``; the usual single topic without a Counter."""
    topic = messages[0].topic
    if len(messages) == 1 or all(message.topic == topic for message in messages):
        return ((topic, len(messages)),)
    return Counter(message.topic for message in messages).items()


def _message_fields(item: Mapping[str, Any], allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(item, Mapping):
        raise InvalidMessage("a message must be a mapping with 'topic' and 'payload'")
    unknown = set(item) - allowed
    if unknown:
        raise InvalidMessage(f"unknown message field(s): {', '.join(sorted(map(str, unknown)))}")
    missing = {"topic", "payload"} - set(item)
    if missing:
        raise InvalidMessage(f"a message needs {' and '.join(sorted(missing))}")
    return dict(item)


class _DefaultProducers:
    """The default producers of one event loop, one per settings (None: from the env)."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.producers: dict[Settings | None, Producer] = {}


_defaults: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _DefaultProducers] = (
    weakref.WeakKeyDictionary()
)
_defaults_guard = threading.Lock()


def _loop_defaults() -> _DefaultProducers:
    loop = asyncio.get_running_loop()
    with _defaults_guard:
        defaults = _defaults.get(loop)
        if defaults is None:
            defaults = _defaults[loop] = _DefaultProducers()
        return defaults


async def get_default_producer(settings: Settings | None = None) -> Producer:
    """The running loop's default producer for ``settings`` (None: ``Settings.from_env()``).

    Created and connected on first use (under a lock, so concurrent first calls connect
    once). Raises what ``Broker.connect`` raises (``BrokerUnavailable``) or ``ConfigError``.
    """
    defaults = _loop_defaults()
    producer = defaults.producers.get(settings)
    if producer is not None:
        return producer
    async with defaults.lock:
        producer = defaults.producers.get(settings)
        if producer is None:
            producer = Producer.from_settings(settings or Settings.from_env())
            await producer.broker.connect()
            defaults.producers[settings] = producer
    return producer


async def close_default_producer() -> None:
    """Close the running loop's default producers; the next send creates new ones."""
    defaults = _loop_defaults()
    async with defaults.lock:
        producers = list(defaults.producers.values())
        defaults.producers.clear()
        for producer in producers:
            await producer.close()


async def send_message(
    message: Mapping[str, Any] | None = None,
    /,
    *,
    topic: str | None = None,
    payload: Any = _REQUIRED,
    priority: int = 0,
    delay: float | None = None,
    key: str | None = None,
    headers: Mapping[str, str] | None = None,
    settings: Settings | None = None,
    producer: Producer | None = None,
) -> str:
    """Publish one message and return its id once the broker holds it.

    Either pass a mapping (``{"topic", "payload", "priority"?, "delay"?, "key"?,
    "headers"?}``) or the keyword arguments, not both. The message goes through
    ``producer`` if given, else through the default producer for ``settings`` (see
    :func:`get_default_producer`).

    Raises:
        InvalidTopic, InvalidMessage, PayloadTooLarge: the message is malformed.
        BrokerUnavailable, PublishError: the broker could not take it.
        ConfigError: both ``settings`` and ``producer`` were given, or bad settings.
    """
    if producer is not None and settings is not None:
        raise ConfigError("pass settings or producer to send_message, not both")
    if message is not None:
        if topic is not None or payload is not _REQUIRED:
            raise InvalidMessage("pass either a message mapping or topic=/payload=, not both")
        fields = _message_fields(message, _MESSAGE_FIELDS)
    else:
        if topic is None or payload is _REQUIRED:
            raise InvalidMessage("send_message needs topic= and payload= (or a message mapping)")
        fields = {"topic": topic, "payload": payload, "priority": priority, "delay": delay}
        fields.update({"key": key, "headers": headers})
    if producer is None:
        producer = await get_default_producer(settings)
    return await producer.send(**fields)


class _BackgroundLoop:
    """A private event loop in a daemon thread, for :func:`send_message_sync`."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run ``coroutine`` on the background loop and return its result (blocking)."""
        if threading.current_thread() is self._thread:
            coroutine.close()
            raise RuntimeError("send_message_sync cannot block its own loop: await send_message")
        return asyncio.run_coroutine_threadsafe(coroutine, self._ensure_started()).result()

    def _ensure_started(self) -> asyncio.AbstractEventLoop:
        with self._guard:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(
                    target=loop.run_forever, name="queuekit-send-loop", daemon=True
                )
                thread.start()
                self._loop, self._thread = loop, thread
                atexit.register(self.stop)
            return self._loop

    def stop(self) -> None:
        """Close the loop's default producers, then stop and close the loop; idempotent."""
        with self._guard:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        atexit.unregister(self.stop)
        try:
            asyncio.run_coroutine_threadsafe(close_default_producer(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=10)
            loop.close()


_background = _BackgroundLoop()


def send_message_sync(
    message: Mapping[str, Any] | None = None,
    /,
    *,
    topic: str | None = None,
    payload: Any = _REQUIRED,
    priority: int = 0,
    delay: float | None = None,
    key: str | None = None,
    headers: Mapping[str, str] | None = None,
    settings: Settings | None = None,
    producer: Producer | None = None,
) -> str:
    """:func:`send_message` for non-async code: blocks until the broker holds the message.

    Runs on a private background event loop (started on first use, stopped at interpreter
    exit or by :func:`close_default_producer_sync`), with that loop's default producers.
    Safe to call from several threads; concurrent calls are batched like concurrent
    ``send_message`` calls. A ``producer`` passed in is used from that loop: its broker
    must not be bound to another running event loop. Do not call it from a coroutine
    (it would block the caller's loop): ``await send_message(...)`` there.
    """
    return _background.run(
        send_message(
            message,
            topic=topic,
            payload=payload,
            priority=priority,
            delay=delay,
            key=key,
            headers=headers,
            settings=settings,
            producer=producer,
        )
    )


def close_default_producer_sync() -> None:
    """Close :func:`send_message_sync`'s producers and its background loop (idempotent)."""
    _background.stop()
