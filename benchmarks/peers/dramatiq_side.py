"""Dramatiq: a no-op actor sent one message at a time (Dramatiq has no batched send),
run by an in-process ``dramatiq.Worker`` with ``queue_prefetch`` PREFETCH; Dramatiq acks
after the actor ran (its default).

RabbitMQ: ``RabbitmqBroker(confirm_delivery=True)`` (publisher confirms, persistent
messages) with ``max_priority`` 9 like queuekit's queues. Redis: ``RedisBroker`` in its own
namespace.
"""

from __future__ import annotations

from typing import Any

import dramatiq

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

THREADS = 8


def make_broker(kind: str, name: str) -> dramatiq.Broker:
    if kind == "rabbitmq":
        from dramatiq.brokers.rabbitmq import RabbitmqBroker

        return RabbitmqBroker(url=RABBITMQ_URL, confirm_delivery=True, max_priority=9)
    from dramatiq.brokers.redis import RedisBroker

    return RedisBroker(url=REDIS_URL, namespace=name)


def main(kind: str, count: int) -> float:
    name = unique_name("dramatiq")
    broker = make_broker(kind, name)
    dramatiq.set_broker(broker)
    counter = Counter()

    @dramatiq.actor(queue_name=name, max_retries=0, broker=broker)
    def noop(body: dict[str, Any]) -> None:
        counter.hit()

    worker = dramatiq.Worker(broker, worker_threads=THREADS)
    worker.queue_prefetch = PREFETCH  # what the dramatiq_queue_prefetch variable sets
    worker.start()
    body = payload()

    def one_round(n: int) -> float:
        counter.expect(n)
        clock = Stopwatch()
        clock.start()
        for _ in range(n):
            noop.send(body)
        counter.wait()
        clock.stop()
        return clock.seconds

    try:
        one_round(WARMUP)
        return one_round(count)
    finally:
        worker.stop()
        cleanup(kind, broker, name)
        broker.close()


def cleanup(kind: str, broker: dramatiq.Broker, name: str) -> None:
    if kind == "rabbitmq":
        channel = broker.channel  # type: ignore[attr-defined]
        for queue in (name, f"{name}.DQ", f"{name}.XQ"):
            channel.queue_delete(queue)
    else:
        client = broker.client  # type: ignore[attr-defined]
        keys = list(client.scan_iter(match=f"{name}*", count=1000))
        if keys:
            client.delete(*keys)


def run(broker: str, count: int) -> None:
    if broker not in ("rabbitmq", "redis"):
        raise SystemExit(f"dramatiq has no {broker} broker")
    report(count, main(broker, count))
