"""Celery: a no-op task sent with ``apply_async`` on one reused producer (Celery has no
batched send), run by an in-process worker (the threads pool, ``concurrency`` 8 and
``worker_prefetch_multiplier`` 32: PREFETCH messages), with Celery's recommended reliable
settings: ``task_acks_late=True`` (ack after the task), ``task_reject_on_worker_lost``,
results ignored.

RabbitMQ (py-amqp): persistent messages, ``confirm_publish``, ``x-max-priority`` 9 like
queuekit's queues. Redis: kombu's Redis transport (a list plus an unacked hash).
"""

from __future__ import annotations

from typing import Any

from celery import Celery
from celery.contrib.testing.worker import start_worker

from benchmarks.peers.common import Counter
from benchmarks.workload import (
    PREFETCH,
    RABBITMQ_URL,
    REDIS_URL,
    WARMUP,
    Stopwatch,
    payload,
    report,
    unique_name,
)

CONCURRENCY = 8


def make_app(kind: str, name: str) -> Celery:
    app = Celery(name, broker=RABBITMQ_URL if kind == "rabbitmq" else REDIS_URL)
    app.conf.update(
        task_default_queue=name,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_ignore_result=True,
        worker_prefetch_multiplier=PREFETCH // CONCURRENCY,
        worker_hijack_root_logger=False,
        broker_connection_retry_on_startup=True,
        task_serializer="json",
    )
    if kind == "rabbitmq":
        app.conf.update(
            broker_transport_options={"confirm_publish": True},
            task_queue_max_priority=9,
        )
    return app


def main(kind: str, count: int) -> float:
    name = unique_name("celery")
    app = make_app(kind, name)
    counter = Counter()

    @app.task(name="noop")
    def noop(body: dict[str, Any]) -> None:
        counter.hit()

    body = payload()

    def one_round(n: int) -> float:
        counter.expect(n)
        clock = Stopwatch()
        clock.start()
        with app.producer_or_acquire() as producer:
            for _ in range(n):
                noop.apply_async((body,), producer=producer)
        counter.wait()
        clock.stop()
        return clock.seconds

    try:
        with start_worker(
            app,
            pool="threads",
            concurrency=CONCURRENCY,
            perform_ping_check=False,
            loglevel="WARNING",
            shutdown_timeout=30,
        ):
            one_round(WARMUP)
            return one_round(count)
    finally:
        with app.connection_for_write() as connection:
            channel = connection.default_channel
            if kind == "rabbitmq":
                channel.queue_delete(name)
            else:
                client = channel.client
                keys = list(client.scan_iter(match=f"*{name}*", count=1000))
                if keys:
                    client.delete(*keys)


def run(broker: str, count: int) -> None:
    if broker not in ("rabbitmq", "redis"):
        raise SystemExit(f"celery has no {broker} broker here")
    report(count, main(broker, count))
