"""``POST /send`` and ``POST /send/batch``: validate everything, then publish in one call.

Checks, in order, each answered with a problem and nothing published: body size (413,
see :mod:`queuekit.api.body`), JSON syntax (400), request shape and types (422), topic name
(400), topic has a handler when a catalog is given (404), payload against the topic's
schema (422), encoded payload size (413). A batch is all-or-nothing at validation: if any
message fails, none is published; the valid batch goes to the broker in one ``publish``.

Requests are not serialized: each one awaits its own publish, and the broker batches
concurrent publishes into few round trips (group commit).
"""

# No ``from __future__ import annotations``: FastAPI must evaluate the route signatures,
# which refer to the router's local ``context``.
import hashlib
from collections.abc import Sequence
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Request, Response
from pydantic import ValidationError

from queuekit.api.body import parse_json, validate_body
from queuekit.api.context import ApiContext
from queuekit.api.idempotency import (
    IDEMPOTENCY_HEADER,
    check_idempotency_key,
    idempotent_message_id,
)
from queuekit.api.openapi import json_request_body, problem_responses
from queuekit.api.problems import Problem, invalid_request
from queuekit.api.schemas import SendBatchRequest, SendBatchResponse, SendRequest, SendResponse
from queuekit.errors import InvalidMessage, InvalidTopic, PayloadTooLarge
from queuekit.message import Message, validate_topic

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=IDEMPOTENCY_HEADER,
        description="Makes a retried POST publish once and return the same ids.",
    ),
]
REPLAYED_HEADER = "Idempotent-Replayed"
_SEND_ERRORS = problem_responses(400, 401, 404, 413, 415, 422, 503)


def send_router(context: ApiContext) -> APIRouter:
    """The routes that publish messages, bound to ``context``."""
    router = APIRouter(tags=["send"])

    @router.post(
        "/send",
        status_code=202,
        response_model=SendResponse,
        summary="Publish one message",
        responses=_SEND_ERRORS,
        openapi_extra=json_request_body(SendRequest),
    )
    async def send(
        request: Request,
        response: Response,
        principal: Annotated[str, Depends(context.auth)],
        idempotency_key: IdempotencyKey = None,
    ) -> SendResponse:
        document = parse_json(await request.body(), request.headers.get("content-type"))
        body = validate_body(SendRequest, document)
        ids = await _publish(
            context, [body], request, response, document, principal, idempotency_key, batch=False
        )
        return SendResponse(id=ids[0], topic=body.topic)

    @router.post(
        "/send/batch",
        status_code=202,
        response_model=SendBatchResponse,
        summary="Publish several messages at once (all validated first)",
        responses=_SEND_ERRORS,
        openapi_extra=json_request_body(SendBatchRequest),
    )
    async def send_batch(
        request: Request,
        response: Response,
        principal: Annotated[str, Depends(context.auth)],
        idempotency_key: IdempotencyKey = None,
    ) -> SendBatchResponse:
        document = parse_json(await request.body(), request.headers.get("content-type"))
        body = validate_body(SendBatchRequest, document)
        ids = await _publish(
            context,
            body.messages,
            request,
            response,
            document,
            principal,
            idempotency_key,
            batch=True,
        )
        return SendBatchResponse(ids=ids)

    return router


async def _publish(
    context: ApiContext,
    requests: Sequence[SendRequest],
    request: Request,
    response: Response,
    document: Any,
    principal: str,
    idempotency_key: str | None,
    *,
    batch: bool,
) -> list[str]:
    """Build every message (all checks), then publish them in one call; return their ids.

    With an idempotency key, a request already served is not published again; its
    response carries ``Idempotent-Replayed: true``.
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

    async def publish() -> None:
        await context.producer.publish(messages)

    if key is None:
        await publish()
    else:
        fingerprint = hashlib.sha256(
            request.url.path.encode() + b"\0" + orjson.dumps(document, option=orjson.OPT_SORT_KEYS)
        ).digest()
        if await context.idempotency.run_once(f"{principal}\0{key}", fingerprint, publish):
            response.headers[REPLAYED_HEADER] = "true"
    return [message.id for message in messages]


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
