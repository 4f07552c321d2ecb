"""What a worker process loads: heavy libraries only when the app needs them."""

from __future__ import annotations

import subprocess
import sys

import orjson

WORKER_WITHOUT_SCHEMAS = """
import sys, asyncio, orjson
from queuekit.backends.memory import MemoryBroker
from queuekit.worker import App, Worker

app = App("svc")

@app.handler("jobs")
async def work(payload):
    pass

async def main():
    async with MemoryBroker() as broker:
        worker = Worker(app, broker)
        run = asyncio.create_task(worker.run())
        while not worker.consuming:
            await asyncio.sleep(0.001)
        await worker.stop()
        await run

asyncio.run(main())
sys.stdout.write(orjson.dumps(sorted({m.split('.')[0] for m in sys.modules})).decode())
"""


def test_a_worker_without_schemas_metrics_or_store_loads_none_of_their_libraries() -> None:
    # Given a fresh interpreter running a worker whose handler has no schema, without metrics
    # and without an idempotency store
    done = subprocess.run(
        [sys.executable, "-c", WORKER_WITHOUT_SCHEMAS], capture_output=True, timeout=30, check=True
    )

    # When it has run / Then none of their libraries was imported, nor any web stack
    loaded = set(orjson.loads(done.stdout))
    assert loaded.isdisjoint(
        {"pydantic", "prometheus_client", "sqlite3", "fastapi", "starlette", "uvicorn", "httpx"}
    )


WORKER_WITH_METRICS = """
import sys, asyncio, orjson
from queuekit.backends.memory import MemoryBroker
from queuekit.message import Message
from queuekit.metrics import Metrics
from queuekit.worker import App, Worker

app = App("svc")
done = asyncio.Event()

@app.handler("jobs")
async def work(payload):
    done.set()

async def main():
    metrics = Metrics(backend="memory")
    async with MemoryBroker() as broker:
        worker = Worker(app, broker, metrics=metrics)
        run = asyncio.create_task(worker.run())
        await broker.publish([Message.build("jobs", {"n": 1})])
        await done.wait()
        await worker.stop()
        await run
    before_scrape = "prometheus_client" in sys.modules
    scraped = metrics.render().decode()
    return before_scrape, scraped

before_scrape, scraped = asyncio.run(main())
sys.stdout.write(orjson.dumps([before_scrape, scraped]).decode())
"""


def test_a_worker_with_metrics_loads_prometheus_only_when_scraped() -> None:
    # Given a fresh interpreter running a worker with metrics that handles one message
    done = subprocess.run(
        [sys.executable, "-c", WORKER_WITH_METRICS], capture_output=True, timeout=30, check=True
    )

    # When it has run and is then scraped
    before_scrape, scraped = orjson.loads(done.stdout)

    # Then prometheus_client was not loaded before the scrape, and the scrape counts the message
    assert before_scrape is False
    assert 'worker_tasks_processed_total{backend="memory",group="default",outcome="success"' in (
        scraped
    )
