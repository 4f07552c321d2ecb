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


def test_a_worker_without_schemas_or_metrics_loads_neither_pydantic_nor_prometheus() -> None:
    # Given a fresh interpreter running a worker whose handler has no schema, without metrics
    done = subprocess.run(
        [sys.executable, "-c", WORKER_WITHOUT_SCHEMAS], capture_output=True, timeout=30, check=True
    )

    # When it has run / Then neither library was imported, nor any web stack
    loaded = set(orjson.loads(done.stdout))
    assert loaded.isdisjoint({"pydantic", "prometheus_client", "fastapi", "starlette", "uvicorn"})
