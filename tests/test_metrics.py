"""Metrics: the spec's Prometheus names, on an injected registry, without collisions."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from queuekit.broker import GroupStats, TopicStats
from queuekit.metrics import CONTENT_TYPE_LATEST, Metrics


def families(metrics: Metrics) -> dict[str, str]:
    """Metric family name -> type, as a scraper sees them in the text format.

    prometheus_client also exports a ``*_created`` timestamp per counter and histogram
    series; those are its own convention, not part of the product's names.
    """
    text = metrics.render().decode()
    return {
        family.name: family.type
        for family in text_string_to_metric_families(text)
        if not family.name.endswith("_created")
    }


def test_the_spec_names_and_types_are_exposed() -> None:
    # Given metrics on a fresh registry with one of each event recorded
    metrics = Metrics(CollectorRegistry(), backend="sqlite")
    metrics.sent("emails")
    metrics.error("emails", "publish")
    metrics.processed("emails", "default", "success", 0.01)
    metrics.observe_stats(TopicStats("emails", (GroupStats("default", 1, 0, 0, 1),), 0))

    # When scraped
    text = metrics.render().decode()

    # Then the product's names are there with the right types
    assert families(metrics) == {
        "queue_messages_sent": "counter",
        "queue_errors": "counter",
        "worker_tasks_processed": "counter",
        "worker_task_duration_seconds": "histogram",
        "queue_depth": "gauge",
        "queue_in_flight": "gauge",
        "queue_lag": "gauge",
        "queue_dead_letters": "gauge",
    }
    for sample in (
        "queue_messages_sent_total",
        "queue_errors_total",
        "worker_tasks_processed_total",
        "worker_task_duration_seconds_bucket",
        "worker_task_duration_seconds_sum",
        "worker_task_duration_seconds_count",
    ):
        assert f"\n{sample}{{" in text


def test_counters_carry_topic_group_backend_and_outcome_labels() -> None:
    # Given a worker's metrics for the redis backend
    metrics = Metrics(CollectorRegistry(), backend="redis")

    # When messages are sent, fail and are processed
    metrics.sent("orders", count=3)
    metrics.error("orders", "handler")
    metrics.error("orders", "handler")
    metrics.processed("orders", "billing", "success", 0.2)
    metrics.processed("orders", "billing", "dead_lettered", None)

    # Then each sample is labelled and counted
    value = metrics.registry.get_sample_value
    assert value("queue_messages_sent_total", {"topic": "orders", "backend": "redis"}) == 3
    assert (
        value("queue_errors_total", {"topic": "orders", "backend": "redis", "stage": "handler"})
        == 2
    )
    labels = {"topic": "orders", "group": "billing", "backend": "redis"}
    assert value("worker_tasks_processed_total", {**labels, "outcome": "success"}) == 1
    assert value("worker_tasks_processed_total", {**labels, "outcome": "dead_lettered"}) == 1


def test_the_duration_is_observed_only_when_the_handler_ran() -> None:
    # Given one processed message with a duration and one skipped (duplicate) without
    metrics = Metrics(CollectorRegistry(), backend="memory")
    metrics.processed("t", "g", "success", 0.3)
    metrics.processed("t", "g", "duplicate", None)

    # Then the histogram counted one observation, in the right bucket
    labels = {"topic": "t", "group": "g", "backend": "memory"}
    value = metrics.registry.get_sample_value
    assert value("worker_task_duration_seconds_count", labels) == 1
    assert value("worker_task_duration_seconds_sum", labels) == 0.3
    assert value("worker_task_duration_seconds_bucket", {**labels, "le": "0.25"}) == 0
    assert value("worker_task_duration_seconds_bucket", {**labels, "le": "0.5"}) == 1


def test_observe_stats_sets_the_gauges_per_group_and_dead_letters_per_topic() -> None:
    # Given a topic with two groups and dead letters
    metrics = Metrics(CollectorRegistry(), backend="sqlite")
    stats = TopicStats(
        "images",
        (GroupStats("thumbs", 5, 2, 1, 8), GroupStats("audit", 0, 0, 0, 0)),
        dead_letters=4,
    )

    # When observed twice, the second time with new numbers
    metrics.observe_stats(stats)
    metrics.observe_stats(TopicStats("images", (GroupStats("thumbs", 1, 0, 0, 1),), 0))

    # Then the gauges hold the latest values
    value = metrics.registry.get_sample_value
    thumbs = {"topic": "images", "group": "thumbs", "backend": "sqlite"}
    assert value("queue_depth", thumbs) == 1
    assert value("queue_in_flight", thumbs) == 0
    assert value("queue_lag", thumbs) == 1
    assert value("queue_dead_letters", {"topic": "images", "backend": "sqlite"}) == 0
    audit = {"topic": "images", "group": "audit", "backend": "sqlite"}
    assert value("queue_depth", audit) == 0


def test_two_metrics_on_two_registries_do_not_collide() -> None:
    # Given two Metrics in one process, on their own registries
    first = Metrics(CollectorRegistry(), backend="a")
    second = Metrics(CollectorRegistry(), backend="b")

    # When each records something
    first.sent("t")
    second.sent("t", count=5)

    # Then each registry sees only its own counts
    assert (
        first.registry.get_sample_value("queue_messages_sent_total", {"topic": "t", "backend": "a"})
        == 1
    )
    assert (
        first.registry.get_sample_value("queue_messages_sent_total", {"topic": "t", "backend": "b"})
        is None
    )
    assert (
        second.registry.get_sample_value(
            "queue_messages_sent_total", {"topic": "t", "backend": "b"}
        )
        == 5
    )


def test_without_a_registry_each_metrics_gets_a_private_one() -> None:
    # Given two Metrics created without a registry (constructing the second must not raise
    # "Duplicated timeseries", as it would on the global default registry)
    first, second = Metrics(), Metrics()

    # Then they do not share one
    assert first.registry is not second.registry


def test_render_is_the_prometheus_text_format() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.sent("t")
    assert CONTENT_TYPE_LATEST.startswith("text/plain")
    assert b"# TYPE queue_messages_sent_total counter" in metrics.render()


def test_the_worker_series_scrape_like_prometheus_clients_own_counter_and_histogram() -> None:
    # Given queuekit's worker series and prometheus_client's Counter and Histogram fed the
    # same outcomes and durations (one right on a bucket's bound, one past the last)
    from prometheus_client import Counter, Histogram, generate_latest

    from queuekit.metrics import DURATION_BUCKETS

    metrics = Metrics(CollectorRegistry(), backend="memory")
    reference = CollectorRegistry()
    processed = Counter(
        "worker_tasks_processed",
        "Messages a worker finished with, by outcome.",
        ["topic", "group", "backend", "outcome"],
        registry=reference,
    )
    duration = Histogram(
        "worker_task_duration_seconds",
        "Time a handler took, per message.",
        ["topic", "group", "backend"],
        buckets=DURATION_BUCKETS,
        registry=reference,
    )
    events = [
        ("a", "default", "success", 0.0004),
        ("b", "g2", "retried", 0.25),
        ("a", "default", "dead_lettered", 301.0),
        ("a", "default", "success", 0.01),
    ]

    # When both record them
    for topic, group, outcome, seconds in events:
        metrics.processed(topic, group, outcome, seconds)
        processed.labels(topic, group, "memory", outcome).inc()
        duration.labels(topic, group, "memory").observe(seconds)

    # Then a scrape shows the same lines, but for the creation times
    def worker_lines(text: bytes) -> list[str]:
        return [
            line.rsplit(" ", 1)[0] if "_created" in line else line
            for line in text.decode().splitlines()
            if "worker_" in line
        ]

    assert worker_lines(metrics.render()) == worker_lines(generate_latest(reference))
