"""Prometheus metrics on an injected :class:`~prometheus_client.CollectorRegistry`.

Names follow the product's spec. Labels: ``topic``, ``group``, ``backend``, ``outcome``.
Nothing is registered globally: each :class:`Metrics` owns the collectors it creates on the
registry it was given, so tests and several apps in one process never collide.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from queuekit.broker import TopicStats

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]  # noqa: F822 - the constant comes from __getattr__


def __getattr__(name: str) -> str:
    # prometheus_client is loaded with the first Metrics (or this constant), not on import:
    # a process that never records metrics does not pay for it.
    if name == "CONTENT_TYPE_LATEST":
        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        return CONTENT_TYPE_LATEST
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class Metrics:
    """All of queuekit's collectors, registered on one registry.

    Outcomes of ``worker_tasks_processed_total``: ``success``, ``retried``, ``dead_lettered``,
    ``duplicate`` (skipped by idempotency), ``released`` (given back at shutdown).
    """

    def __init__(self, registry: CollectorRegistry | None = None, *, backend: str = "") -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry if registry is not None else CollectorRegistry()
        self.backend = backend
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
        self.tasks_processed = Counter(
            "worker_tasks_processed",
            "Messages a worker finished with, by outcome.",
            ["topic", "group", "backend", "outcome"],
            registry=self.registry,
        )
        self.task_duration = Histogram(
            "worker_task_duration_seconds",
            "Time a handler took, per message.",
            ["topic", "group", "backend"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
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

    def sent(self, topic: str, count: int = 1) -> None:
        """Count ``count`` confirmed publishes to ``topic``."""
        self.messages_sent.labels(topic, self.backend).inc(count)

    def error(self, topic: str, stage: str) -> None:
        """Count one error at ``stage`` (``publish``, ``handler``, ``timeout``, ``decode``...)."""
        self.errors.labels(topic, self.backend, stage).inc()

    def processed(self, topic: str, group: str, outcome: str, duration: float | None) -> None:
        """Count one finished message and, if it ran, observe its handler's duration."""
        self.tasks_processed.labels(topic, group, self.backend, outcome).inc()
        if duration is not None:
            self.task_duration.labels(topic, group, self.backend).observe(duration)

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
