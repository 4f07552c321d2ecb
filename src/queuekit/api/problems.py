"""RFC 9457 problem details: every error the API returns is ``application/problem+json``.

A problem body has ``type`` (a URI naming the kind of problem), ``title`` (fixed per type),
``status``, ``detail`` (this occurrence, safe to show to the caller) and ``instance`` (the
request path); validation problems add ``errors`` (a list of ``{"loc", "msg", "type"}``).
Nothing internal (tracebacks, exception reprs, credentials) ever goes into a problem.

Routes raise :class:`Problem`; :func:`install_problem_handlers` turns it, queuekit's errors,
FastAPI's validation errors and Starlette's HTTP errors into problem responses, and
:class:`CatchAllMiddleware` turns any other exception into a bare 500 problem (logged).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from http import HTTPStatus
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from queuekit.errors import (
    BrokerError,
    BrokerUnavailable,
    InvalidMessage,
    InvalidTopic,
    NotSupported,
    PayloadTooLarge,
    PublishError,
)

PROBLEM_MEDIA_TYPE = "application/problem+json"
ANSWERED_ERRORS = (InvalidTopic, InvalidMessage, BrokerError)
"""queuekit's errors that routes may let through: the problem handlers answer them."""
PROBLEM_TYPE_PREFIX = "urn:queuekit:problem:"
RETRY_AFTER_SECONDS = 5

log = logging.getLogger("queuekit.api")


class Problem(Exception):
    """An HTTP error to answer with a problem document.

    Args:
        status: the HTTP status code.
        slug: the problem type's short name; the ``type`` member is
            ``urn:queuekit:problem:<slug>`` (or ``about:blank`` for ``slug=None``).
        detail: a human-readable explanation of this occurrence, shown to the caller.
        title: a short summary of the problem type (default: the status' reason phrase).
        errors: validation errors, each a mapping with at least ``loc`` and ``msg``.
        headers: extra response headers (``Retry-After``, ``WWW-Authenticate``...).
    """

    def __init__(
        self,
        status: int,
        slug: str | None,
        detail: str,
        *,
        title: str | None = None,
        errors: Sequence[Mapping[str, Any]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.type = PROBLEM_TYPE_PREFIX + slug if slug else "about:blank"
        self.title = title or HTTPStatus(status).phrase
        self.detail = detail
        self.errors = list(errors) if errors is not None else None
        self.headers = dict(headers or {})

    def body(self, instance: str | None = None) -> dict[str, Any]:
        """The problem document as a JSON-ready dict."""
        document: dict[str, Any] = {
            "type": self.type,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        }
        if instance is not None:
            document["instance"] = instance
        if self.errors is not None:
            document["errors"] = self.errors
        return document

    def response(self, instance: str | None = None) -> Response:
        """The problem as an ``application/problem+json`` response."""
        return Response(
            orjson.dumps(self.body(instance)),
            status_code=self.status,
            headers=self.headers,
            media_type=PROBLEM_MEDIA_TYPE,
        )


def service_unavailable(detail: str) -> Problem:
    """A 503 problem asking the caller to retry later (with ``Retry-After``)."""
    return Problem(
        503,
        "broker-unavailable",
        detail,
        title="Broker unavailable",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def problem_from_error(exc: Exception) -> Problem | None:
    """The problem answering one of queuekit's errors, or None if it is not one we map.

    The mapping: bad topic name -> 400, payload over the limit -> 413, other invalid
    message -> 422, broker unreachable or not confirming -> 503 (retry later),
    unsupported operation -> 501.
    """
    if isinstance(exc, InvalidTopic):
        return Problem(400, "invalid-topic", str(exc), title="Invalid topic")
    if isinstance(exc, PayloadTooLarge):
        return Problem(413, "payload-too-large", str(exc), title="Payload too large")
    if isinstance(exc, InvalidMessage):
        return Problem(422, "invalid-message", str(exc), title="Invalid message")
    if isinstance(exc, NotSupported):
        return Problem(501, "not-supported", str(exc), title="Not supported by this backend")
    # Broker errors are logged, not echoed: their text may name hosts or URLs.
    if isinstance(exc, BrokerUnavailable):
        log.warning("broker unavailable: %s", exc)
        return service_unavailable("the broker cannot be reached; retry later")
    if isinstance(exc, PublishError):
        log.warning("publish not confirmed: %s", exc)
        return service_unavailable(
            "the broker did not confirm the publish; retry later (with the same Idempotency-Key)"
        )
    if isinstance(exc, BrokerError):
        log.warning("broker error: %s", exc)
        return service_unavailable("the broker failed; retry later")
    return None


def answerable(exc: Exception) -> Problem | None:
    """The problem answering ``exc`` if the API answers it as a 4xx/5xx problem, else None.

    ``exc`` is a :class:`Problem` itself, or one of queuekit's errors that
    :func:`problem_from_error` maps; anything else is a bug (answered 500 by the caller).
    """
    if isinstance(exc, Problem):
        return exc
    if isinstance(exc, ANSWERED_ERRORS):
        return problem_from_error(exc)
    return None


def validation_errors(raw: Sequence[Any]) -> list[dict[str, Any]]:
    """Pydantic/FastAPI errors reduced to ``loc``, ``msg`` and ``type`` (no echoed input)."""
    return [
        {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error["type"]}
        for error in raw
    ]


def invalid_request(errors: Sequence[Any], detail: str = "the request is invalid") -> Problem:
    """A 422 problem listing validation errors."""
    return Problem(
        422,
        "validation-error",
        detail,
        title="Request validation failed",
        errors=validation_errors(errors),
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error that reaches FastAPI's exception layer with a problem document."""

    async def on_problem(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, Problem)
        return exc.response(request.url.path)

    async def on_validation(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        if any(error.get("type") == "json_invalid" for error in errors):
            problem = Problem(
                400, "malformed-json", "the body is not valid JSON", title="Malformed JSON"
            )
        else:
            problem = invalid_request(errors)
        return problem.response(request.url.path)

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        detail = exc.detail if isinstance(exc.detail, str) else HTTPStatus(exc.status_code).phrase
        problem = Problem(exc.status_code, None, detail, headers=exc.headers)
        return problem.response(request.url.path)

    async def on_queuekit_error(request: Request, exc: Exception) -> Response:
        problem = problem_from_error(exc)
        if problem is None:  # an error we do not map is a bug: a 500, without internals
            log.error("unhandled error on %s", request.url.path, exc_info=exc)
            problem = internal_error()
        return problem.response(request.url.path)

    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(HTTPException, on_http_error)
    for error_type in ANSWERED_ERRORS:
        app.add_exception_handler(error_type, on_queuekit_error)


def internal_error() -> Problem:
    """The 500 problem: says nothing about what went wrong inside."""
    return Problem(
        500, "internal-error", "an unexpected error occurred; it has been logged", title=None
    )


class CatchAllMiddleware:
    """Answer any exception that escaped the routes with a 500 problem, and log it.

    Starlette's own last-resort handler re-raises after answering (so the server logs the
    traceback a second time); this one logs once, with the traceback, and swallows it.
    If the response had already started, the exception is logged and the response cut short.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                return
            response = internal_error().response(scope.get("path"))
            await response(scope, receive, send)
