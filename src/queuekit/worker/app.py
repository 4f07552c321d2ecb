"""The handler registry: ``App`` and the ``@app.handler(topic, ...)`` decorator."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from queuekit.errors import ConfigError, InvalidTopic
from queuekit.message import DEFAULT_GROUP, validate_group, validate_topic

if TYPE_CHECKING:  # pydantic is imported only by apps whose handlers have a schema
    from pydantic import BaseModel

__all__ = ["App", "HandlerSpec", "IdempotencyKey"]

F = TypeVar("F", bound=Callable[..., Any])

IdempotencyKey = Callable[[Any], str] | Literal[False] | None
"""``None``: the message id; a callable: a business key from the payload; ``False``: off."""

DEFAULT_RETRIES = 3
DEFAULT_BACKOFF = 1.0
DEFAULT_MAX_BACKOFF = 300.0
DEFAULT_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class HandlerSpec:
    """One registered handler and how its messages are processed.

    Attributes:
        topic: the topic it consumes.
        group: its consumer group; every group of a topic receives every message.
        func: the handler, ``async def`` or plain ``def`` (run on a worker thread), called
            with the payload and, if it accepts a second positional parameter, the
            :class:`~queuekit.message.Message`.
        schema: a pydantic model validating the payload, or None (the handler then gets
            the decoded JSON value).
        retries: retries after the first attempt (at most ``retries + 1`` attempts).
        backoff: base of the exponential backoff between attempts, in seconds.
        max_backoff: ceiling of one backoff delay, in seconds.
        timeout: seconds one call may take, or None for no limit.
        idempotency_key: see :data:`IdempotencyKey`.
        concurrency: handler calls in flight at once (and prefetch), or None for the
            worker's default.
        is_async: whether ``func`` is a coroutine function (derived).
        takes_message: whether ``func`` receives the message as well (derived).

    Raises:
        ConfigError: on construction, if a value is out of range or ``func`` cannot be
            called with the payload.
    """

    topic: str
    group: str
    func: Callable[..., Any]
    schema: type[BaseModel] | None = None
    retries: int = DEFAULT_RETRIES
    backoff: float = DEFAULT_BACKOFF
    max_backoff: float = DEFAULT_MAX_BACKOFF
    timeout: float | None = DEFAULT_TIMEOUT
    idempotency_key: IdempotencyKey = None
    concurrency: int | None = None
    is_async: bool = field(init=False, repr=False, compare=False)
    takes_message: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = f"handler {getattr(self.func, '__qualname__', self.func)!r} of {self.topic!r}"
        try:
            validate_topic(self.topic)
            validate_group(self.group)
        except InvalidTopic as exc:
            raise ConfigError(f"{where}: {exc}") from exc
        _check_options(self, where)
        object.__setattr__(self, "is_async", _is_async(self.func))
        object.__setattr__(self, "takes_message", _takes_message(self.func, where))

    @property
    def max_attempts(self) -> int:
        """How many deliveries a message gets before it is dead-lettered."""
        return self.retries + 1


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_options(spec: HandlerSpec, where: str) -> None:
    if not callable(spec.func):
        raise ConfigError(f"{where}: the handler must be callable")
    if isinstance(spec.retries, bool) or not isinstance(spec.retries, int) or spec.retries < 0:
        raise ConfigError(f"{where}: retries must be an integer >= 0, not {spec.retries!r}")
    if not _is_number(spec.backoff) or not spec.backoff >= 0:
        raise ConfigError(f"{where}: backoff must be a number of seconds >= 0")
    if not _is_number(spec.max_backoff) or not spec.max_backoff >= spec.backoff:
        raise ConfigError(f"{where}: max_backoff must be a number of seconds >= backoff")
    if spec.timeout is not None and (not _is_number(spec.timeout) or not spec.timeout > 0):
        raise ConfigError(f"{where}: timeout must be a positive number of seconds or None")
    if spec.concurrency is not None and (
        isinstance(spec.concurrency, bool)
        or not isinstance(spec.concurrency, int)
        or spec.concurrency < 1
    ):
        raise ConfigError(f"{where}: concurrency must be an integer >= 1 or None")
    if spec.schema is not None and not _is_model(spec.schema):
        raise ConfigError(f"{where}: schema must be a pydantic BaseModel subclass")
    key = spec.idempotency_key
    if not (key is None or key is False or callable(key)):
        raise ConfigError(f"{where}: idempotency_key must be None, False or a callable")


def _is_model(schema: object) -> bool:
    from pydantic import BaseModel

    return isinstance(schema, type) and issubclass(schema, BaseModel)


def _is_async(func: Callable[..., Any]) -> bool:
    call = getattr(type(func), "__call__", None)  # noqa: B004 - instances with async __call__
    return inspect.iscoroutinefunction(func) or inspect.iscoroutinefunction(call)


def _takes_message(func: Callable[..., Any], where: str) -> bool:
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):  # builtins without a signature: payload only
        return False
    positional = [
        p
        for p in parameters
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    ]
    variadic = any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters)
    required = [p for p in positional if p.default is inspect.Parameter.empty]
    required_keywords = [
        p.name
        for p in parameters
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty
    ]
    if not positional and not variadic:
        raise ConfigError(f"{where}: the handler must take the payload as a positional parameter")
    if len(required) > 2 or required_keywords:
        raise ConfigError(f"{where}: the handler may require only (payload) or (payload, message)")
    return variadic or len(positional) >= 2


class App:
    """A named set of handlers, run by a :class:`~queuekit.worker.Worker`.

    ``name`` labels the worker's logs. (topic, group) pairs are unique within an app.
    """

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not name.strip():
            raise ConfigError("an App needs a non-empty name")
        self.name = name
        self._handlers: dict[tuple[str, str], HandlerSpec] = {}

    def __repr__(self) -> str:
        return f"App({self.name!r}, handlers={len(self._handlers)})"

    def handler(
        self,
        topic: str,
        *,
        schema: type[BaseModel] | None = None,
        retries: int = DEFAULT_RETRIES,
        backoff: float = DEFAULT_BACKOFF,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
        timeout: float | None = DEFAULT_TIMEOUT,
        group: str = DEFAULT_GROUP,
        idempotency_key: IdempotencyKey = None,
        concurrency: int | None = None,
    ) -> Callable[[F], F]:
        """Register the decorated function as the handler of (``topic``, ``group``).

        See :class:`HandlerSpec` for the options. The function is returned unchanged.

        Raises:
            ConfigError: an option is invalid, or (topic, group) already has a handler.
        """

        def register(func: F) -> F:
            self.add(
                HandlerSpec(
                    topic=topic,
                    group=group,
                    func=func,
                    schema=schema,
                    retries=retries,
                    backoff=backoff,
                    max_backoff=max_backoff,
                    timeout=timeout,
                    idempotency_key=idempotency_key,
                    concurrency=concurrency,
                )
            )
            return func

        return register

    def add(self, spec: HandlerSpec) -> HandlerSpec:
        """Register a prepared :class:`HandlerSpec` (what the decorator does)."""
        slot = (spec.topic, spec.group)
        if slot in self._handlers:
            raise ConfigError(
                f"topic {spec.topic!r} already has a handler in group {spec.group!r}: "
                "use another group to receive the same messages twice"
            )
        self._handlers[slot] = spec
        return spec

    @property
    def handlers(self) -> tuple[HandlerSpec, ...]:
        """Every handler, in registration order."""
        return tuple(self._handlers.values())

    @property
    def topics(self) -> frozenset[str]:
        """The topics that have at least one handler."""
        return frozenset(topic for topic, _ in self._handlers)

    def schema_for(self, topic: str) -> type[BaseModel] | None:
        """The schema of ``topic``'s first handler that has one, or None."""
        for spec in self._handlers.values():
            if spec.topic == topic and spec.schema is not None:
                return spec.schema
        return None
