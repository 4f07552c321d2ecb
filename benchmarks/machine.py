"""What the results file records: the machine, the software versions, the date."""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import re
import subprocess
from pathlib import Path
from typing import Any

from benchmarks.workload import RABBITMQ_MANAGEMENT, REDIS_URL
from queuekit.message import COMPILED

REPO = Path(__file__).resolve().parents[1]


def describe_machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with open("/proc/meminfo") as info:
        for line in info:
            if line.startswith("MemTotal"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory": memory,
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),
    }


def library_versions() -> dict[str, str]:
    names = (
        "queuekit",
        "aio-pika",
        "aiormq",
        "redis",
        "hiredis",
        "confluent-kafka",
        "fastapi",
        "starlette",
        "uvicorn",
        "pydantic",
        "orjson",
    )
    found = {}
    for name in names:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    try:
        import confluent_kafka

        found["librdkafka"] = confluent_kafka.libversion()[0]
    except ImportError:
        pass
    found["sqlite"] = __import__("sqlite3").sqlite_version
    found["queuekit build"] = "compiled (mypyc)" if COMPILED else "interpreted"
    return found


def broker_versions(groups: set[str]) -> dict[str, str]:
    found: dict[str, str] = {}
    if groups & {"redis", "api"}:
        try:
            import redis

            found["redis-server"] = str(
                redis.Redis.from_url(REDIS_URL).info("server")["redis_version"]
            )
        except Exception as exc:
            found["redis-server"] = f"unknown ({type(exc).__name__})"
    if "rabbitmq" in groups:
        try:
            import httpx

            overview = httpx.get(f"{RABBITMQ_MANAGEMENT}/api/overview", auth=("guest", "guest"))
            found["rabbitmq-server"] = overview.json()["rabbitmq_version"]
        except Exception as exc:
            found["rabbitmq-server"] = f"unknown ({type(exc).__name__})"
    if "kafka" in groups:
        status = subprocess.run(
            [str(REPO / "scripts" / "brokers"), "status"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        match = re.search(r"kafka: up .* kafka ([\d.]+)", status)
        found["kafka"] = match.group(1) if match else "unknown"
    return found


def wrk_version(wrk: str | None) -> str | None:
    if wrk is None:
        return None
    done = subprocess.run([wrk, "-v"], capture_output=True, text=True, check=False)
    return (done.stdout + done.stderr).strip().splitlines()[0]


def now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
