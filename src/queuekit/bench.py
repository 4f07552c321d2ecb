"""The measurement engine of ``queuekit bench``: end-to-end throughput and latency on a backend.

Both phases run a real :class:`~queuekit.worker.Worker` (the default middleware, metrics on,
no idempotency store) with a no-op handler on one topic, and count a message only once the
worker has *acked* it (an outermost middleware sees the settlement's outcome).

* Throughput: ``count`` messages of ``payload_bytes`` of JSON are published in batches of
  ``publish_batch`` while the worker consumes; the rate is ``count`` over the time from the
  first publish to the last ack (published -> handled -> acked).
* Latency: messages are then published at ``latency_fraction`` of that peak rate, paced in
  small ticks. Each message's latency runs from its *scheduled* send time to its ack, so a
  producer that falls behind shows up as latency instead of hiding it (no coordinated
  omission). p50 and p99 are reported.

A short warm-up (connections, topic creation, first claims) runs before anything is timed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from queuekit.backends import create_broker
from queuekit.bench_acks import AckCounter
from queuekit.broker import Admin, Broker
from queuekit.errors import ConfigError
from queuekit.message import DEFAULT_GROUP, Message, validate_topic
from queuekit.metrics import Metrics
from queuekit.settings import Settings
from queuekit.worker import DEFAULT_MIDDLEWARE, App, Worker

__all__ = [
    "BenchConfig",
    "BenchResult",
    "Progress",
    "bench_backend",
    "make_payload",
    "percentile",
    "run_bench",
    "scratch_settings",
]

Progress = Callable[[str, int, int], None]
"""``progress(phase, done, total)``: called as acks arrive (phase: warmup, throughput, latency)."""

# Longest a phase may take before the run is declared stuck (a broker that stopped acking).
_PHASE_TIMEOUT = 600.0
# The pacing tick of the latency phase: small against the latencies being measured.
_TICK = 0.005
# Longest the latency phase publishes for, whatever the rate.
_LATENCY_SECONDS = 5.0


@dataclass(frozen=True, slots=True)
class BenchConfig:
    """What to measure.

    Attributes:
        count: messages in the throughput phase (and at most that many in the latency phase).
        payload_bytes: size of each JSON payload.
        concurrency: the worker's handler calls in flight (its prefetch).
        publish_batch: messages per ``publish`` call in the throughput phase.
        latency_fraction: the latency phase's rate, as a fraction of the measured peak;
            0 skips the latency phase.
        warmup: messages published and acked before timing starts.
        topic: the topic used (purged before, deleted after).

    Raises:
        ConfigError: a value is out of range.
    """

    count: int = 10_000
    payload_bytes: int = 1024
    concurrency: int = 256
    publish_batch: int = 500
    latency_fraction: float = 0.5
    warmup: int = 200
    topic: str = "queuekit-bench"

    def __post_init__(self) -> None:
        for name in ("count", "concurrency", "publish_batch"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"bench {name} must be an integer >= 1, not {value!r}")
        if isinstance(self.warmup, bool) or not isinstance(self.warmup, int) or self.warmup < 0:
            raise ConfigError(f"bench warmup must be an integer >= 0, not {self.warmup!r}")
        if not isinstance(self.payload_bytes, int) or not 16 <= self.payload_bytes <= 1 << 20:
            raise ConfigError("bench payload_bytes must be from 16 to 1048576")
        if not 0 <= self.latency_fraction <= 1:
            raise ConfigError("bench latency_fraction must be from 0 to 1")
        validate_topic(self.topic)


@dataclass(frozen=True, slots=True)
class BenchResult:
    """What was measured; rates in messages per second, latencies in milliseconds."""

    backend: str
    count: int
    payload_bytes: int
    concurrency: int
    throughput: float
    seconds: float
    publish_rate: float
    latency_rate: float | None = None
    latency_count: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every figure."""
        return asdict(self)


def make_payload(size: int) -> dict[str, Any]:
    """A JSON object that encodes to exactly ``size`` bytes (``size`` >= 16)."""
    overhead = len(b'{"n":0,"data":""}')
    return {"n": 0, "data": "x" * max(0, size - overhead)}


def percentile(sorted_values: list[float], fraction: float) -> float:
    """The ``fraction`` quantile (nearest rank) of already sorted values."""
    if not sorted_values:
        raise ValueError("no values")
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


async def _noop(payload: Any) -> None:
    """The benchmark's handler: does nothing with the payload it is given.

    ``async``, as an asyncio service's handler would be: a plain ``def`` would measure the
    hop to a handler thread (tens of microseconds under load) instead of the pipeline.
    """


async def run_bench(
    broker: Broker, config: BenchConfig, *, progress: Progress | None = None
) -> BenchResult:
    """Measure ``broker`` (connected) with ``config``; see the module docstring.

    Raises:
        ConfigError: the config is invalid.
        BrokerError: the broker failed during the run.
        TimeoutError: a phase made no progress to completion within 10 minutes.
    """
    body = make_payload(config.payload_bytes)
    counter = AckCounter()
    app = App("queuekit-bench")
    app.handler(
        config.topic, group=DEFAULT_GROUP, retries=0, idempotency_key=False, concurrency=None
    )(_noop)
    worker = Worker(
        app,
        broker,
        concurrency=config.concurrency,
        metrics=Metrics(backend=broker.backend),
        middleware=(counter, *DEFAULT_MIDDLEWARE),
        grace_period=5.0,
        logger=logging.getLogger("queuekit.bench"),
    )
    if isinstance(broker, Admin):
        await broker.purge(config.topic)

    def build(n: int) -> list[Message]:
        return [Message.build(config.topic, body) for _ in range(n)]

    running = asyncio.create_task(worker.run(), name="queuekit-bench-worker")
    try:
        await _wait_until_consuming(worker, running)
        acked_before = 0
        if config.warmup:
            _phase(counter, "warmup", acked_before, config.warmup, progress)
            await _publish_batches(broker, build, config.warmup, config.publish_batch)
            await _finish(counter, running)
            acked_before = counter.acked

        _phase(counter, "throughput", acked_before, config.count, progress)
        started = time.perf_counter()
        await _publish_batches(broker, build, config.count, config.publish_batch)
        published = time.perf_counter() - started
        await _finish(counter, running)
        seconds = time.perf_counter() - started
        throughput = config.count / seconds
        result = BenchResult(
            backend=broker.backend,
            count=config.count,
            payload_bytes=config.payload_bytes,
            concurrency=config.concurrency,
            throughput=throughput,
            seconds=seconds,
            publish_rate=config.count / published,
        )
        if config.latency_fraction > 0:
            result = await _latency_phase(broker, build, counter, running, result, config, progress)
        return result
    finally:
        await worker.stop()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        if isinstance(broker, Admin):
            await broker.delete_topic(config.topic)


async def _wait_until_consuming(worker: Worker, running: asyncio.Task[None]) -> None:
    """Wait (bounded) until the worker subscribed, re-raising its failure if it died."""
    deadline = time.monotonic() + 60.0
    while not worker.consuming:
        if running.done():
            running.result()  # raises the worker's error
            raise RuntimeError("the benchmark's worker stopped before consuming")
        if time.monotonic() > deadline:
            raise TimeoutError("the benchmark's worker did not start consuming within 60 s")
        await asyncio.sleep(0.01)


def _phase(
    counter: AckCounter,
    name: str,
    acked_before: int,
    total: int,
    progress: Progress | None,
) -> None:
    counter.expect(acked_before + total)
    if progress is not None:
        progress(name, 0, total)
        counter.on_ack = lambda acked: progress(name, acked - acked_before, total)


async def _finish(counter: AckCounter, running: asyncio.Task[None]) -> None:
    """Wait until the phase's acks arrived, or the worker failed."""
    reached = asyncio.ensure_future(counter.reached.wait())
    try:
        done, _ = await asyncio.wait(
            {reached, running}, timeout=_PHASE_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        reached.cancel()
    if running in done:
        running.result()
        raise RuntimeError("the benchmark's worker stopped before the run finished")
    if not counter.reached.is_set():
        raise TimeoutError(f"only {counter.acked} acks after {_PHASE_TIMEOUT:.0f} s")


async def _publish_batches(
    broker: Broker, build: Callable[[int], list[Message]], count: int, batch: int
) -> None:
    for first in range(0, count, batch):
        await broker.publish(build(min(batch, count - first)))


async def _latency_phase(
    broker: Broker,
    build: Callable[[int], list[Message]],
    counter: AckCounter,
    running: asyncio.Task[None],
    result: BenchResult,
    config: BenchConfig,
    progress: Progress | None,
) -> BenchResult:
    rate = max(1.0, result.throughput * config.latency_fraction)
    total = max(1, min(config.count, int(rate * _LATENCY_SECONDS)))
    _phase(counter, "latency", counter.acked, total, progress)
    publishes: set[asyncio.Task[None]] = set()
    start = time.perf_counter()
    sent = 0
    while sent < total:
        due = min(total, int((time.perf_counter() - start) * rate) + 1)
        if due > sent:
            messages = build(due - sent)
            for offset, message in enumerate(messages):
                counter.scheduled[message.id] = start + (sent + offset) / rate
            task = asyncio.create_task(broker.publish(messages))
            publishes.add(task)
            task.add_done_callback(publishes.discard)
            sent = due
        next_due = start + sent / rate
        await asyncio.sleep(max(_TICK, next_due - time.perf_counter()))
    if publishes:
        await asyncio.gather(*publishes)
    await _finish(counter, running)
    latencies = sorted(seconds * 1000 for seconds in counter.latencies)
    return BenchResult(
        **{
            **result.as_dict(),
            "latency_rate": rate,
            "latency_count": len(latencies),
            "p50_ms": percentile(latencies, 0.50),
            "p99_ms": percentile(latencies, 0.99),
            "max_ms": latencies[-1],
        }
    )


async def bench_backend(
    settings: Settings, config: BenchConfig, *, progress: Progress | None = None
) -> BenchResult:
    """Build, connect and measure the backend ``settings`` names, then close it.

    The SQLite backend is measured on a temporary database next to ``settings.sqlite_path``
    (the same disk), so a benchmark never writes into the real queue file.
    """
    with scratch_settings(settings) as scratch:
        broker = create_broker(scratch)
        async with broker:
            return await run_bench(broker, config, progress=progress)


@contextlib.contextmanager
def scratch_settings(settings: Settings) -> Iterator[Settings]:
    """``settings``, with SQLite pointed at a temporary database on the same disk."""
    if settings.queue_type != "sqlite":
        yield settings
        return
    # Imported here: tempfile brings shutil and its compression modules (~1 MiB) along.
    import tempfile
    from pathlib import Path

    folder = Path(settings.sqlite_path).expanduser().parent
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix="bench-") as scratch:
        yield replace(settings, sqlite_path=str(Path(scratch) / "bench.db"))
