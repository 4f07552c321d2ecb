"""The worker runtime: subscribe every handler, process with bounded concurrency, stop cleanly.

Lifecycle of :meth:`Worker.run`:

1. Subscribe each handler's (topic, group) with ``prefetch`` = its concurrency.
2. Per handler, one consumer loop fetches whenever a slot is free (at most ``concurrency``
   deliveries fetched and not finished): every delivery the subscription has ready at once
   (``take_ready``), else the next one as it comes. It hands them to *lanes*: long-lived
   tasks that run deliveries through the middleware one after another. Lanes are started as
   needed, up to ``concurrency``; a lane takes the next waiting delivery as soon as it
   finishes one, so a backlog flows without a task or a wake-up per message, and gives the
   rest of the loop a turn every ``LANE_TURN`` deliveries. A lane calls the outermost
   observing middleware (logging, metrics) itself once a delivery is through.
3. On :meth:`Worker.request_stop` (or :meth:`Worker.stop`): stop fetching (close the
   subscriptions, which gives unstarted prefetched messages back to the group), let
   in-flight handlers finish within ``grace_period``, then cancel the rest; cancelled
   deliveries are nacked with delay 0 (outcome ``released``) and redelivered at once.
   ``request_stop(now=True)`` (a second signal) skips what is left of the grace period.
4. If a subscription fails (broker lost...), the worker shuts down the same way and
   ``run`` re-raises that error, so a supervisor restarts the process.

Every released message counts as an attempt (``nack`` adds one), like a crash would.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mypy_extensions import mypyc_attr

from queuekit.broker import Broker, Delivery, Subscription
from queuekit.errors import BrokerError, ConfigError
from queuekit.interpreter import DEFAULT_GC_THRESHOLD, GC_THRESHOLD
from queuekit.metrics import Metrics
from queuekit.worker.app import App, HandlerSpec
from queuekit.worker.middleware import DEFAULT_MIDDLEWARE, Context, Middleware, Pipeline, Services
from queuekit.worker.middleware.base import Outcome, compose_pipeline, describe_error, notify
from queuekit.worker.middleware.handler import HandlerCall, HandlerThreads

if TYPE_CHECKING:
    from queuekit.idempotency import IdempotencyStore

__all__ = ["LANE_TURN", "Worker"]

# How long cancelled handlers get to release their messages, and consumer loops to notice
# that their subscription closed, before the worker stops waiting for them.
_SETTLE_TIMEOUT = 10.0

# Deliveries a lane handles in a row before it lets the rest of the loop run: handlers that
# never suspend would otherwise hold the loop for a whole backlog, and with it the delivery
# reports of publishes, the broker's own callbacks and the health and metrics endpoints.
LANE_TURN = 64


@dataclass(eq=False)
class _Consumer:
    """One handler's subscription, chain, lanes and slots while the worker runs.

    ``waiting`` holds deliveries fetched and not yet taken by a lane; ``taken`` counts slots in
    use (waiting + being processed), never more than ``limit``. The consumer loop fetches only
    while a slot is free, so a lane that is not busy exists for every waiting delivery.

    Lanes are woken one at a time: whoever leaves a delivery waiting (the consumer loop after
    a fetch, a lane after taking one) wakes or starts one more lane unless one is already on
    its way. A backlog whose handler never suspends is thus drained by one lane without a
    wake-up per message, while handlers that do suspend fan out to as many lanes as needed.
    """

    spec: HandlerSpec
    subscription: Subscription
    pipeline: Pipeline
    limit: int
    threads: HandlerThreads | None
    waiting: collections.deque[Delivery] = field(default_factory=collections.deque)
    taken: int = 0
    lanes: set[asyncio.Task[None]] = field(default_factory=set, repr=False)
    idle: list[asyncio.Future[None]] = field(default_factory=list, repr=False)
    woken: int = 0  # lanes woken from rest that have not run yet
    room: asyncio.Future[None] | None = field(default=None, repr=False)
    fetching: bool = False
    done_fetching: bool = False
    task: asyncio.Task[None] | None = field(default=None, repr=False)


@mypyc_attr(allow_interpreted_subclasses=True)  # mypyc: a public base
class Worker:
    """Runs the handlers of an :class:`~queuekit.worker.App` against a connected broker.

    Args:
        app: the handlers.
        broker: a connected broker; the worker never connects or closes it.
        concurrency: handler calls in flight per handler, unless the handler sets its own.
        metrics: where to count processed messages; none by default.
        idempotency: where processed keys are remembered; without a store nothing is
            deduplicated.
        grace_period: seconds in-flight handlers get to finish when stopping.
        logger: the worker's logger (``queuekit.worker`` by default).
        middleware: the onion, outermost first (:data:`DEFAULT_MIDDLEWARE` by default).
        rng: random source of the backoff jitter (seed it for reproducible delays).
        gc_threshold: while running, the garbage collector's first threshold is at least
            this (restored when the last worker stops; see :mod:`queuekit.interpreter`);
            None leaves it alone.

    The numbers are typed ``object`` because they are checked here: a compiled build would
    otherwise refuse a wrong type with a bare ``TypeError`` naming no parameter, and would
    take ``True`` for 1.

    Raises:
        ConfigError: a value is out of range or of the wrong type.
    """

    def __init__(
        self,
        app: App,
        broker: Broker,
        *,
        concurrency: object = 16,
        metrics: Metrics | None = None,
        idempotency: IdempotencyStore | None = None,
        grace_period: object = 30.0,
        logger: logging.Logger | None = None,
        middleware: Sequence[Middleware] = DEFAULT_MIDDLEWARE,
        rng: random.Random | None = None,
        gc_threshold: object = DEFAULT_GC_THRESHOLD,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ConfigError(f"worker concurrency must be an integer >= 1, not {concurrency!r}")
        if gc_threshold is not None and (
            isinstance(gc_threshold, bool) or not isinstance(gc_threshold, int) or gc_threshold < 1
        ):
            raise ConfigError(f"gc_threshold must be an integer >= 1 or None, not {gc_threshold!r}")
        if (
            isinstance(grace_period, bool)
            or not isinstance(grace_period, int | float)
            or not grace_period >= 0
        ):
            raise ConfigError("grace_period must be a number of seconds >= 0")
        self.app = app
        self.broker = broker
        self.concurrency = concurrency
        self.metrics = metrics
        self.grace_period = float(grace_period)
        self.middleware = tuple(middleware)
        self.logger = logger or logging.getLogger("queuekit.worker")
        self.gc_threshold = gc_threshold
        self._services = Services(
            app_name=app.name,
            backend=broker.backend,
            logger=self.logger,
            metrics=metrics,
            idempotency=idempotency,
            rng=rng or random.Random(),
        )
        self._consumers: list[_Consumer] = []
        self._in_flight = 0
        self._stop_requested = asyncio.Event()
        self._stop_now = asyncio.Event()
        self._finished = asyncio.Event()
        self._started = False
        self._running = False

    @property
    def ready(self) -> bool:
        """Subscribed to every handler and not stopping."""
        return self._running and not self._stop_requested.is_set()

    @property
    def consuming(self) -> bool:
        """Ready, and every consumer loop is alive: messages are actually being fetched."""
        return self.ready and all(c.task is not None and not c.task.done() for c in self._consumers)

    @property
    def stopping(self) -> bool:
        """A shutdown was requested."""
        return self._stop_requested.is_set()

    @property
    def in_flight(self) -> int:
        """Deliveries being processed now."""
        return self._in_flight

    def request_stop(self, *, now: bool = False) -> None:
        """Begin a graceful shutdown; ``now=True`` also cuts the grace period short."""
        self._stop_requested.set()
        if now:
            self._stop_now.set()

    async def stop(self, *, now: bool = False) -> None:
        """Request a shutdown and wait until :meth:`run` has returned (if it was started)."""
        self.request_stop(now=now)
        if self._started:
            await self._finished.wait()

    async def run(self) -> None:
        """Process messages until stopped; see the module docstring. Runs once per Worker.

        Raises:
            ConfigError: the app has no handlers.
            BrokerError: subscribing failed, or a subscription failed while running.
        """
        if self._started:
            raise RuntimeError("a Worker runs only once; create a new one")
        self._started = True
        threshold = self.gc_threshold
        if threshold is not None:
            GC_THRESHOLD.hold(threshold)
        try:
            await self._run()
        finally:
            if threshold is not None:
                GC_THRESHOLD.let_go(threshold)
            self._finished.set()

    async def _run(self) -> None:
        if not self.app.handlers:
            raise ConfigError(f"app {self.app.name!r} has no handlers")
        await self._subscribe_all()
        self._running = True
        failure: BaseException | None = None
        # Not ``try/finally`` with the awaited shutdown in ``finally``, nor a bare ``raise``
        # after an ``await``: compiled with mypyc both re-raise whatever sys.exc_info() holds
        # then (mypyc#1114's fix reads it), which another task may have left there.
        interrupted: BaseException | None = None
        try:
            for consumer in self._consumers:
                consumer.task = asyncio.create_task(
                    self._consume(consumer), name=f"queuekit-consume-{consumer.spec.topic}"
                )
            self._log_start()
            failure = await self._wait_for_stop_or_failure()
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                self._stop_now.set()
            interrupted = exc
        self._running = False
        await self._shutdown()
        if interrupted is not None:
            raise interrupted
        if failure is not None:
            raise failure

    async def _subscribe_all(self) -> None:
        try:
            for spec in self.app.handlers:
                limit = spec.concurrency or self.concurrency
                subscription = await self.broker.subscribe(spec.topic, spec.group, prefetch=limit)
                threads = None
                if not spec.is_async:
                    threads = HandlerThreads(
                        limit, f"queuekit-{spec.topic}-{spec.group}", self.logger
                    )
                pipeline = compose_pipeline(
                    self.middleware,
                    HandlerCall(spec, threads).call,
                    spec=spec,
                    services=self._services,
                )
                self._consumers.append(_Consumer(spec, subscription, pipeline, limit, threads))
        except BaseException as exc:
            await self._close_subscriptions()
            self._consumers.clear()
            raise exc  # not a bare raise after an await (see _run)

    def _log_start(self) -> None:
        specs = [c.spec for c in self._consumers]
        self.logger.info(
            "worker consuming",
            extra={
                "app": self.app.name,
                "backend": self.broker.backend,
                "topics": sorted({s.topic for s in specs}),
                "groups": sorted({f"{s.topic}:{s.group}" for s in specs}),
                "concurrency": {
                    f"{s.topic}:{s.group}": s.concurrency or self.concurrency for s in specs
                },
            },
        )

    async def _wait_for_stop_or_failure(self) -> BaseException | None:
        stop = asyncio.create_task(self._stop_requested.wait())
        loops = {c.task for c in self._consumers if c.task is not None}
        try:
            done, _ = await asyncio.wait({stop, *loops}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if self._stop_requested.is_set():
            return None
        for consumer in self._consumers:
            task = consumer.task
            if task is None or task not in done:
                continue
            error = None if task.cancelled() else task.exception()
            if error is None:
                spec = consumer.spec
                error = BrokerError(
                    f"the subscription to {spec.topic!r} (group {spec.group!r}) ended "
                    "while the worker was running"
                )
            self.logger.error(
                "a consumer stopped unexpectedly; shutting down",
                extra={"app": self.app.name, "topic": consumer.spec.topic, "error": repr(error)},
            )
            return error
        return None

    async def _consume(self, consumer: _Consumer) -> None:
        """Fetch while a slot is free and hand the deliveries to lanes: all that are ready
        at once (``take_ready``), else the next one as it comes (``anext``)."""
        subscription = consumer.subscription
        take_ready = subscription.take_ready
        waiting = consumer.waiting
        stop = self._stop_requested
        try:
            while not stop.is_set():
                room = consumer.limit - consumer.taken
                if room <= 0:
                    consumer.room = asyncio.get_running_loop().create_future()
                    await consumer.room
                    continue
                ready = take_ready(room)
                if ready:
                    consumer.taken += len(ready)
                    waiting.extend(ready)
                else:
                    consumer.fetching = True
                    try:
                        delivery = await anext(subscription)
                    except StopAsyncIteration:  # the subscription was closed
                        return
                    finally:
                        consumer.fetching = False
                    consumer.taken += 1
                    waiting.append(delivery)
                if not consumer.woken:
                    self._call_lane(consumer)
        finally:
            consumer.room = None
            consumer.done_fetching = True
            while consumer.idle:  # nothing more is coming: idle lanes end
                self._call_lane(consumer)

    def _call_lane(self, consumer: _Consumer) -> None:
        """Wake a resting lane, or start one if all are busy and the limit allows."""
        if consumer.idle:
            consumer.woken += 1
            _wake(consumer.idle.pop())
        elif len(consumer.lanes) < consumer.limit:
            consumer.woken += 1
            lane = asyncio.create_task(
                self._lane(consumer), name=f"queuekit-lane-{consumer.spec.topic}"
            )
            consumer.lanes.add(lane)
            lane.add_done_callback(consumer.lanes.discard)

    async def _lane(self, consumer: _Consumer) -> None:
        """Process waiting deliveries one after another; rest while there are none."""
        consumer.woken -= 1
        waiting = consumer.waiting
        idle = consumer.idle
        run = consumer.pipeline.run
        observers = consumer.pipeline.observers
        spec = consumer.spec
        services = self._services
        loop = asyncio.get_running_loop()
        turn = LANE_TURN
        while True:
            if not waiting:
                if consumer.done_fetching:
                    return
                rest = loop.create_future()
                idle.append(rest)
                try:
                    await rest
                finally:
                    if rest.done():
                        consumer.woken -= 1
                    else:  # cancelled while resting
                        idle.remove(rest)
                turn = LANE_TURN
                continue
            turn -= 1
            if not turn:
                turn = LANE_TURN
                await asyncio.sleep(0)
                continue  # the waiting deliveries may have been taken meanwhile
            ctx = Context.new(waiting.popleft(), spec, services)
            if waiting and not consumer.woken:
                self._call_lane(consumer)
            self._in_flight += 1
            cancelled: BaseException | None = None  # no await in a finally (see _run)
            try:
                await run(ctx)
            except Exception:
                self.logger.exception(
                    "middleware failed", extra={"topic": spec.topic, "message_id": ctx.message.id}
                )
            except BaseException as exc:  # cancelled: count the delivery done, then propagate
                cancelled = exc
            if observers:
                notify(observers, ctx)
            self._in_flight -= 1
            consumer.taken -= 1
            room = consumer.room
            if room is not None:
                consumer.room = None
                _wake(room)
            if ctx.outcome is None:  # only a broken custom middleware gets here
                await self._release_unsettled(ctx)
            if cancelled is not None:
                raise cancelled

    async def _release_unsettled(self, ctx: Context) -> None:
        self.logger.error(
            "a delivery left the middleware unsettled; releasing it",
            extra={"topic": ctx.spec.topic, "message_id": ctx.message.id},
        )
        with contextlib.suppress(Exception):
            await ctx.nack(0.0, Outcome.RELEASED)

    async def _shutdown(self) -> None:
        """Stop fetching, drain within the grace period, release the rest."""
        self._stop_requested.set()
        await self._close_subscriptions()
        await self._stop_consumer_loops()
        await self._drain()
        await self._release_unstarted()
        for consumer in self._consumers:
            if consumer.threads is not None:
                consumer.threads.shutdown()
        self.logger.info("worker stopped", extra={"app": self.app.name})

    async def _close_subscriptions(self) -> None:
        for consumer in self._consumers:
            try:
                await consumer.subscription.close()
            except Exception:
                self.logger.exception(
                    "closing a subscription failed", extra={"topic": consumer.spec.topic}
                )

    async def _stop_consumer_loops(self) -> None:
        loops: list[asyncio.Task[None]] = []
        for consumer in self._consumers:
            if consumer.task is None:
                continue
            if not consumer.fetching:  # waiting for a slot: nothing to lose by cancelling
                consumer.task.cancel()
            loops.append(consumer.task)
        if not loops:
            return
        _, pending = await asyncio.wait(loops, timeout=_SETTLE_TIMEOUT)
        for task in pending:  # a backend whose closed subscription did not end iteration
            self.logger.warning("a consumer loop ignored its closed subscription; cancelling")
            task.cancel()
        await asyncio.wait(loops)
        for task in loops:
            error = None if task.cancelled() else task.exception()
            if error is not None and not isinstance(error, asyncio.CancelledError):
                self.logger.warning(
                    "a consumer loop failed while stopping", extra={"error": describe_error(error)}
                )

    async def _drain(self) -> None:
        lanes = {lane for consumer in self._consumers for lane in consumer.lanes}
        if lanes and not self._stop_now.is_set():
            all_done = asyncio.ensure_future(asyncio.wait(lanes))
            now = asyncio.ensure_future(self._stop_now.wait())
            await asyncio.wait(
                {all_done, now}, timeout=self.grace_period, return_when=asyncio.FIRST_COMPLETED
            )
            all_done.cancel()
            now.cancel()
        remaining = {lane for lane in lanes if not lane.done()}
        if not remaining:
            return
        self.logger.warning(
            "grace period over; releasing unfinished messages",
            extra={"app": self.app.name, "released": self._in_flight},
        )
        for lane in remaining:
            lane.cancel()
        _, stuck = await asyncio.wait(remaining, timeout=_SETTLE_TIMEOUT)
        if stuck:
            self.logger.error(
                "handlers ignored cancellation; their messages are redelivered by the broker",
                extra={"app": self.app.name, "count": len(stuck)},
            )

    async def _release_unstarted(self) -> None:
        """Give back deliveries fetched for lanes that were cancelled before taking them."""
        for consumer in self._consumers:
            while consumer.waiting:
                ctx = Context.new(consumer.waiting.popleft(), consumer.spec, self._services)
                try:
                    await ctx.nack(0.0, Outcome.RELEASED)
                except Exception as exc:
                    self.logger.warning(
                        "could not release an unstarted message; the broker will redeliver it",
                        extra={"message_id": ctx.message.id, "error": describe_error(exc)},
                    )


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
