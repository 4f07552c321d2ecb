"""The two HTTP endpoints compared by the API benchmark, served the same way.

``python -m benchmarks.api_servers queuekit|starlette --port P [--api-key K]``: uvicorn, one
worker, no access log, on 127.0.0.1, publishing to Redis Streams (the same broker for both).

* queuekit: ``create_app`` on a ``RedisStreamsBroker`` (authentication on with ``--api-key``).
* starlette: a bare ``POST /send`` doing the same work by hand: parse the JSON body, check
  the topic and payload are present, ``XADD`` the encoded payload with a fresh id, answer
  202 ``{"id", "topic"}``.
"""

from __future__ import annotations

import argparse
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import uvicorn

from benchmarks.workload import REDIS_URL


def queuekit_app(api_key: str | None) -> Any:
    from queuekit.api import create_app
    from queuekit.backends import create_broker
    from queuekit.settings import Settings

    settings = Settings(
        queue_type="redis", redis_url=REDIS_URL, api_keys=(api_key,) if api_key else ()
    )
    return create_app(create_broker(settings), settings=settings)


def starlette_app() -> Any:
    from redis.asyncio import Redis
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    client = Redis.from_url(REDIS_URL)

    async def send(request: Request) -> Response:
        try:
            document = orjson.loads(await request.body())
            topic, body = document["topic"], document["payload"]
        except (orjson.JSONDecodeError, KeyError, TypeError):
            return Response(b'{"detail":"bad request"}', 400, media_type="application/json")
        if not isinstance(topic, str) or not topic:
            return Response(b'{"detail":"bad topic"}', 400, media_type="application/json")
        message_id = uuid.uuid4().hex
        await client.xadd(topic, {"id": message_id, "payload": orjson.dumps(body)})
        answer = orjson.dumps({"id": message_id, "topic": topic})
        return Response(answer, 202, media_type="application/json")

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        yield
        await client.aclose()

    return Starlette(routes=[Route("/send", send, methods=["POST"])], lifespan=lifespan)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("kind", choices=("queuekit", "starlette"))
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-key")
    args = parser.parse_args()
    app = queuekit_app(args.api_key) if args.kind == "queuekit" else starlette_app()
    uvicorn.run(
        app, host="127.0.0.1", port=args.port, workers=1, access_log=False, log_level="warning"
    )


if __name__ == "__main__":
    main()
