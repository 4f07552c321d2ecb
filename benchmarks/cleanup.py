"""Delete what a benchmark round left on a shared broker: only its own, uniquely named objects.

Never flushes anything: the brokers are shared with other people's tests.
"""

from __future__ import annotations

import asyncio
import urllib.parse

from benchmarks.workload import KAFKA_BOOTSTRAP, RABBITMQ_MANAGEMENT, REDIS_URL


async def delete_topic(backend: str, name: str) -> None:
    """Delete every broker object whose name contains ``name`` (a unique benchmark name)."""
    if backend == "redis":
        await _delete_redis(name)
    elif backend == "rabbitmq":
        await asyncio.to_thread(_delete_rabbitmq, name)
    elif backend == "kafka":
        await asyncio.to_thread(_delete_kafka, name)


async def _delete_redis(name: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"*{name}*", count=1000)]
        if keys:
            await client.delete(*keys)
        await client.srem("queuekit:topics", name)
    finally:
        await client.aclose()


def _delete_rabbitmq(name: str) -> None:
    import httpx

    with httpx.Client(base_url=RABBITMQ_MANAGEMENT, auth=("guest", "guest"), timeout=10) as http:
        for kind in ("queues", "exchanges"):
            for item in http.get(f"/api/{kind}/%2F", params={"columns": "name"}).json():
                if name in item["name"]:
                    quoted = urllib.parse.quote(item["name"], safe="")
                    http.delete(f"/api/{kind}/%2F/{quoted}")


def _delete_kafka(name: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": KAFKA_BOOTSTRAP})
    topics = [t for t in admin.list_topics(timeout=10).topics if name in t]
    if topics:
        for future in admin.delete_topics(topics).values():
            future.result()
