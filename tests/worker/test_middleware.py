"""The middleware onion: one visible default order, composable, settling exactly once."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from typing import Any

from queuekit.backends.memory import MemoryBroker
from queuekit.errors import Reject
from queuekit.worker import DEFAULT_MIDDLEWARE, App, Context, HandlerSpec, Worker
from queuekit.worker.middleware import (
    AttemptLimitMiddleware,
    IdempotencyMiddleware,
    LoggingMiddleware,
    MetricsMiddleware,
    Next,
    ObservingMiddleware,
    Outcome,
    Services,
    SettlementMiddleware,
    TimeoutMiddleware,
    ValidationMiddleware,
    compose,
    compose_pipeline,
)

from .helpers import dead_letters, publish, running, wait_until


def test_the_default_order_is_one_visible_list() -> None:
    assert [type(layer) for layer in DEFAULT_MIDDLEWARE] == [
        LoggingMiddleware,
        MetricsMiddleware,
        SettlementMiddleware,
        AttemptLimitMiddleware,
        ValidationMiddleware,
        IdempotencyMiddleware,
        TimeoutMiddleware,
    ]


class Trace:
    """A middleware recording when it is entered and left, and the outcome it saw."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    async def __call__(self, ctx: Context, call_next: Next) -> None:
        self.log.append(f"enter {self.name}")
        await call_next(ctx)
        self.log.append(f"leave {self.name} outcome={ctx.outcome}")


def logging_endpoint(log: list[str]) -> tuple[Next, HandlerSpec, Services]:
    """An endpoint that logs ``handler``, its spec (topic ``jobs``) and a worker's services."""

    async def endpoint(ctx: Context) -> None:
        log.append("handler")

    spec = HandlerSpec(topic="jobs", group="default", func=endpoint)
    return endpoint, spec, Services("svc", "memory", logging.getLogger("test"))


def logging_app(log: list[str]) -> App:
    """An app whose handler of topic ``jobs`` logs ``handler``."""
    app = App("svc")

    @app.handler("jobs")
    async def work(payload: Any) -> None:
        log.append("handler")

    return app


async def test_compose_runs_layers_outermost_first_around_the_endpoint(
    broker: MemoryBroker,
) -> None:
    # Given two layers around an endpoint, and a real delivery
    log: list[str] = []
    endpoint, spec, services = logging_endpoint(log)
    chain = compose([Trace("outer", log), Trace("inner", log)], endpoint)
    await publish(broker, "jobs", {"n": 1})
    subscription = await broker.subscribe("jobs")
    delivery = await anext(subscription)
    ctx = Context(delivery, spec, services)

    # When the context goes through (these layers do not settle)
    await chain(ctx)

    # Then the onion unwinds in order
    assert log == [
        "enter outer",
        "enter inner",
        "handler",
        "leave inner outcome=None",
        "leave outer outcome=None",
    ]
    await ctx.ack()
    await subscription.close()


async def test_a_custom_list_wraps_the_defaults_and_sees_the_settled_outcome(
    broker: MemoryBroker,
) -> None:
    # Given a worker whose onion has a tracing layer outside the defaults
    log: list[str] = []
    app = logging_app(log)
    worker = Worker(app, broker, middleware=[Trace("audit", log), *DEFAULT_MIDDLEWARE])

    # When a message is handled
    async with running(worker):
        await publish(broker, "jobs", {"n": 1})
        await wait_until(lambda: len(log) == 3, what="the trace")

    # Then the custom layer saw the handler run and the message acked
    assert log == ["enter audit", "handler", "leave audit outcome=success"]


async def test_each_delivery_is_settled_exactly_once(broker: MemoryBroker) -> None:
    # Given messages ending in each way (ack, retry, dead letter)
    app = App("svc")
    outcomes: list[Outcome | None] = []

    class Outcomes:
        async def __call__(self, ctx: Context, call_next: Next) -> None:
            await call_next(ctx)
            outcomes.append(ctx.outcome)

    @app.handler("jobs", retries=1, backoff=0.0, max_backoff=0.0)
    async def work(payload: str, message: Any) -> None:
        if payload == "reject":
            raise Reject("no")
        if payload == "flaky" and message.attempt == 1:
            raise RuntimeError("once")

    # When they are handled (a second settlement would raise RuntimeError in the broker)
    async with running(Worker(app, broker, middleware=[Outcomes(), *DEFAULT_MIDDLEWARE])):
        await publish(broker, "jobs", "ok", "reject", "flaky")
        await dead_letters(broker, "jobs")
        await wait_until(lambda: len(outcomes) == 4, what="four settlements")

    # Then every delivery got one settlement and nothing is left in flight
    assert sorted(map(str, outcomes)) == ["dead_lettered", "retried", "success", "success"]
    stats = await broker.topic_stats("jobs")
    assert (stats.depth, stats.in_flight) == (0, 0)


async def test_a_layer_that_forgets_to_settle_gets_its_delivery_released(
    broker: MemoryBroker,
) -> None:
    # Given a (broken) custom onion without the settlement layer
    app = App("svc")
    calls: list[int] = []
    released = asyncio.Event()

    @app.handler("jobs")
    async def work(payload: Any, message: Any) -> None:
        calls.append(message.attempt)
        if message.attempt == 2:
            released.set()

    worker = Worker(app, broker, middleware=[ValidationMiddleware()])

    # When a message is handled, then the runtime releases it (redelivered as attempt 2)
    async with running(worker):
        await publish(broker, "jobs", {"n": 1})
        await asyncio.wait_for(released.wait(), 5)

    assert calls[:2] == [1, 2]


class Watch:
    """An observing middleware noting each finished delivery's outcome under its name."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    def observer(self, spec: HandlerSpec, services: Services) -> Callable[[Context], None]:
        return self.saw

    def saw(self, ctx: Context) -> None:
        self.log.append(f"{self.name} saw outcome={ctx.outcome}")

    async def __call__(self, ctx: Context, call_next: Next) -> None:
        try:
            await call_next(ctx)
        finally:
            self.saw(ctx)


class Broken(Watch):
    def saw(self, ctx: Context) -> None:
        raise RuntimeError("observer bug")


def test_logging_and_metrics_are_observers() -> None:
    assert isinstance(LoggingMiddleware(), ObservingMiddleware)
    assert isinstance(MetricsMiddleware(), ObservingMiddleware)
    assert not isinstance(SettlementMiddleware(), ObservingMiddleware)


async def test_observers_see_the_delivery_after_the_layers_inside_them(
    broker: MemoryBroker,
) -> None:
    # Given observers around a tracing layer, composed for a handler, and a real delivery
    log: list[str] = []
    endpoint, spec, services = logging_endpoint(log)
    layers = [Watch("outer", log), Watch("inner", log), Trace("trace", log)]
    chain = compose(layers, endpoint, spec=spec, services=services)
    pipeline = compose_pipeline(layers, endpoint, spec=spec, services=services)
    await publish(broker, "jobs", {"n": 1}, {"n": 2})
    subscription = await broker.subscribe("jobs")

    # When one delivery goes through the chain, and one through the pipeline's parts
    first = Context(await anext(subscription), spec, services)
    await chain(first)
    composed = list(log)
    log.clear()
    second = Context(await anext(subscription), spec, services)
    await pipeline.run(second)
    for observe in pipeline.observers:
        observe(second)

    # Then both unwind like the onion: inner observer first, after the layer inside them
    expected = [
        "enter trace",
        "handler",
        "leave trace outcome=None",
        "inner saw outcome=None",
        "outer saw outcome=None",
    ]
    assert composed == expected
    assert log == expected
    for ctx in (first, second):
        await ctx.ack()
    await subscription.close()


async def test_an_observer_that_raises_is_logged_and_the_others_still_run(
    broker: MemoryBroker, caplog: Any
) -> None:
    # Given a broken observer inside a working one, in a worker
    log: list[str] = []
    app = logging_app(log)
    worker = Worker(
        app, broker, middleware=[Watch("audit", log), Broken("broken", log), *DEFAULT_MIDDLEWARE]
    )

    # When a message is handled
    with caplog.at_level(logging.ERROR, logger="queuekit.worker"):
        async with running(worker):
            await publish(broker, "jobs", {"n": 1})
            await wait_until(lambda: len(log) == 2, what="the audit")

    # Then the message was acked, the working observer saw it, and the failure was logged
    assert log == ["handler", "audit saw outcome=success"]
    assert "a middleware observer failed" in caplog.text
    stats = await broker.topic_stats("jobs")
    assert (stats.depth, stats.in_flight) == (0, 0)


async def test_an_observer_sees_a_failed_delivery_settled_for_retry(broker: MemoryBroker) -> None:
    # Given an observer outside the defaults and a handler failing its first attempt
    log: list[str] = []
    app = App("svc")

    @app.handler("jobs", retries=1, backoff=0.0, max_backoff=0.0)
    async def work(payload: Any, message: Any) -> None:
        if message.attempt == 1:
            raise RuntimeError("once")

    # When the message is handled twice
    async with running(Worker(app, broker, middleware=[Watch("audit", log), *DEFAULT_MIDDLEWARE])):
        await publish(broker, "jobs", {"n": 1})
        await wait_until(lambda: len(log) == 2, what="two attempts")

    # Then the observer saw each attempt's final outcome
    assert log == ["audit saw outcome=retried", "audit saw outcome=success"]


async def test_the_fast_context_constructor_fills_every_field_as_the_dataclass_does(
    broker: MemoryBroker,
) -> None:
    # Given a real delivery and the pieces of a context
    _, spec, services = logging_endpoint([])
    await publish(broker, "jobs", {"n": 1})
    delivery = await anext(await broker.subscribe("jobs"))

    # When a context is built by Context.new (direct slot stores when compiled) and by
    # the dataclass constructor
    fast, plain = Context.new(delivery, spec, services), Context(delivery, spec, services)

    # Then every field is set alike (the start time apart), also one added later
    for field in dataclasses.fields(Context):
        if field.name != "started":
            assert getattr(fast, field.name) == getattr(plain, field.name), field.name
    assert fast.started <= plain.started
