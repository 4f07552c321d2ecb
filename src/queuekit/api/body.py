"""Bounded request bodies: size limits enforced before parsing, and strict JSON parsing.

The size rules (all derived from ``MAX_PAYLOAD_BYTES``, ``P`` below):

* ``POST /send``: the request body may be at most ``P + 64 KiB`` (room for the topic,
  headers and key around the payload);
* ``POST /send/batch``: the request body may be at most ``8 * P`` (:data:`BATCH_BODY_FACTOR`);
* any other request body: at most ``P + 64 KiB``;
* and in both send endpoints, each message's payload re-encoded as compact JSON must be at
  most ``P`` bytes (checked by the producer, see :class:`queuekit.client.Producer`).

:class:`BodyLimitMiddleware` answers 413 from the ``Content-Length`` header alone when it
announces too much, and otherwise reads the body as it streams in, stopping with a 413 as
soon as it passes the limit: an oversize body is never held in memory whole.

Bodies must be sent as ``application/json`` (or with no Content-Type): other media types are
a 415. Besides being explicit, this means a browser cannot post to the API from another site
without a CORS preflight (HTML forms can only send form or text bodies).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from queuekit.api.problems import Problem, invalid_request

M = TypeVar("M", bound=BaseModel)

ENVELOPE_ALLOWANCE = 64 * 1024
BATCH_BODY_FACTOR = 8
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def body_limits(max_payload_bytes: int) -> Callable[[str], int]:
    """The body size limit for a request path, given ``MAX_PAYLOAD_BYTES``."""
    single = max_payload_bytes + ENVELOPE_ALLOWANCE
    batch = max(single, BATCH_BODY_FACTOR * max_payload_bytes)

    def limit_for(path: str) -> int:
        return batch if path.rstrip("/").endswith("/send/batch") else single

    return limit_for


def too_large(limit: int) -> Problem:
    """The 413 problem for a body over ``limit`` bytes."""
    return Problem(
        413,
        "payload-too-large",
        f"the request body is larger than {limit} bytes",
        title="Payload too large",
    )


class BodyLimitMiddleware:
    """Reject request bodies over the limit of their path (413) before the app reads them.

    The body is read here (up to the limit) and replayed to the app, so neither a lying
    ``Content-Length`` nor a chunked body can push more than the limit into memory.
    """

    def __init__(self, app: ASGIApp, *, limit_for: Callable[[str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS:
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        limit = self.limit_for(path)
        declared = _content_length(scope)
        if declared is None:
            problem = Problem(400, "bad-content-length", "the Content-Length header is invalid")
            await problem.response(path)(scope, receive, send)
            return
        if declared > limit:
            await too_large(limit).response(path)(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                await too_large(limit).response(path)(scope, receive, send)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        await self.app(scope, _replay(b"".join(chunks), receive), send)


def _content_length(scope: Scope) -> int | None:
    """The declared length (0 if absent), or None if the header is malformed."""
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                length = int(value)
            except ValueError:
                return None
            return length if length >= 0 else None
    return 0


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # then wait for the disconnect, as the server would

    return replay


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body from ASGI ``receive``, or None if the client disconnected."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def parse_json(body: bytes, content_type: str | None, *, empty: Any = ...) -> Any:
    """Decode a JSON request body.

    ``content_type`` must be absent or JSON (``application/json``, ``*/*+json``), else 415.
    An empty body returns ``empty`` if given, else is a 400, as is malformed JSON.
    """
    if content_type:
        media = content_type.split(";", 1)[0].strip().lower()
        if media != "application/json" and not media.endswith("+json"):
            raise Problem(
                415,
                "unsupported-media-type",
                f"send the body as application/json, not {media!r}",
                title="Unsupported media type",
            )
    if not body.strip():
        if empty is not ...:
            return empty
        raise Problem(
            400,
            "malformed-json",
            "the request body is empty; send a JSON object",
            title="Malformed JSON",
        )
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise Problem(
            400, "malformed-json", f"the body is not valid JSON: {exc}", title="Malformed JSON"
        ) from None


def validate_body(model: type[M], document: Any) -> M:
    """Validate a decoded body against ``model``; a 422 problem lists what is wrong."""
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        errors = [
            {**error, "loc": ("body", *error["loc"])}
            for error in exc.errors(include_url=False, include_input=False)
        ]
        raise invalid_request(errors) from None
