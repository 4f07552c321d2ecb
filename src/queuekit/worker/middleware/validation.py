"""Payload validation: bytes -> the handler's argument, or straight to the dead-letter queue.

With a schema the raw bytes go through ``schema.model_validate_json`` (parsing and
validation in one pass, in Rust); without one they are decoded with orjson (and pydantic is
not even imported). A payload that
fails is dead-lettered at once with reason ``invalid_payload``: retrying cannot fix it. The
recorded error lists field locations and messages only, never the offending values, so no
payload content leaks into headers or logs.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TYPE_CHECKING

import orjson
from mypy_extensions import mypyc_attr

from queuekit.worker.middleware.base import MAX_ERROR_LENGTH, Context, DeadLetterNow, Next, Services

if TYPE_CHECKING:
    from pydantic import BaseModel, ValidationError

    from queuekit.worker.app import HandlerSpec

__all__ = ["INVALID_PAYLOAD", "ValidationMiddleware", "summarize_validation_error"]

INVALID_PAYLOAD = "invalid_payload"


def summarize_validation_error(exc: ValidationError) -> str:
    """``loc: msg; loc: msg`` for each error, without the input values."""
    parts = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        location = ".".join(str(part) for part in error["loc"]) or "payload"
        parts.append(f"{location}: {error['msg']}")
    return f"{exc.title}: " + "; ".join(parts)


@mypyc_attr(allow_interpreted_subclasses=True)  # mypyc: a public base
class ValidationMiddleware:
    """Set ``ctx.payload`` from the message body, or dead-letter it as ``invalid_payload``."""

    def bind(self, call_next: Next, spec: HandlerSpec, services: Services) -> Next:
        """The same layer for ``spec``: its JSON or its schema path chosen once."""
        if spec.schema is None:
            return _DecodeJSON(call_next).decode
        return _ValidateSchema(call_next, spec.schema).validate

    async def __call__(self, ctx: Context, call_next: Next) -> None:
        await self.bind(call_next, ctx.spec, ctx.services)(ctx)


class _DecodeJSON:
    """Validation of a handler without a schema: the payload is any JSON value.

    Not a coroutine: it has nothing to do after the rest of the chain, so it raises or hands
    back the rest's awaitable, and a delivery goes through one coroutine less.
    """

    __slots__ = ("_call_next",)

    def __init__(self, call_next: Next) -> None:
        self._call_next = call_next

    def decode(self, ctx: Context) -> Awaitable[None]:
        """Set ``ctx.payload`` and hand ``ctx`` to the rest, or raise DeadLetterNow."""
        try:
            ctx.payload = orjson.loads(ctx.delivery.message.payload)
        except orjson.JSONDecodeError as exc:
            error = f"payload is not valid JSON: {exc}"[:MAX_ERROR_LENGTH]
            raise DeadLetterNow(INVALID_PAYLOAD, error, stage=INVALID_PAYLOAD) from None
        return self._call_next(ctx)


class _ValidateSchema:
    """Validation of a handler with a schema (a pydantic model); not a coroutine either."""

    __slots__ = ("_call_next", "_schema")

    def __init__(self, call_next: Next, schema: type[BaseModel]) -> None:
        self._call_next = call_next
        self._schema = schema

    def validate(self, ctx: Context) -> Awaitable[None]:
        """Set ``ctx.payload`` and hand ``ctx`` to the rest, or raise DeadLetterNow."""
        # Imported here: a worker without schemas never loads pydantic (a schema is a
        # pydantic model, so this is only a lookup in sys.modules).
        from pydantic import ValidationError

        try:
            ctx.payload = self._schema.model_validate_json(ctx.delivery.message.payload)
        except ValidationError as exc:
            error = summarize_validation_error(exc)[:MAX_ERROR_LENGTH]
            raise DeadLetterNow(INVALID_PAYLOAD, error, stage=INVALID_PAYLOAD) from None
        return self._call_next(ctx)
