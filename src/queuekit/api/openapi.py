"""OpenAPI documentation for what FastAPI cannot see by itself.

Routes that parse their bodies themselves (size-bounded, orjson, 400 vs 422 told apart)
have their request models declared here; the send endpoints, plain ASGI routes FastAPI
does not know about, are described whole by :func:`send_paths`; every error is documented
as an RFC 9457 problem.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from queuekit.api.auth import security_requirements, security_schemes
from queuekit.api.idempotency import IDEMPOTENCY_HEADER, REPLAYED_HEADER
from queuekit.api.problems import PROBLEM_MEDIA_TYPE
from queuekit.api.schemas import SendBatchRequest, SendBatchResponse, SendRequest, SendResponse

_REF = "#/components/schemas/{model}"


class ProblemDetails(BaseModel):
    """An RFC 9457 problem document (``application/problem+json``)."""

    type: str = Field(description="A URI naming the kind of problem.")
    title: str = Field(description="A short summary of the kind of problem.")
    status: int = Field(description="The HTTP status code.")
    detail: str = Field(description="What went wrong this time, for the caller.")
    instance: str | None = Field(default=None, description="The request path.")
    errors: list[dict[str, Any]] | None = Field(
        default=None, description="Validation errors: loc, msg, type."
    )


def json_request_body(model: type[BaseModel]) -> dict[str, Any]:
    """``openapi_extra`` documenting a required JSON body of ``model``."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": _REF.format(model=model.__name__)}}
            },
        }
    }


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses`` documenting problem documents for ``statuses``."""
    schema = {"$ref": _REF.format(model=ProblemDetails.__name__)}
    return {
        status: {
            "description": HTTPStatus(status).phrase,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": schema}},
        }
        for status in statuses
    }


SEND_ERRORS = (400, 401, 404, 413, 415, 422, 503)


def send_paths() -> dict[str, dict[str, Any]]:
    """The OpenAPI path items of ``POST /send`` and ``POST /send/batch``."""
    return {
        "/send": {
            "post": _send_operation(
                "Publish one message", "send_send_post", SendRequest, SendResponse
            )
        },
        "/send/batch": {
            "post": _send_operation(
                "Publish several messages at once (all validated first)",
                "send_batch_send_batch_post",
                SendBatchRequest,
                SendBatchResponse,
            )
        },
    }


def _send_operation(
    summary: str, operation_id: str, request: type[BaseModel], response: type[BaseModel]
) -> dict[str, Any]:
    idempotency = "Makes a retried POST publish once and return the same ids."
    accepted = {
        "description": "Accepted: the broker holds the message(s) durably.",
        "headers": {
            REPLAYED_HEADER: {
                "description": f"'true' when the {IDEMPOTENCY_HEADER} was already served "
                "(nothing was published again).",
                "schema": {"type": "string", "enum": ["true"]},
            }
        },
        "content": {"application/json": {"schema": {"$ref": _REF.format(model=response.__name__)}}},
    }
    return {
        "tags": ["send"],
        "summary": summary,
        "operationId": operation_id,
        "security": security_requirements(),
        "parameters": [
            {
                "name": IDEMPOTENCY_HEADER,
                "in": "header",
                "required": False,
                "schema": {"type": "string", "minLength": 1, "maxLength": 255},
                "description": idempotency,
            }
        ],
        "responses": {
            "202": accepted,
            **{str(status): item for status, item in problem_responses(*SEND_ERRORS).items()},
        },
        **json_request_body(request),
    }


def add_schemas(
    app: FastAPI,
    models: Iterable[type[BaseModel]],
    *,
    paths: Mapping[str, dict[str, Any]] | None = None,
) -> None:
    """Add ``models`` (and ProblemDetails) to the app's OpenAPI components.

    ``paths`` are path items of routes FastAPI does not describe itself (plain ASGI
    routes); they come first in the document, with the security schemes they name.
    """
    generate: Callable[[], dict[str, Any]] = app.openapi
    models = (ProblemDetails, *models)
    extra_paths = dict(paths or {})

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            document["paths"] = {**extra_paths, **document.get("paths", {})}
            components = document.setdefault("components", {})
            schemas = components.setdefault("schemas", {})
            for model in models:
                schema = model.model_json_schema(ref_template=_REF)
                schemas.update(schema.pop("$defs", {}))
                schemas[model.__name__] = schema
            if extra_paths:
                schemes = components.setdefault("securitySchemes", {})
                for name, scheme in security_schemes().items():
                    schemes.setdefault(name, scheme)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
