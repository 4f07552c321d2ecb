"""The worker's hot path: lanes draining a backlog, per-call deadlines, handler-bound layers."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from queuekit.backends.memory import MemoryBroker
from queuekit.message import Message
from queuekit.metrics import Metrics
from queuekit.worker import App, Context, HandlerSpec, Worker
from queuekit.worker.middleware import (
    HandlerTimeout,
    Services,
    SettlementMiddleware,
    TimeoutMiddleware,
    compose,
)
from queuekit.worker.runtime import LANE_TURN

from .helpers import publish, running, wait_event, wait_until


def errors(metrics: Metrics, stage: str) -> float:
    value = metrics.registry.get_sample_value(
        "queue_errors_total", {"topic": "jobs", "backend": "memory", "stage": stage}
    )
    return value or 0.0


async def test_a_backlog_larger_than_the_concurrency_is_handled_once_each(
    broker: MemoryBroker,
) -> None:
    # Given 300 waiting messages and a handler of concurrency 4 that suspends on every call
    # (the first calls until 4 run at once)
    app = App("svc")
    seen: list[int] = []
    in_flight = 0
    peak = 0
    all_busy = asyncio.Event()
    finished = asyncio.Event()

    @app.handler("jobs", concurrency=4)
    async def work(payload: int) -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        if in_flight == 4:
            all_busy.set()
        await all_busy.wait()  # suspends, as real I/O does
        in_flight -= 1
        seen.append(payload)
        if len(seen) == 300:
            finished.set()

    await publish(broker, "jobs", *range(300))

    # When the worker drains them
    async with running(Worker(app, broker)):
        await wait_event(finished, "300 messages")

    # Then each was handled exactly once, by up to 4 calls at a time, and all were acked
    assert sorted(seen) == list(range(300))
    assert peak == 4
    stats = await broker.topic_stats("jobs")
    assert (stats.depth, stats.in_flight, stats.dead_letters) == (0, 0, 0)


async def test_a_lane_draining_a_backlog_lets_the_rest_of_the_loop_run(
    broker: MemoryBroker,
) -> None:
    # Given a backlog of 10 lanes' turns, all fetched at once, whose handler never suspends
    app = App("svc")
    total = 10 * LANE_TURN
    handled = 0
    finished = asyncio.Event()

    @app.handler("jobs", concurrency=total)
    async def work(payload: int) -> None:
        nonlocal handled
        handled += 1
        if handled == total:
            finished.set()

    await publish(broker, "jobs", *range(total))

    # When the worker drains it while another task asks the loop for a turn after each one
    seen_by_other_task: list[int] = []

    async def other_task() -> None:
        while not finished.is_set():
            seen_by_other_task.append(handled)
            await asyncio.sleep(0)

    other = asyncio.create_task(other_task())
    async with running(Worker(app, broker)):
        await wait_event(finished, f"{total} messages")
        await other

    # Then that task had turns all along the backlog, not only before and after it
    during = {count for count in seen_by_other_task if 0 < count < total}
    assert len(during) >= 3, sorted(during)


async def test_the_timeout_runs_from_each_calls_start_on_a_busy_lane(
    broker: MemoryBroker, metrics: Metrics
) -> None:
    # Given a handler with one lane and a 0.2 s timeout, whose later call hangs once
    app = App("svc")
    loop = asyncio.get_running_loop()
    first_done = asyncio.Event()
    retried = asyncio.Event()
    hang: dict[str, float] = {}

    @app.handler("jobs", concurrency=1, timeout=0.2, backoff=0.0, max_backoff=0.0)
    async def work(payload: str, message: Message) -> None:
        if payload == "fast":
            first_done.set()
            return
        if message.attempt == 1:
            hang["started"] = loop.time()
            try:
                await asyncio.Event().wait()
            finally:
                hang["cancelled"] = loop.time()
        retried.set()

    async with running(Worker(app, broker, metrics=metrics)):
        # When a fast call is followed on the same lane by one that hangs
        await publish(broker, "jobs", "fast")
        await wait_event(first_done, "the fast call")
        await publish(broker, "jobs", "slow")
        await wait_event(retried, "the retry of the hanging call")

    # Then the hanging call was cancelled a full timeout after it started, as a timeout
    assert hang["cancelled"] - hang["started"] >= 0.2 - 0.01
    assert errors(metrics, "timeout") == 1
    assert errors(metrics, "handler") == 0


async def test_a_handlers_own_timeout_error_is_a_plain_failure(
    broker: MemoryBroker, metrics: Metrics
) -> None:
    # Given a handler with a long timeout that raises TimeoutError itself on its first attempt
    app = App("svc")
    retried = asyncio.Event()

    @app.handler("jobs", timeout=30.0, backoff=0.0, max_backoff=0.0)
    async def work(payload: Any, message: Message) -> None:
        if message.attempt == 1:
            raise TimeoutError("the payment gateway timed out")
        retried.set()

    # When a message is handled
    async with running(Worker(app, broker, metrics=metrics)):
        await publish(broker, "jobs", {"n": 1})
        await wait_event(retried, "the retry")

    # Then it counts as a handler failure, not as the worker's timeout
    assert errors(metrics, "handler") == 1
    assert errors(metrics, "timeout") == 0


async def test_a_handler_without_timeout_is_never_cancelled_by_the_timeout_layer(
    broker: MemoryBroker,
) -> None:
    # Given a handler without timeout, composed for that handler
    calls: list[str] = []

    async def endpoint(ctx: Context) -> None:
        calls.append("handler")

    spec = HandlerSpec(topic="jobs", group="default", func=endpoint, timeout=None)
    services = Services("svc", "memory", logging.getLogger("test"))

    # When the timeout layer is bound to it
    chain = compose([TimeoutMiddleware()], endpoint, spec=spec, services=services)

    # Then the layer stands aside: the chain is the handler call itself
    assert chain is endpoint


async def test_the_timeout_layer_works_unbound_too(broker: MemoryBroker) -> None:
    # Given the timeout layer composed without a handler (as a custom runtime may do)
    async def endpoint(ctx: Context) -> None:
        await asyncio.Event().wait()

    chain = compose([TimeoutMiddleware()], endpoint)
    await publish(broker, "jobs", {"n": 1})
    subscription = await broker.subscribe("jobs")
    delivery = await anext(subscription)
    spec = HandlerSpec(topic="jobs", group="default", func=endpoint, timeout=0.05)
    ctx = Context(delivery, spec, Services("svc", "memory", logging.getLogger("test")))

    # When the endpoint overruns the handler's timeout / Then it is a HandlerTimeout
    with pytest.raises(HandlerTimeout):
        await chain(ctx)
    await ctx.nack(0.0)
    await subscription.close()


async def test_stopping_with_no_grace_leaves_nothing_leased(broker: MemoryBroker) -> None:
    # Given a busy worker with a backlog, whose handlers never finish by themselves
    app = App("svc")
    started = asyncio.Event()

    @app.handler("jobs", concurrency=8)
    async def stuck(payload: Any) -> None:
        started.set()
        await asyncio.Event().wait()

    await publish(broker, "jobs", *range(20))
    worker = Worker(app, broker, grace_period=0.0)
    async with running(worker):
        await wait_event(started, "a handler")
        await wait_until(lambda: worker.in_flight == 8, what="8 handlers in flight")

    # When it has stopped at once / Then every message is back in the queue, none leased
    stats = await broker.topic_stats("jobs")
    assert (stats.depth, stats.in_flight) == (20, 0)


async def test_the_timeout_holds_when_a_middleware_runs_the_rest_in_a_task_of_its_own(
    broker: MemoryBroker,
) -> None:
    # Given a custom layer running the inner layers in a task of its own (as asyncio.wait_for
    # does on Python 3.11), and a handler whose first call hangs past its 0.1 s timeout
    app = App("svc")
    outcomes: list[str] = []

    class InOwnTask:
        async def __call__(self, ctx: Context, call_next: Any) -> None:
            await asyncio.create_task(call_next(ctx))

    @app.handler("jobs", timeout=0.1, backoff=0.0, max_backoff=0.0)
    async def slow(payload: Any, message: Message) -> None:
        if message.attempt == 1:
            await asyncio.Event().wait()

    class Outcomes:
        async def __call__(self, ctx: Context, call_next: Any) -> None:
            await call_next(ctx)
            outcomes.append(f"{ctx.outcome}:{ctx.error_stage}")

    middleware = [Outcomes(), SettlementMiddleware(), InOwnTask(), TimeoutMiddleware()]

    # When a message is handled
    async with running(Worker(app, broker, middleware=middleware)):
        await publish(broker, "jobs", {"n": 1})
        await wait_until(lambda: len(outcomes) == 2, what="two attempts")

    # Then the first call timed out (a retry, not a release) and the second succeeded
    assert outcomes == ["retried:timeout", "success:None"]


class _ClockAheadLoop(asyncio.SelectorEventLoop):
    """An event loop whose clock is not time.monotonic (as uvloop's is not)."""

    def time(self) -> float:
        return super().time() + 1000.0


def test_the_bound_timeout_keeps_the_time_of_a_loop_with_a_clock_of_its_own() -> None:
    # Given a handler with a 0.1 s timeout that hangs, its layer bound to it, on a loop
    # whose clock runs 1000 s ahead of time.monotonic
    async def endpoint(ctx: Context) -> None:
        await asyncio.Event().wait()

    spec = HandlerSpec(topic="jobs", group="default", func=endpoint, timeout=0.1)
    services = Services("svc", "memory", logging.getLogger("test"))
    chain = compose([TimeoutMiddleware()], endpoint, spec=spec, services=services)

    async def call_once() -> float:
        broker = MemoryBroker()
        await broker.connect()
        await publish(broker, "jobs", {"n": 1})
        delivery = await anext(await broker.subscribe("jobs"))
        started = asyncio.get_running_loop().time()
        with pytest.raises(HandlerTimeout):
            await chain(Context(delivery, spec, services))
        elapsed = asyncio.get_running_loop().time() - started
        await broker.close()
        return elapsed

    # When the handler is called on that loop
    loop = _ClockAheadLoop()
    try:
        elapsed = loop.run_until_complete(call_once())
    finally:
        loop.close()

    # Then the deadline ran on the loop's own clock: a full timeout, not at once
    assert 0.1 <= elapsed < 5.0
