"""Payload validation: bytes -> the handler's argument, or straight to the dead-letter queue.

With a schema the raw bytes go through ``schema.model_validate_json`` (parsing and
validation in one pass, in Rust); without one they are decoded with orjson (and pydantic is
not even imported). A payload that
fails is dead-lettered at once with reason ``invalid_payload``: retrying cannot fix it. The
recorded error lists field locations and messages only, never the offending values, so no
payload content leaks into headers or logs.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import orjson

from queuekit.worker.middleware.base import MAX_ERROR_LENGTH, Context, DeadLetterNow, Next, Services

if TYPE_CHECKING:
    from pydantic import ValidationError

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


class ValidationMiddleware:
    """Set ``ctx.payload`` from the message body, or dead-letter it as ``invalid_payload``."""

    def bind(self, call_next: Next, spec: HandlerSpec, services: Services) -> Next:
        """The same layer, pre-bound to the rest of the chain."""
        return functools.partial(self.__call__, call_next=call_next)

    async def __call__(self, ctx: Context, call_next: Next) -> None:
        schema = ctx.spec.schema
        raw = ctx.message.payload
        if schema is None:
            try:
                ctx.payload = orjson.loads(raw)
            except orjson.JSONDecodeError as exc:
                error = f"payload is not valid JSON: {exc}"[:MAX_ERROR_LENGTH]
                raise DeadLetterNow(INVALID_PAYLOAD, error, stage=INVALID_PAYLOAD) from None
        else:
            # Imported here: a worker without schemas never loads pydantic (a schema is a
            # pydantic model, so this is only a lookup in sys.modules).
            from pydantic import ValidationError

            try:
                ctx.payload = schema.model_validate_json(raw)
            except ValidationError as exc:
                error = summarize_validation_error(exc)[:MAX_ERROR_LENGTH]
                raise DeadLetterNow(INVALID_PAYLOAD, error, stage=INVALID_PAYLOAD) from None
        await call_next(ctx)
