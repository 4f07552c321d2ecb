"""Kafka: raw confluent-kafka vs queuekit's KafkaBroker, same work, same durability.

Each round publishes N 1 KiB JSON messages (idempotent producer, acks=all, all produced then
awaited once) and consumes them in a consumer group with a no-op handler, committing after
handling (raw: one async commit per consumed batch; queuekit: ``async for`` + ``ack``).
Rounds of the two alternate; the table shows the median msgs/s of each phase and the ratio,
and the CPU each side spent per message (process time, every thread, first publish -> last ack:
on this shared machine the figure that moves least with the load), also split by thread (the
main thread, which runs queuekit's event loop; Python's other threads; librdkafka's): one GIL
and one event loop thread bound queuekit, where the raw side spreads over its threads.

    scripts/brokers start kafka
    .venv/bin/python benchmarks/bench_kafka.py [--messages 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import os
import statistics
import threading
import time
import uuid

import orjson
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from queuekit.backends.kafka import KafkaBroker
from queuekit.message import Message

BOOTSTRAP = "127.0.0.1:9092"
PARTITIONS = 3
PAYLOAD = orjson.dumps({"data": "x" * 1000, "n": 0})  # ~1 KiB of JSON


def fresh_topic(prefix: str) -> str:
    return f"bench-{prefix}-{uuid.uuid4().hex[:8]}"


Rates = tuple[float, float, float, float]
"""(publish msgs/s, consume msgs/s, total msgs/s, CPU microseconds per message)"""

CpuByThread = dict[str, float]
"""CPU seconds by kind of thread: main, python (other Python threads), librdkafka."""

_last_cpu: dict[str, CpuByThread] = {}  # each side's split of its latest round


THREAD_KINDS = ("main", "python", "librdkafka")


def thread_cpu() -> dict[int, tuple[str, float]]:
    """Each live thread of this process: (kind, CPU seconds so far), by thread id."""
    python = {thread.native_id for thread in threading.enumerate()}
    ticks = os.sysconf("SC_CLK_TCK")
    threads: dict[int, tuple[str, float]] = {}
    for entry in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{entry}/stat") as stat:
                fields = stat.read().rpartition(")")[2].split()
        except OSError:  # ended meanwhile
            continue
        tid = int(entry)
        kind = "main" if tid == os.getpid() else "python" if tid in python else "librdkafka"
        threads[tid] = (kind, (int(fields[11]) + int(fields[12])) / ticks)
    return threads


def cpu_split(before: dict[int, tuple[str, float]], count: int) -> CpuByThread:
    """Microseconds per message by kind of thread since ``before`` (live threads only)."""
    split: CpuByThread = collections.defaultdict(float)
    for tid, (kind, seconds) in thread_cpu().items():
        split[kind] += (seconds - before.get(tid, (kind, 0.0))[1]) / count * 1e6
    return dict(split)


def raw_round(count: int) -> Rates:
    """The raw client doing it by hand, at its best."""
    topic = fresh_topic("raw")
    admin = AdminClient({"bootstrap.servers": BOOTSTRAP})
    for future in admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS)]).values():
        future.result()
    producer = Producer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 2,
            "batch.num.messages": 10000,
        }
    )
    consumer = Consumer(
        {
            "bootstrap.servers": BOOTSTRAP,
            "group.id": f"{topic}:bench",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    # Like queuekit's round: the consumer has joined its group before the clock starts.
    consumer.subscribe([topic])
    producer.produce(topic, PAYLOAD)
    producer.flush()
    while not [r for r in consumer.consume(1, 1.0) if r.error() is None]:
        pass
    consumer.commit(asynchronous=False)
    failures: list[object] = []

    def on_delivery(error: object, _record: object) -> None:
        if error is not None:
            failures.append(error)

    cpu = time.process_time()
    threads = thread_cpu()
    began = started = time.perf_counter()
    for _ in range(count):
        while True:
            try:
                producer.produce(
                    topic,
                    PAYLOAD,
                    headers=[("id", uuid.uuid4().hex.encode())],
                    on_delivery=on_delivery,
                )
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush()
    publish_rate = count / (time.perf_counter() - started)
    assert not failures, failures[:3]

    seen = 0
    started = time.perf_counter()
    while seen < count:
        # A short timeout like the harness's raw side: a long one would wait it out at the tail.
        batch = consumer.consume(1000, 0.005)
        handled = [record for record in batch if record.error() is None]
        for record in handled:
            orjson.loads(record.value())  # what a handler receives
        seen += len(handled)
        if handled:
            consumer.commit(asynchronous=True)
    finished = time.perf_counter()
    cpu_per_message = (time.process_time() - cpu) / count * 1e6
    _last_cpu["raw"] = cpu_split(threads, count)
    consumer.close()
    for future in admin.delete_topics([topic]).values():
        future.result()
    return publish_rate, count / (finished - started), count / (finished - began), cpu_per_message


async def queuekit_round(count: int) -> Rates:
    """queuekit's publish and subscribe/ack loop.

    queuekit's consumer starts decoding records while the publish runs, so its phases
    overlap; the total (first publish to last ack) is the fair comparison.
    """
    topic = fresh_topic("qk")
    async with KafkaBroker(BOOTSTRAP, partitions=PARTITIONS) as broker:
        await broker.publish([Message(topic, PAYLOAD)])  # creates the topic family
        sub = await broker.subscribe(topic, "bench", prefetch=1000)
        first = await anext(sub)
        await first.ack()
        messages = [Message(topic, PAYLOAD) for _ in range(count)]
        cpu = time.process_time()
        threads = thread_cpu()
        began = started = time.perf_counter()
        await broker.publish(messages)
        publish_rate = count / (time.perf_counter() - started)

        seen = 0
        started = time.perf_counter()
        async for delivery in sub:
            delivery.message.json()  # what a handler receives
            await delivery.ack()
            seen += 1
            if seen == count:
                break
        finished = time.perf_counter()
        cpu_per_message = (time.process_time() - cpu) / count * 1e6
        _last_cpu["queuekit"] = cpu_split(threads, count)
        await sub.close()
        await broker.delete_topic(topic)
    return publish_rate, count / (finished - started), count / (finished - began), cpu_per_message


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--messages", type=int, default=20000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    raw: list[Rates] = []
    ours: list[Rates] = []
    for round_number in range(1, args.rounds + 1):
        raw.append(raw_round(args.messages))
        ours.append(asyncio.run(queuekit_round(args.messages)))
        print(
            f"round {round_number}: total msgs/s raw {raw[-1][2]:>9,.0f}  "
            f"queuekit {ours[-1][2]:>9,.0f}  ratio {ours[-1][2] / raw[-1][2]:.2f}x  "
            f"CPU us/msg raw {raw[-1][3]:.1f} queuekit {ours[-1][3]:.1f}"
        )
        for side, split in _last_cpu.items():
            parts = "  ".join(f"{kind} {split.get(kind, 0.0):.1f}" for kind in THREAD_KINDS)
            print(f"         {side:<9} CPU us/msg by thread: {parts}")
    print(f"\nKafka, {args.messages:,} x 1 KiB JSON, median of {args.rounds} rounds")
    print(f"{'phase':<10}{'raw msgs/s':>14}{'queuekit msgs/s':>18}{'ratio':>8}")
    for index, phase in enumerate(("publish", "consume", "total")):
        raw_rate = statistics.median(r[index] for r in raw)
        our_rate = statistics.median(r[index] for r in ours)
        print(f"{phase:<10}{raw_rate:>14,.0f}{our_rate:>18,.0f}{our_rate / raw_rate:>7.2f}x")
    raw_cpu = statistics.median(r[3] for r in raw)
    our_cpu = statistics.median(r[3] for r in ours)
    print(f"{'CPU us/msg':<10}{raw_cpu:>14.1f}{our_cpu:>18.1f}{our_cpu / raw_cpu:>7.2f}x")


if __name__ == "__main__":
    main()
