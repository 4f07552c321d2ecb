"""Prometheus metrics on an injected :class:`~prometheus_client.CollectorRegistry`.

Names follow the product's spec. Labels: ``topic``, ``group``, ``backend``, ``outcome``.
Nothing is registered globally: each :class:`Metrics` owns the collectors it creates on the
registry it was given, so tests and several apps in one process never collide.

The two series a worker updates per message (``worker_tasks_processed_total`` and
``worker_task_duration_seconds``) are kept by :class:`WorkerSeries` as plain numbers rather
than in prometheus_client's Counter and Histogram, whose every update takes a mutex (four
per message were a quarter of a worker's CPU on a fast backend). A scrape sees the same
names, labels, help texts, buckets and ``_created`` samples either way.
"""

from __future__ import annotations

import math
import threading
import time
from bisect import bisect_left
from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge
    from prometheus_client.metrics_core import Metric

    from queuekit.broker import TopicStats

__all__ = ["CONTENT_TYPE_LATEST", "HandlerSeries", "Metrics", "WorkerSeries"]


def _module_getattr(name: str) -> str:
    # prometheus_client is loaded with the first Metrics (or this constant), not on import:
    # a process that never records metrics does not pay for it.
    if name == "CONTENT_TYPE_LATEST":
        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        return CONTENT_TYPE_LATEST
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# mypyc: a compiled module-level ``def __getattr__`` is called by the module's own init
# (looking up ``__file__``) before its globals exist, and crashes; installed here instead,
# once the module is initialised.
globals()["__getattr__"] = _module_getattr
if TYPE_CHECKING:
    CONTENT_TYPE_LATEST: str


DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
# The histogram's upper bounds as prometheus_client counts them: +Inf closes the last bucket.
_UPPER_BOUNDS = (*(float(bound) for bound in DURATION_BUCKETS), math.inf)
# Their ``le`` labels as prometheus_client writes them (repr of the float, "+Inf").
_LE_LABELS = tuple("+Inf" if bound == math.inf else repr(bound) for bound in _UPPER_BOUNDS)

_PROCESSED = "worker_tasks_processed"
_PROCESSED_HELP = "Messages a worker finished with, by outcome."
_DURATION = "worker_task_duration_seconds"
_DURATION_HELP = "Time a handler took, per message."

# (series, outcome, unix time it was first counted): one child of the processed counter.
_FirstSeen = tuple["HandlerSeries", str, float]


class Metrics:
    """All of queuekit's collectors, registered on one registry.

    prometheus_client itself is loaded, and the registry built, when something first needs
    them (``registry``, a scrape, a publish or error count, a gauge): a worker that only
    counts processed messages runs without it until it is scraped. A given ``registry`` is
    filled at once. Record processed messages (:meth:`processed`, or a
    :class:`HandlerSeries` from ``worker.series``) from one thread: the worker's event loop.

    Outcomes of ``worker_tasks_processed_total``: ``success``, ``retried``, ``dead_lettered``,
    ``duplicate`` (skipped by idempotency), ``released`` (given back at shutdown).
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, backend: str = "") -> None:
        self.backend = backend
        self.worker = WorkerSeries(backend)
        self._given_registry = registry
        self._collectors: _Collectors | None = None
        self._building = threading.Lock()  # a scrape on another thread may come first
        if registry is not None:
            self._prometheus()

    @property
    def registry(self) -> CollectorRegistry:
        """The registry every collector is on (the given one, else a private one)."""
        return self._prometheus().registry

    @property
    def messages_sent(self) -> Counter:
        """``queue_messages_sent_total{topic, backend}``."""
        return self._prometheus().messages_sent

    @property
    def errors(self) -> Counter:
        """``queue_errors_total{topic, backend, stage}``."""
        return self._prometheus().errors

    @property
    def queue_depth(self) -> Gauge:
        """``queue_depth{topic, group, backend}``."""
        return self._prometheus().queue_depth

    @property
    def queue_in_flight(self) -> Gauge:
        """``queue_in_flight{topic, group, backend}``."""
        return self._prometheus().queue_in_flight

    @property
    def queue_lag(self) -> Gauge:
        """``queue_lag{topic, group, backend}``."""
        return self._prometheus().queue_lag

    @property
    def dead_letter_depth(self) -> Gauge:
        """``queue_dead_letters{topic, backend}``."""
        return self._prometheus().dead_letter_depth

    def sent(self, topic: str, count: int = 1) -> None:
        """Count ``count`` confirmed publishes to ``topic``."""
        self.messages_sent.labels(topic, self.backend).inc(count)

    def error(self, topic: str, stage: str) -> None:
        """Count one error at ``stage`` (``publish``, ``handler``, ``timeout``, ``decode``...)."""
        self.errors.labels(topic, self.backend, stage).inc()

    def processed(self, topic: str, group: str, outcome: str, duration: float | None) -> None:
        """Count one finished message and, if it ran, observe its handler's duration."""
        self.worker.series(topic, group).record(outcome, duration)

    def observe_stats(self, stats: TopicStats) -> None:
        """Set the queue gauges from a broker's counts for one topic."""
        for group in stats.groups:
            labels = (stats.topic, group.group, self.backend)
            self.queue_depth.labels(*labels).set(group.depth)
            self.queue_in_flight.labels(*labels).set(group.in_flight)
            self.queue_lag.labels(*labels).set(group.lag)
        self.dead_letter_depth.labels(stats.topic, self.backend).set(stats.dead_letters)

    def render(self) -> bytes:
        """The registry in Prometheus' text format (serve with ``CONTENT_TYPE_LATEST``)."""
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def _prometheus(self) -> _Collectors:
        collectors = self._collectors
        if collectors is None:
            with self._building:
                collectors = self._collectors
                if collectors is None:
                    collectors = self._collectors = _Collectors(self._given_registry, self.worker)
        return collectors


class _Collectors:
    """prometheus_client's collectors of one :class:`Metrics`, on its registry."""

    def __init__(self, registry: CollectorRegistry | None, worker: WorkerSeries) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = registry if registry is not None else CollectorRegistry()
        self.messages_sent = Counter(
            "queue_messages_sent",
            "Messages published and confirmed by the broker.",
            ["topic", "backend"],
            registry=self.registry,
        )
        self.errors = Counter(
            "queue_errors",
            "Errors: failed publishes and handler failures.",
            ["topic", "backend", "stage"],
            registry=self.registry,
        )
        self.registry.register(worker)
        self.queue_depth = Gauge(
            "queue_depth",
            "Messages ready for delivery, per topic and group.",
            ["topic", "group", "backend"],
            registry=self.registry,
        )
        self.queue_in_flight = Gauge(
            "queue_in_flight",
            "Messages delivered and not yet acknowledged, per topic and group.",
            ["topic", "group", "backend"],
            registry=self.registry,
        )
        self.queue_lag = Gauge(
            "queue_lag",
            "Messages not yet handled by a group (ready, in flight and delayed).",
            ["topic", "group", "backend"],
            registry=self.registry,
        )
        self.dead_letter_depth = Gauge(
            "queue_dead_letters",
            "Messages in the dead-letter queue of a topic.",
            ["topic", "backend"],
            registry=self.registry,
        )


class HandlerSeries:
    """The processed counts and handler durations of one (topic, group).

    Updated by :meth:`record` from one thread at a time (a worker records on its event
    loop), without a lock; read by :meth:`WorkerSeries.collect` from any thread.
    """

    __slots__ = ("_first_seen", "buckets", "created", "group", "outcomes", "sum", "topic")

    def __init__(self, topic: str, group: str, first_seen: list[_FirstSeen]) -> None:
        self.topic = topic
        self.group = group
        self.created = time.time()
        # Observations per bucket (not cumulative): index i counts durations <= bound i only.
        self.buckets = [0] * len(_UPPER_BOUNDS)
        self.sum = 0.0
        # outcome -> count; each new outcome is also appended to ``first_seen``.
        self.outcomes: dict[str, int] = {}
        self._first_seen = first_seen

    def record(self, outcome: str, duration: float | None) -> None:
        """Count one finished message and, if its handler ran, its ``duration`` in seconds."""
        outcomes = self.outcomes
        count = outcomes.get(outcome)
        if count is not None:
            outcomes[outcome] = count + 1
        else:
            outcomes[outcome] = 1  # before it is listed: a scrape may be reading the list
            self._first_seen.append((self, outcome, time.time()))
        if duration is not None:
            # bisect_left: the first bound >= duration, i.e. prometheus' ``amount <= bound``.
            self.buckets[bisect_left(_UPPER_BOUNDS, duration)] += 1
            self.sum += duration


class WorkerSeries:
    """A prometheus collector of every :class:`HandlerSeries` of one :class:`Metrics`.

    Exposes ``worker_tasks_processed_total`` (a counter) and ``worker_task_duration_seconds``
    (a histogram with :data:`DURATION_BUCKETS`) exactly as prometheus_client's own Counter and
    Histogram would, ``_created`` samples included (unless prometheus_client's created series
    are disabled).
    """

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self._series: dict[tuple[str, str], HandlerSeries] = {}
        # The counter's children in the order prometheus_client would list them.
        self._first_seen: list[_FirstSeen] = []

    def series(self, topic: str, group: str) -> HandlerSeries:
        """The series of (``topic``, ``group``), created (with a zero histogram) on first use."""
        series = self._series.get((topic, group))
        if series is None:
            series = self._series[(topic, group)] = HandlerSeries(topic, group, self._first_seen)
        return series

    def describe(self) -> Iterator[Metric]:
        """The two families without samples: lets the registry detect name collisions."""
        from prometheus_client.metrics_core import Metric

        yield Metric(_PROCESSED, _PROCESSED_HELP, "counter")
        yield Metric(_DURATION, _DURATION_HELP, "histogram")

    def collect(self) -> Iterator[Metric]:
        """Both families with a sample per series, read from copies of the live numbers."""
        from prometheus_client import metrics as prometheus_metrics
        from prometheus_client.metrics_core import Metric

        # prometheus_client's switch (PROMETHEUS_DISABLE_CREATED_SERIES or
        # disable_created_metrics()), read per scrape as its own collectors do.
        with_created = getattr(prometheus_metrics, "_use_created", True)
        backend = self.backend
        # list() copies in one step under the GIL: the loop may be counting meanwhile.
        first_seen = list(self._first_seen)
        all_series = list(self._series.values())

        processed = Metric(_PROCESSED, _PROCESSED_HELP, "counter")
        for series, outcome, created in first_seen:
            labels = {
                "topic": series.topic,
                "group": series.group,
                "backend": backend,
                "outcome": str(outcome),
            }
            processed.add_sample(_PROCESSED + "_total", labels, float(series.outcomes[outcome]))
            if with_created:
                processed.add_sample(_PROCESSED + "_created", labels, created)
        yield processed

        duration = Metric(_DURATION, _DURATION_HELP, "histogram")
        for series in all_series:
            labels = {"topic": series.topic, "group": series.group, "backend": backend}
            counts = list(series.buckets)
            total = series.sum
            cumulative = 0.0
            for le_label, count in zip(_LE_LABELS, counts, strict=True):
                cumulative += count
                le = {**labels, "le": le_label}
                duration.add_sample(_DURATION + "_bucket", le, cumulative)
            duration.add_sample(_DURATION + "_count", labels, cumulative)
            duration.add_sample(_DURATION + "_sum", labels, total)
            if with_created:
                duration.add_sample(_DURATION + "_created", labels, series.created)
        yield duration
