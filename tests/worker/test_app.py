"""The handler registry: App, @app.handler and HandlerSpec."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from queuekit.errors import ConfigError
from queuekit.message import Message
from queuekit.worker import App, HandlerSpec


class Email(BaseModel):
    to: str


class Invoice(BaseModel):
    number: int


def test_decorator_registers_a_spec_and_returns_the_function_unchanged() -> None:
    # Given an app
    app = App("email-service")

    # When a handler is registered with options
    async def send_email(email: Email) -> None:
        return None

    decorated = app.handler(
        "emails", schema=Email, retries=5, backoff=0.5, timeout=None, concurrency=4
    )(send_email)

    # Then the function is unchanged and its spec holds the options and the defaults
    assert decorated is send_email
    (spec,) = app.handlers
    assert spec == HandlerSpec(
        topic="emails",
        group="default",
        func=send_email,
        schema=Email,
        retries=5,
        backoff=0.5,
        max_backoff=300.0,
        timeout=None,
        idempotency_key=None,
        concurrency=4,
    )
    assert spec.is_async
    assert not spec.takes_message
    assert spec.max_attempts == 6


def test_defaults_follow_the_documented_values() -> None:
    app = App("svc")

    @app.handler("jobs")
    def work(payload: Any) -> None:
        return None

    (spec,) = app.handlers
    assert (spec.retries, spec.backoff, spec.max_backoff, spec.timeout) == (3, 1.0, 300.0, 30.0)
    assert spec.group == "default"
    assert spec.concurrency is None
    assert not spec.is_async


def test_a_second_positional_parameter_asks_for_the_message() -> None:
    app = App("svc")

    @app.handler("a")
    async def with_message(payload: Any, message: Message) -> None:
        return None

    @app.handler("b")
    def variadic(*args: Any) -> None:
        return None

    assert [spec.takes_message for spec in app.handlers] == [True, True]


def test_an_async_callable_object_is_detected_as_async() -> None:
    class Handler:
        async def __call__(self, payload: Any) -> None:
            return None

    app = App("svc")
    app.handler("jobs")(Handler())
    assert app.handlers[0].is_async


def test_same_topic_in_two_groups_is_allowed_but_not_twice_in_one_group() -> None:
    # Given a topic with a handler in the default group
    app = App("svc")
    app.handler("orders")(lambda payload: None)

    # When another group registers the same topic, then that is fine
    app.handler("orders", group="audit")(lambda payload: None)
    assert [(s.topic, s.group) for s in app.handlers] == [
        ("orders", "default"),
        ("orders", "audit"),
    ]

    # But a second handler for the same (topic, group) is a configuration error
    with pytest.raises(ConfigError, match="already has a handler in group 'audit'"):
        app.handler("orders", group="audit")(lambda payload: None)


def test_topics_and_schema_for() -> None:
    app = App("svc")
    app.handler("orders", group="audit")(lambda payload: None)
    app.handler("orders", schema=Invoice)(lambda payload: None)
    app.handler("orders", schema=Email, group="other")(lambda payload: None)
    app.handler("raw")(lambda payload: None)

    assert app.topics == frozenset({"orders", "raw"})
    assert app.schema_for("orders") is Invoice  # the first handler that has a schema
    assert app.schema_for("raw") is None
    assert app.schema_for("unknown") is None


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"retries": -1}, "retries must be an integer >= 0"),
        ({"retries": 1.5}, "retries must be an integer >= 0"),
        ({"backoff": -1}, "backoff must be a number of seconds >= 0"),
        ({"backoff": 10, "max_backoff": 1}, "max_backoff must be a number of seconds >= backoff"),
        ({"timeout": 0}, "timeout must be a positive number"),
        ({"concurrency": 0}, "concurrency must be an integer >= 1"),
        ({"concurrency": True}, "concurrency must be an integer >= 1"),
        ({"schema": dict}, "schema must be a pydantic BaseModel subclass"),
        ({"idempotency_key": "order_id"}, "idempotency_key must be None, False or a callable"),
        ({"group": "bad group"}, "invalid group"),
    ],
)
def test_invalid_options_are_rejected_with_a_clear_error(
    options: dict[str, Any], error: str
) -> None:
    app = App("svc")
    with pytest.raises(ConfigError, match=error):
        app.handler("jobs", **options)(lambda payload: None)
    assert app.handlers == ()


def test_invalid_topic_names_are_configuration_errors() -> None:
    app = App("svc")
    with pytest.raises(ConfigError, match="reserved for dead letters"):
        app.handler("jobs.dlq")(lambda payload: None)


def test_handlers_must_accept_the_payload_positionally() -> None:
    app = App("svc")

    def no_parameters() -> None:
        return None

    def three_required(a: Any, b: Any, c: Any) -> None:
        return None

    def keyword_required(payload: Any, *, flag: bool) -> None:
        return None

    with pytest.raises(ConfigError, match="take the payload as a positional parameter"):
        app.handler("a")(no_parameters)
    with pytest.raises(ConfigError, match=r"only \(payload\) or \(payload, message\)"):
        app.handler("b")(three_required)
    with pytest.raises(ConfigError, match=r"only \(payload\) or \(payload, message\)"):
        app.handler("c")(keyword_required)


def test_an_app_needs_a_name() -> None:
    with pytest.raises(ConfigError, match="non-empty name"):
        App("  ")
