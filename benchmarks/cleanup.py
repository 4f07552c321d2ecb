"""Delete what a benchmark round left on a shared broker: only its own, uniquely named objects.

Never flushes anything: the brokers are shared with other people's tests.
"""

from __future__ import annotations

import asyncio

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
    from queuekit.backends.redis_streams import RedisStreamsBroker

    async with RedisStreamsBroker(REDIS_URL) as broker:
        await broker.delete_topic(name)
        # The raw and peer sides name their own keys (the bare Starlette endpoint's stream is
        # the topic itself, ~50 MB a round): delete every other key containing the name too.
        client = broker.client
        keys = [key async for key in client.scan_iter(match=f"*{name}*", count=1000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start : start + 1000])


def _delete_rabbitmq(name: str) -> None:
    # urllib, not httpx: this runs inside the measured side's process, whose peak RSS is
    # reported, and httpx's imports alone cost about 7 MiB. Imported here, not at the top:
    # urllib.request (http.client, email) adds about 1.8 MiB to the other backends' sides.
    import base64
    import json
    import urllib.parse
    import urllib.request

    token = base64.b64encode(b"guest:guest").decode()

    def call(method: str, path: str) -> bytes:
        request = urllib.request.Request(
            RABBITMQ_MANAGEMENT + path, method=method, headers={"Authorization": f"Basic {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body: bytes = response.read()
        return body

    for kind in ("queues", "exchanges"):
        for item in json.loads(call("GET", f"/api/{kind}/%2F?columns=name")):
            if name in item["name"]:
                call("DELETE", f"/api/{kind}/%2F/{urllib.parse.quote(item['name'], safe='')}")


def _delete_kafka(name: str) -> None:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": KAFKA_BOOTSTRAP})
    topics = [t for t in admin.list_topics(timeout=10).topics if name in t]
    if topics:
        for future in admin.delete_topics(topics).values():
            future.result()
