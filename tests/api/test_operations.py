"""Health, readiness, metrics, OpenAPI, the dashboard page, and the last-resort 500."""

from __future__ import annotations

import asyncio
import logging

import httpx
import pytest
from pydantic import BaseModel

from api.support import StaticCatalog, api_client, assert_problem
from queuekit.backends.memory import MemoryBroker
from queuekit.broker import TopicStats
from queuekit.errors import BrokerUnavailable
from queuekit.message import Message
from queuekit.metrics import Metrics


async def test_health_is_ok_even_when_the_broker_is_down(
    client: httpx.AsyncClient, broker: MemoryBroker
) -> None:
    await broker.close()
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "backend": "memory"}


async def test_ready_follows_the_broker(client: httpx.AsyncClient, broker: MemoryBroker) -> None:
    # Given a connected broker, ready is 200
    assert (await client.get("/ready")).json() == {"status": "ready", "backend": "memory"}

    # When the broker goes away
    await broker.close()
    response = await client.get("/ready")

    # Then ready is a 503 problem with Retry-After
    assert_problem(response, 503, "broker-unavailable")
    assert int(response.headers["retry-after"]) > 0


async def test_metrics_serve_counters_and_refreshed_queue_gauges(broker: MemoryBroker) -> None:
    # Given a sent message and a dead letter
    metrics = Metrics(backend="memory")
    async with api_client(broker, metrics=metrics) as client:
        await client.post("/send", json={"topic": "emails", "payload": 1})
        await broker.publish([Message.build("emails", 2)])
        async with await broker.subscribe("emails", prefetch=1) as subscription:
            await (await anext(subscription)).dead_letter("invalid")

        # When metrics are scraped
        response = await client.get("/metrics")

    # Then the Prometheus text has the sent counter and gauges read from the broker now
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'queue_messages_sent_total{backend="memory",topic="emails"} 1.0' in text
    assert 'queue_depth{backend="memory",group="default",topic="emails"} 1.0' in text
    assert 'queue_dead_letters{backend="memory",topic="emails"} 1.0' in text


class StatsCountingBroker(MemoryBroker):
    """A MemoryBroker counting topic_stats calls."""

    def __init__(self) -> None:
        super().__init__()
        self.stats_calls = 0

    async def topic_stats(self, topic: str) -> TopicStats:
        self.stats_calls += 1
        return await super().topic_stats(topic)


async def test_scrapes_in_quick_succession_read_the_broker_once() -> None:
    # Given a broker with one topic
    broker = StatsCountingBroker()
    async with api_client(broker, manage_broker=True) as client:
        await broker.publish([Message.build("emails", 1)])

        # When three scrapes come at once and right after one another
        responses = await asyncio.gather(*(client.get("/metrics") for _ in range(3)))
        responses.append(await client.get("/metrics"))

    # Then all are served, from a single read of the broker's counts
    assert all("queue_depth" in r.text for r in responses)
    assert broker.stats_calls == 1


async def test_metrics_still_serve_when_the_broker_is_down(
    client: httpx.AsyncClient, broker: MemoryBroker
) -> None:
    await broker.close()
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert "queue_messages_sent_total" in response.text


async def test_openapi_documents_the_routes_bodies_and_problems(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    assert {"/send", "/send/batch", "/topics", "/topics/{topic}/dead-letters"} <= set(
        document["paths"]
    )
    send = document["paths"]["/send"]["post"]
    body_schema = send["requestBody"]["content"]["application/json"]["schema"]
    assert body_schema == {"$ref": "#/components/schemas/SendRequest"}
    assert "application/problem+json" in send["responses"]["413"]["content"]
    schemas = document["components"]["schemas"]
    assert {"SendRequest", "SendBatchRequest", "ProblemDetails", "SendResponse"} <= set(schemas)
    assert schemas["SendBatchRequest"]["properties"]["messages"]["items"] == {
        "$ref": "#/components/schemas/SendRequest"
    }


async def test_openapi_describes_both_send_operations_whole(client: httpx.AsyncClient) -> None:
    # When the document is fetched
    document = (await client.get("/openapi.json")).json()

    # Then each send operation has its body, answer, Idempotency-Key, security and problems
    schemes = document["components"]["securitySchemes"]
    for path, request, response in (
        ("/send", "SendRequest", "SendResponse"),
        ("/send/batch", "SendBatchRequest", "SendBatchResponse"),
    ):
        operation = document["paths"][path]["post"]
        assert list(document["paths"][path]) == ["post"]
        body = operation["requestBody"]
        assert body["required"] is True
        assert body["content"]["application/json"]["schema"]["$ref"].endswith(f"/{request}")
        accepted = operation["responses"]["202"]
        assert accepted["content"]["application/json"]["schema"]["$ref"].endswith(f"/{response}")
        assert "Idempotent-Replayed" in accepted["headers"]
        for status in ("400", "401", "404", "413", "415", "422", "503"):
            assert "application/problem+json" in operation["responses"][status]["content"]
        [parameter] = operation["parameters"]
        assert (parameter["name"], parameter["in"], parameter["required"]) == (
            "Idempotency-Key",
            "header",
            False,
        )
        assert {name for requirement in operation["security"] for name in requirement} == set(
            schemes
        )
        assert operation["tags"] == ["send"]
    assert {scheme["type"] for scheme in schemes.values()} == {"http", "apiKey"}
    assert {response, request} <= set(document["components"]["schemas"])


async def test_the_dashboard_page_is_served(client: httpx.AsyncClient) -> None:
    for path in ("/", "/dashboard"):
        response = await client.get(path)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert "<title>queuekit</title>" in response.text
        assert "X-API-Key" in response.text  # the page sends the key it asks for
        assert "script-src 'sha256-" in response.headers["content-security-policy"]


class Anything(BaseModel):
    value: int


class BrokenCatalog(StaticCatalog):
    """A catalog whose schema lookup fails: a bug the API must not leak."""

    def schema_for(self, topic: str) -> type[BaseModel] | None:
        raise RuntimeError("secret internals /etc/passwd")


async def test_an_unexpected_error_is_a_bare_500_and_is_logged(
    broker: MemoryBroker, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an API whose catalog raises
    async with api_client(broker, catalog=BrokenCatalog({"emails": Anything})) as client:
        # When a send triggers it
        with caplog.at_level(logging.ERROR, logger="queuekit.api"):
            response = await client.post("/send", json={"topic": "emails", "payload": {}})

    # Then the caller gets a 500 problem without internals, and the log has the traceback
    body = assert_problem(response, 500, "internal-error")
    assert "secret" not in response.text
    assert "RuntimeError" not in response.text
    assert body["instance"] == "/send"
    assert any(r.exc_info and "secret internals" in str(r.exc_info[1]) for r in caplog.records)
    assert await broker.list_topics() == []


async def test_the_lifespan_connects_and_closes_a_managed_broker() -> None:
    # Given an API managing a broker that is not connected yet
    broker = MemoryBroker()

    # When the app runs, then stops
    async with api_client(broker, manage_broker=True) as client:
        ready = await client.get("/ready")

    # Then the broker was connected while it ran, and is closed after
    assert ready.status_code == 200
    with pytest.raises(BrokerUnavailable):
        await broker.ping()
