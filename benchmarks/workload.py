"""The one workload every side runs, and how a side reports what it measured.

Standard library only: the peer frameworks' runners import this module from a separate
virtualenv that has no queuekit in it.

Every side: a consumer with a no-op handler (it decodes the JSON payload, as every framework
does before calling a handler) runs while a producer publishes ``count`` messages of
:data:`PAYLOAD_BYTES` of JSON in batches of :data:`PUBLISH_BATCH`, with the broker's durable
publish (confirms / acks=all / XADD / a synchronous commit). Each message is encoded from the
:func:`payload` object as it is published, as an application encodes each of its messages:
queuekit and the peers take the object, the raw sides call :func:`encode`. The consumer
takes at most :data:`PREFETCH` messages at a time and acks after handling. A warm-up of
:data:`WARMUP` messages runs first. The figure is ``count`` over first publish -> last ack.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import Any

PAYLOAD_BYTES = 1024
PREFETCH = 256
PUBLISH_BATCH = 500
WARMUP = 200

REDIS_URL = "redis://127.0.0.1:6379/0"
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/"
RABBITMQ_MANAGEMENT = "http://127.0.0.1:15672"
KAFKA_BOOTSTRAP = "127.0.0.1:9092"
KAFKA_PARTITIONS = 3

RESULT_MARK = "BENCH-RESULT "


def payload() -> dict[str, Any]:
    """The JSON object of every message; it encodes to exactly :data:`PAYLOAD_BYTES`."""
    overhead = len(b'{"n":0,"data":""}')
    return {"n": 0, "data": "x" * (PAYLOAD_BYTES - overhead)}


def unique_name(prefix: str) -> str:
    """A fresh name for a queue / stream / topic: the brokers are shared with others."""
    return f"bench-{prefix}-{uuid.uuid4().hex[:10]}"


# encode(value) -> bytes: a payload object as the JSON a raw side publishes, once per message.
try:  # the raw clients at their best encode and decode with orjson, like queuekit
    from orjson import dumps as encode
    from orjson import loads as _decode
except ImportError:  # pragma: no cover - a peers virtualenv without orjson

    def encode(value: Any) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()

    _decode = json.loads


assert len(encode(payload())) == PAYLOAD_BYTES


def handle(body: bytes) -> None:
    """The no-op handler of the raw sides: it only decodes its payload."""
    _decode(body)


class Stopwatch:
    """Seconds from :meth:`start` to :meth:`stop`."""

    def __init__(self) -> None:
        self.started = 0.0
        self.stopped = 0.0

    def start(self) -> None:
        self.started = time.perf_counter()

    def stop(self) -> None:
        self.stopped = time.perf_counter()

    @property
    def seconds(self) -> float:
        return self.stopped - self.started


def peak_rss_kib(pid: int | str = "self") -> int:
    """The process's peak resident set size (``VmHWM``), in KiB.

    Not ``ru_maxrss`` of the child: Linux carries the parent's peak over fork and exec.
    """
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/<pid>/status")


def report(count: int, seconds: float, **extra: Any) -> None:
    """Print the side's result where the harness looks for it (one marked JSON line)."""
    result = {
        "count": count,
        "seconds": seconds,
        "rate": count / seconds,
        "peak_rss_kib": peak_rss_kib(),
        **extra,
    }
    sys.stdout.write(RESULT_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()
