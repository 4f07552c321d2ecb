"""``POST /send`` and ``POST /send/batch``: validate everything, then publish in one call.

Checks, in order, each answered with a problem and nothing published: body size (413,
see :mod:`queuekit.api.body`), API key (401), JSON syntax and media type (400, 415),
request shape and types (422), ``Idempotency-Key`` syntax (400), topic name (400), topic
has a handler when a catalog is given (404), payload against the topic's schema (422),
encoded payload size (413). A batch is all-or-nothing at validation: if any message fails,
none is published; the valid batch goes to the broker in one ``publish``.

Requests are not serialized: each one awaits its own publish, and the broker batches
concurrent publishes into few round trips (group commit).

These are the API's hot path, so they are plain ASGI endpoints rather than FastAPI routes:
they read the few headers they need in one pass, parse the body once (orjson, then the
pydantic model), and answer with bytes encoded once. FastAPI's dependency resolution and
response-model serialization cost more per request than all of the work above together.
They answer their own problems (as the app's problem handlers would), so that
:class:`SendShortcut` can serve them ahead of FastAPI's exception layer and router; the
router holds them too, for everything the shortcut leaves to it (other methods get a 405,
``/send/`` a redirect). Their OpenAPI description is :func:`queuekit.api.openapi.send_paths`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from queuekit.api.auth import API_KEY_HEADER
from queuekit.api.body import parse_json, read_body, validate_body
from queuekit.api.context import ApiContext
from queuekit.api.idempotency import (
    IDEMPOTENCY_HEADER,
    REPLAYED_HEADER,
    check_idempotency_key,
    idempotent_message_id,
)
from queuekit.api.problems import Problem, answerable, invalid_request
from queuekit.api.schemas import SendBatchRequest, SendRequest
from queuekit.errors import InvalidMessage, InvalidTopic, PayloadTooLarge
from queuekit.message import Message, validate_topic

_CONTENT_TYPE = b"content-type"
_API_KEY = API_KEY_HEADER.lower().encode("latin-1")
_AUTHORIZATION = b"authorization"
_IDEMPOTENCY_KEY = IDEMPOTENCY_HEADER.lower().encode("latin-1")
_WANTED = frozenset({_CONTENT_TYPE, _API_KEY, _AUTHORIZATION, _IDEMPOTENCY_KEY})
_JSON_HEADER = (b"content-type", b"application/json")
_REPLAYED_HEADER = (REPLAYED_HEADER.lower().encode("latin-1"), b"true")


class SendEndpoint:
    """The ASGI endpoint of ``POST /send`` (one message) or ``POST /send/batch`` (several).

    Answers 202 with ``{"id", "topic"}`` (one message) or ``{"ids"}`` (a batch), plus
    ``Idempotent-Replayed: true`` when an ``Idempotency-Key`` was already served.
    """

    def __init__(self, context: ApiContext, *, batch: bool) -> None:
        self.context = context
        self.batch = batch

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self._serve(scope, receive, send)
        except Exception as exc:  # raised before the answer started: it is sent last
            problem = answerable(exc)
            if problem is None:
                raise
            await problem.response(Request(scope).url.path)(scope, receive, send)

    async def _serve(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = _request_headers(scope)
        principal = self.context.auth.authenticate(
            headers.get(_API_KEY), headers.get(_AUTHORIZATION)
        )
        body = await read_body(receive)
        if body is None:  # the client went away: nobody to answer
            return
        document = parse_json(body, headers.get(_CONTENT_TYPE))
        requests: Sequence[SendRequest]
        if self.batch:
            requests = validate_body(SendBatchRequest, document).messages
        else:
            requests = (validate_body(SendRequest, document),)
        ids, replayed = await _publish(
            self.context,
            requests,
            path=scope["path"],
            document=document,
            principal=principal,
            idempotency_key=headers.get(_IDEMPOTENCY_KEY),
            batch=self.batch,
        )
        answer = orjson.dumps(
            {"ids": ids} if self.batch else {"id": ids[0], "topic": requests[0].topic}
        )
        response_headers = [_JSON_HEADER, (b"content-length", b"%d" % len(answer))]
        if replayed:
            response_headers.append(_REPLAYED_HEADER)
        await send({"type": "http.response.start", "status": 202, "headers": response_headers})
        await send({"type": "http.response.body", "body": answer})


class SendShortcut:
    """Serve ``POST`` to the send endpoints' paths directly; pass anything else to ``app``.

    Installed innermost among the app's middleware (inside the body limit and the
    catch-all), it spares the hot path FastAPI's exception layer and router. Paths are
    matched exactly, below the ``root_path`` as the router matches them.
    """

    def __init__(self, app: ASGIApp, *, endpoints: Mapping[str, ASGIApp]) -> None:
        self.app = app
        self.endpoints = dict(endpoints)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            endpoint = self.endpoints.get(_route_path(scope))
            if endpoint is not None:
                await endpoint(scope, receive, send)
                return
        await self.app(scope, receive, send)


def _route_path(scope: Scope) -> str:
    """The request path below the ``root_path`` (as Starlette's router reads it)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] == "/":
        return path[len(root) :]
    return path


def _request_headers(scope: Scope) -> dict[bytes, str]:
    """The first value of each header the endpoints read, by lowercase name."""
    found: dict[bytes, str] = {}
    for name, value in scope["headers"]:
        if name in _WANTED and name not in found:
            found[name] = value.decode("latin-1")
    return found


async def _publish(
    context: ApiContext,
    requests: Sequence[SendRequest],
    *,
    path: str,
    document: Any,
    principal: str,
    idempotency_key: str | None,
    batch: bool,
) -> tuple[list[str], bool]:
    """Build every message (all checks), then publish them in one call.

    Returns the messages' ids and whether the request was a replay: with an idempotency
    key, a request already served is not published again.
    """
    key = check_idempotency_key(idempotency_key) if idempotency_key is not None else None
    messages = [
        _build(
            context,
            item,
            where=f"messages[{index}]" if batch else "",
            loc=("body", "messages", index) if batch else ("body",),
            message_id=idempotent_message_id(principal, key, index) if key else None,
        )
        for index, item in enumerate(requests)
    ]
    ids = [message.id for message in messages]
    if key is None:
        await context.producer.publish(messages)
        return ids, False

    async def publish() -> None:
        await context.producer.publish(messages)

    fingerprint = hashlib.sha256(
        path.encode() + b"\0" + orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
    ).digest()
    replayed = await context.idempotency.run_once(f"{principal}\0{key}", fingerprint, publish)
    return ids, replayed


def _build(
    context: ApiContext,
    item: SendRequest,
    *,
    where: str,
    loc: tuple[str | int, ...],
    message_id: str | None,
) -> Message:
    prefix = f"{where}: " if where else ""
    try:
        validate_topic(item.topic)
    except InvalidTopic as exc:
        raise Problem(400, "invalid-topic", f"{prefix}{exc}", title="Invalid topic") from None
    catalog = context.catalog
    if catalog is not None:
        if item.topic not in catalog.topics:
            raise Problem(
                404,
                "unknown-topic",
                f"{prefix}no handler is registered for topic {item.topic!r}",
                title="Unknown topic",
            )
        schema = catalog.schema_for(item.topic)
        if schema is not None:
            try:
                schema.model_validate(item.payload)
            except ValidationError as exc:
                errors = [
                    {**error, "loc": (*loc, "payload", *error["loc"])}
                    for error in exc.errors(include_url=False, include_input=False)
                ]
                raise invalid_request(
                    errors, f"{prefix}the payload does not match the schema of {item.topic!r}"
                ) from None
    try:
        return context.producer.build(
            item.topic,
            item.payload,
            priority=item.priority,
            delay=item.delay,
            key=item.key,
            headers=item.headers,
            message_id=message_id,
        )
    except PayloadTooLarge as exc:
        raise Problem(
            413, "payload-too-large", f"{prefix}{exc}", title="Payload too large"
        ) from None
    except InvalidMessage as exc:
        raise Problem(422, "invalid-message", f"{prefix}{exc}", title="Invalid message") from None
