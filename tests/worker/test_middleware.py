"""The middleware onion: one visible default order, composable, settling exactly once."""

from __future__ import annotations

import asyncio
import logging
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
    Outcome,
    Services,
    SettlementMiddleware,
    TimeoutMiddleware,
    ValidationMiddleware,
    compose,
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


async def test_compose_runs_layers_outermost_first_around_the_endpoint(
    broker: MemoryBroker,
) -> None:
    # Given two layers around an endpoint, and a real delivery
    log: list[str] = []

    async def endpoint(ctx: Context) -> None:
        log.append("handler")

    chain = compose([Trace("outer", log), Trace("inner", log)], endpoint)
    await publish(broker, "jobs", {"n": 1})
    subscription = await broker.subscribe("jobs")
    delivery = await anext(subscription)
    spec = HandlerSpec(topic="jobs", group="default", func=endpoint)
    ctx = Context(delivery, spec, Services("svc", "memory", logging.getLogger("test")))

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
    app = App("svc")

    @app.handler("jobs")
    async def work(payload: Any) -> None:
        log.append("handler")

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
