"""Redis Streams: raw redis-py vs queuekit's RedisStreamsBroker, same work, same durability.

Each round publishes N 1 KiB JSON messages and consumes them in a consumer group with a no-op
handler, acknowledging after handling.

* raw: pipelines of 1000 ``XADD``; ``XREADGROUP COUNT 1000`` (blocking), then one ``XACK``
  of the batch after handling it. This is redis-py at its best, by hand.
* queuekit: ``publish`` of 1000 messages per call (one round trip per call, like raw), then
  ``async for delivery in subscription`` (``prefetch=1000``) with the handler and
  ``await delivery.ack()`` (acks are queued and go with the subscription's next fetch, or
  with the broker's next settle batch); the clock stops once every ack is applied in Redis.

Rounds of the two alternate; the table shows the median msgs/s of each phase and the ratio.

    scripts/brokers start redis
    .venv/bin/python benchmarks/bench_redis.py [--messages 20000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid

import orjson
from redis.asyncio import Redis

from queuekit.backends.redis_streams import RedisStreamsBroker
from queuekit.backends.redis_streams.keys import TopicKeys
from queuekit.message import Message

URL = "redis://127.0.0.1:6379/0"
BATCH = 1000
PAYLOAD = orjson.dumps({"data": "x" * 1000, "n": 0})  # ~1 KiB of JSON


def fresh_topic(prefix: str) -> str:
    return f"bench-{prefix}-{uuid.uuid4().hex[:8]}"


async def raw_round(count: int) -> tuple[float, float]:
    """(publish msgs/s, consume msgs/s) for redis-py by hand."""
    client = Redis.from_url(URL, protocol=2)
    stream = f"bench-raw-{uuid.uuid4().hex[:8]}"
    await client.xgroup_create(stream, "bench", id="0", mkstream=True)
    try:
        started = time.perf_counter()
        for offset in range(0, count, BATCH):
            pipe = client.pipeline(transaction=False)
            for _ in range(min(BATCH, count - offset)):
                pipe.xadd(stream, {"payload": PAYLOAD})
            await pipe.execute()
        published = time.perf_counter() - started

        started = time.perf_counter()
        consumed = 0
        while consumed < count:
            reply = await client.xreadgroup("bench", "c1", {stream: ">"}, count=BATCH, block=1000)
            for _stream, entries in reply:
                ids = []
                for entry_id, fields in entries:
                    handle(fields[b"payload"])
                    ids.append(entry_id)
                await client.xack(stream, "bench", *ids)
                consumed += len(ids)
        return count / published, count / (time.perf_counter() - started)
    finally:
        await client.delete(stream)
        await client.aclose()


def handle(payload: bytes) -> None:
    """The no-op handler."""


async def all_acked(broker: RedisStreamsBroker, topic: str) -> None:
    """Return once Redis has applied every ack of group ``bench`` on ``topic``.

    Queued acks go with the subscription's next write, or the settler's: polled, since
    neither has to have sent them yet when the last ``ack()`` returns.
    """
    stream = TopicKeys(topic).lane(0)
    while True:
        summary = await broker.client.xpending(stream, "bench")
        if not summary["pending"]:
            return
        await asyncio.sleep(0.001)  # Redis has no way to tell: poll


async def queuekit_round(count: int) -> tuple[float, float]:
    """(publish msgs/s, consume msgs/s) for queuekit's broker."""
    topic = fresh_topic("qk")
    async with RedisStreamsBroker(URL) as broker:
        sub = await broker.subscribe(topic, "bench", prefetch=BATCH)
        try:
            started = time.perf_counter()
            for offset in range(0, count, BATCH):
                size = min(BATCH, count - offset)
                await broker.publish([Message(topic, PAYLOAD) for _ in range(size)])
            published = time.perf_counter() - started

            started = time.perf_counter()
            handled = 0
            async for delivery in sub:
                handle(delivery.message.payload)
                await delivery.ack()
                handled += 1
                if handled == count:
                    break
            await all_acked(broker, topic)  # as in the raw round
            return count / published, count / (time.perf_counter() - started)
        finally:
            await sub.close()
            keys = TopicKeys(topic)
            await broker.client.delete(
                *keys.lanes, keys.retry("bench"), keys.groups, keys.group_delayed("bench")
            )
            await broker.client.srem("queuekit:topics", topic)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    options = parser.parse_args()

    raw: list[tuple[float, float]] = []
    ours: list[tuple[float, float]] = []
    await raw_round(2000)  # warm up connections and the server
    await queuekit_round(2000)
    for _ in range(options.rounds):
        raw.append(await raw_round(options.messages))
        ours.append(await queuekit_round(options.messages))

    print(f"Redis Streams, {options.messages} x 1 KiB JSON, median of {options.rounds} rounds")
    print(f"{'phase':<10}{'raw redis-py':>16}{'queuekit':>16}{'ratio':>9}")
    for index, phase in enumerate(("publish", "consume")):
        raw_rate = statistics.median(r[index] for r in raw)
        our_rate = statistics.median(r[index] for r in ours)
        print(f"{phase:<10}{raw_rate:>14,.0f}/s{our_rate:>14,.0f}/s{our_rate / raw_rate:>8.2f}x")


if __name__ == "__main__":
    asyncio.run(main())
