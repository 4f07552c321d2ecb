"""POST /send: a valid message is published once; every bad request is a problem, unpublished."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson
from pydantic import BaseModel

from api.support import BASE_URL, StaticCatalog, api_client, assert_problem, depth, received
from queuekit.api import create_app
from queuekit.backends.memory import MemoryBroker
from queuekit.metrics import Metrics
from queuekit.settings import Settings


class Email(BaseModel):
    to: str
    subject: str


async def test_send_publishes_the_message_and_returns_its_id(
    client: httpx.AsyncClient, broker: MemoryBroker
) -> None:
    # Given a message with every optional field
    body = {
        "topic": "emails",
        "payload": {"to": "a@example.com", "n": 1},
        "priority": 7,
        "key": "customer-1",
        "headers": {"trace": "abc"},
    }

    # When it is posted
    response = await client.post("/send", json=body)

    # Then it is accepted with its id, and the broker holds exactly that message
    assert response.status_code == 202
    assert response.headers["content-type"] == "application/json"
    assert int(response.headers["content-length"]) == len(response.content)
    sent = response.json()
    assert set(sent) == {"id", "topic"}
    assert sent["topic"] == "emails"
    [message] = await received(broker, "emails", 1)
    assert message.id == sent["id"]
    assert orjson.loads(message.payload) == {"to": "a@example.com", "n": 1}
    assert (message.priority, message.key, dict(message.headers)) == (
        7,
        "customer-1",
        {"trace": "abc"},
    )


async def test_send_with_delay_sets_not_before(
    client: httpx.AsyncClient, broker: MemoryBroker
) -> None:
    # When a message delayed by an hour is posted
    response = await client.post("/send", json={"topic": "later", "payload": 1, "delay": 3600})

    # Then the broker holds it as delayed, not ready
    assert response.status_code == 202
    [group] = (await broker.topic_stats("later")).groups
    assert (group.depth, group.delayed) == (0, 1)


async def test_send_counts_sent_messages_in_metrics(broker: MemoryBroker) -> None:
    # Given an API counting on an injected registry
    metrics = Metrics(backend="memory")
    async with api_client(broker, metrics=metrics) as client:
        # When two messages are sent to a topic
        for n in range(2):
            assert (await client.post("/send", json={"topic": "counted", "payload": n})).is_success

    # Then queue_messages_sent_total counts them
    sent = {"topic": "counted", "backend": "memory"}
    assert metrics.registry.get_sample_value("queue_messages_sent_total", sent) == 2


async def test_malformed_json_is_a_400(client: httpx.AsyncClient, broker: MemoryBroker) -> None:
    # When the body is not JSON
    response = await client.post(
        "/send",
        content=b'{"topic": "emails", "payload": ',
        headers={"content-type": "application/json"},
    )

    # Then it is a 400 problem and nothing is published
    assert_problem(response, 400, "malformed-json")
    assert await broker.list_topics() == []


async def test_an_empty_body_is_a_400(client: httpx.AsyncClient) -> None:
    assert_problem(await client.post("/send"), 400, "malformed-json")


async def test_a_non_json_content_type_is_a_415(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/send",
        content=b"topic=emails",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert_problem(response, 415, "unsupported-media-type")


async def test_missing_fields_and_wrong_types_are_a_422_listing_each_error(
    client: httpx.AsyncClient, broker: MemoryBroker
) -> None:
    # Given a body without payload, with a string priority and an unknown field
    body = {"topic": "emails", "priority": "5", "payolad": {}}

    # When it is posted
    problem = assert_problem(await client.post("/send", json=body), 422, "validation-error")

    # Then each error is listed with its location, and nothing is published
    locations = {tuple(error["loc"]) for error in problem["errors"]}
    assert {("body", "payload"), ("body", "priority"), ("body", "payolad")} <= locations
    assert await broker.list_topics() == []


async def test_out_of_range_priority_negative_delay_and_reserved_headers_are_a_422(
    client: httpx.AsyncClient,
) -> None:
    for extra in (
        {"priority": 10},
        {"priority": True},
        {"delay": -1},
        {"headers": {"x-dlq-reason": "forged"}},
        {"headers": {"n": 1}},
        {"key": ""},
    ):
        response = await client.post("/send", json={"topic": "emails", "payload": {}, **extra})
        assert_problem(response, 422, "validation-error")


async def test_a_bad_topic_name_is_a_400(client: httpx.AsyncClient, broker: MemoryBroker) -> None:
    for topic in ("bad topic", "", "-dash", "emails.dlq", "x" * 121):
        response = await client.post("/send", json={"topic": topic, "payload": {}})
        problem = assert_problem(response, 400, "invalid-topic")
        assert "topic" in problem["detail"]
    assert await broker.list_topics() == []


async def test_with_a_catalog_a_topic_without_handler_is_a_404(broker: MemoryBroker) -> None:
    # Given an API whose catalog only handles "emails"
    async with api_client(broker, catalog=StaticCatalog({"emails": None})) as client:
        # When a message for another topic is posted
        response = await client.post("/send", json={"topic": "sms", "payload": {}})

        # Then it is a 404 and nothing is published; the handled topic still works
        assert_problem(response, 404, "unknown-topic")
        assert (
            await client.post("/send", json={"topic": "emails", "payload": 1})
        ).status_code == 202
    assert await broker.list_topics() == ["emails"]


async def test_a_payload_failing_the_topic_schema_is_a_422_with_its_errors(
    broker: MemoryBroker,
) -> None:
    # Given a topic whose handler takes an Email
    async with api_client(broker, catalog=StaticCatalog({"emails": Email})) as client:
        # When a payload without subject is posted
        response = await client.post("/send", json={"topic": "emails", "payload": {"to": "a"}})

        # Then the 422 names the missing field inside the payload
        problem = assert_problem(response, 422, "validation-error")
        assert ["body", "payload", "subject"] in [error["loc"] for error in problem["errors"]]
        # And a valid payload goes through
        good = {"topic": "emails", "payload": {"to": "a", "subject": "hi"}}
        assert (await client.post("/send", json=good)).status_code == 202
    assert await depth(broker, "emails") == 1


async def test_a_payload_over_the_limit_is_a_413(broker: MemoryBroker) -> None:
    # Given a 1 KiB payload limit
    settings = Settings(queue_type="memory", max_payload_bytes=1024)
    async with api_client(broker, settings=settings) as client:
        # When a payload encoding to more than 1 KiB is posted (the body is within its limit)
        response = await client.post("/send", json={"topic": "big", "payload": "x" * 2000})

        # Then it is a 413 and nothing is published
        problem = assert_problem(response, 413, "payload-too-large")
        assert "1024" in problem["detail"]
        # And a payload at the limit is accepted
        exact = {"topic": "big", "payload": "x" * (1024 - 2)}
        assert (await client.post("/send", json=exact)).status_code == 202
    assert await depth(broker, "big") == 1


async def test_a_body_over_the_limit_is_a_413_from_content_length(broker: MemoryBroker) -> None:
    # Given a 1 KiB payload limit, so a 65 KiB + 1 KiB body limit on /send
    settings = Settings(queue_type="memory", max_payload_bytes=1024)
    async with api_client(broker, settings=settings) as client:
        # When the declared body is larger than that
        body = orjson.dumps({"topic": "big", "payload": "x" * 70_000})
        response = await client.post(
            "/send", content=body, headers={"content-type": "application/json"}
        )

    # Then it is refused with a 413 before parsing
    problem = assert_problem(response, 413, "payload-too-large")
    assert "request body" in problem["detail"]
    assert await broker.list_topics() == []


async def test_a_streamed_body_over_the_limit_is_a_413(broker: MemoryBroker) -> None:
    # Given a body streamed in chunks without Content-Length
    settings = Settings(queue_type="memory", max_payload_bytes=1024)
    chunks_read = 0

    async def chunks() -> AsyncIterator[bytes]:
        nonlocal chunks_read
        for _ in range(1000):
            chunks_read += 1
            yield b"x" * 1024

    async with api_client(broker, settings=settings) as client:
        # When it is posted
        response = await client.post("/send", content=chunks())

    # Then the API stops reading at the limit and answers 413
    assert_problem(response, 413, "payload-too-large")
    assert "content-length" not in {name.lower() for name in response.request.headers}
    assert chunks_read < 1000


async def test_an_invalid_content_length_is_a_400(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/send",
        content=b"{}",
        headers={"content-length": "ten", "content-type": "application/json"},
    )
    assert_problem(response, 400, "bad-content-length")


async def test_a_closed_broker_is_a_503_with_retry_after(broker: MemoryBroker) -> None:
    # Given an API whose broker went away
    metrics = Metrics(backend="memory")
    async with api_client(broker, metrics=metrics) as client:
        await broker.close()

        # When a message is posted
        response = await client.post("/send", json={"topic": "emails", "payload": {}})

    # Then it is a 503 asking to retry later, and the failure is counted
    assert_problem(response, 503, "broker-unavailable")
    assert int(response.headers["retry-after"]) > 0
    labels = {"topic": "emails", "backend": "memory", "stage": "publish"}
    assert metrics.registry.get_sample_value("queue_errors_total", labels) == 1


async def test_unknown_routes_and_methods_are_problems(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/nope"), 404)
    for method in ("GET", "PUT", "DELETE"):
        for path in ("/send", "/send/batch"):
            response = await client.request(method, path)
            assert_problem(response, 405)
            assert response.headers["allow"] == "POST"


async def test_a_trailing_slash_redirects_to_send(client: httpx.AsyncClient) -> None:
    # When a send is posted to /send/ (a common typo)
    response = await client.post("/send/", json={"topic": "emails", "payload": 1})

    # Then it is redirected to /send, keeping the method (307), and nothing is published
    assert response.status_code == 307
    assert response.headers["location"].endswith("/send")


async def test_sends_are_served_below_a_root_path(broker: MemoryBroker) -> None:
    # Given the API served below /api (behind a proxy that keeps the prefix in the path)
    app = create_app(broker, settings=Settings(queue_type="memory"), manage_broker=False)
    transport = httpx.ASGITransport(app=app, root_path="/api")
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client,
    ):
        # When a message and a batch are posted there, and a bad message too
        one = await client.post("/api/send", json={"topic": "rooted", "payload": 1})
        batch = await client.post(
            "/api/send/batch", json={"messages": [{"topic": "rooted", "payload": 2}]}
        )
        bad = await client.post("/api/send", json={"topic": "bad topic", "payload": 1})

    # Then both are published, and the problem names the full path
    assert (one.status_code, batch.status_code) == (202, 202)
    assert await depth(broker, "rooted") == 2
    assert assert_problem(bad, 400, "invalid-topic")["instance"] == "/api/send"
