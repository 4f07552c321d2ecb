"""OpenAPI documentation for what FastAPI cannot see by itself.

The send endpoints parse their bodies themselves (size-bounded, orjson, 400 vs 422 told
apart), so their request models are declared here; every error is documented as an RFC
9457 problem.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, Field

from queuekit.api.problems import PROBLEM_MEDIA_TYPE

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


def add_schemas(app: FastAPI, models: Iterable[type[BaseModel]]) -> None:
    """Add ``models`` (and ProblemDetails) to the app's OpenAPI components."""
    generate: Callable[[], dict[str, Any]] = app.openapi
    models = (ProblemDetails, *models)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = generate()
            schemas = document.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                schema = model.model_json_schema(ref_template=_REF)
                schemas.update(schema.pop("$defs", {}))
                schemas[model.__name__] = schema
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
