"""Idempotency-Key: a retried POST publishes once and gets the same answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from api.support import (
    GatedBroker,
    RecordingBroker,
    api_client,
    assert_problem,
    received,
    serve,
    wait_until,
)
from queuekit.api import create_app
from queuekit.api.idempotency import IdempotencyCache, idempotent_message_id
from queuekit.backends.memory import MemoryBroker, MemoryStore
from queuekit.settings import Settings

MESSAGE = {"topic": "payments", "payload": {"amount": 10}}


@pytest.fixture
async def recording() -> AsyncIterator[RecordingBroker]:
    broker = RecordingBroker()
    await broker.connect()
    yield broker
    await broker.close()


async def test_a_retried_send_publishes_once_and_returns_the_same_response(
    recording: RecordingBroker,
) -> None:
    async with api_client(recording) as client:
        # Given a send with an idempotency key
        first = await client.post("/send", json=MESSAGE, headers={"Idempotency-Key": "k-1"})

        # When it is retried with the same key and the same body (keys in another order)
        retry = await client.post(
            "/send",
            json={"payload": {"amount": 10}, "topic": "payments"},
            headers={"Idempotency-Key": "k-1"},
        )

    # Then both answers are the same 202, the retry says it is a replay, one message exists
    assert (first.status_code, retry.status_code) == (202, 202)
    assert first.json() == retry.json()
    assert retry.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert recording.publish_sizes == [1]
    [message] = await received(recording, "payments", 1)
    assert message.id == first.json()["id"]


async def test_a_retried_batch_returns_the_same_ids(recording: RecordingBroker) -> None:
    batch = {"messages": [MESSAGE, MESSAGE]}
    async with api_client(recording) as client:
        first = await client.post("/send/batch", json=batch, headers={"Idempotency-Key": "b-1"})
        retry = await client.post("/send/batch", json=batch, headers={"Idempotency-Key": "b-1"})
    assert first.status_code == retry.status_code == 202
    assert first.json()["ids"] == retry.json()["ids"]
    assert recording.publish_sizes == [2]


async def test_the_same_key_with_another_body_is_a_422(recording: RecordingBroker) -> None:
    async with api_client(recording) as client:
        # Given a served send with key "k-2"
        await client.post("/send", json=MESSAGE, headers={"Idempotency-Key": "k-2"})

        # When the key comes back with a different body, or on the other endpoint
        other = {"topic": "payments", "payload": {"amount": 99}}
        changed = await client.post("/send", json=other, headers={"Idempotency-Key": "k-2"})
        batch = await client.post(
            "/send/batch", json={"messages": [MESSAGE]}, headers={"Idempotency-Key": "k-2"}
        )

    # Then both are refused and nothing more is published
    assert_problem(changed, 422, "idempotency-key-reused")
    assert_problem(batch, 422, "idempotency-key-reused")
    assert recording.publish_sizes == [1]


async def test_a_concurrent_duplicate_waits_for_the_first_and_does_not_publish() -> None:
    # Given a broker whose publish is held, and an API on it
    broker = GatedBroker()
    await broker.connect()
    app = create_app(broker, settings=Settings(queue_type="memory"), manage_broker=False)
    cache: IdempotencyCache = app.state.queuekit.idempotency
    headers = {"Idempotency-Key": "k-3"}
    async with serve(app) as client:
        # When a send is in flight and its duplicate arrives
        first = asyncio.create_task(client.post("/send", json=MESSAGE, headers=headers))
        await wait_until(lambda: broker.publish_sizes == [1])
        duplicate = asyncio.create_task(client.post("/send", json=MESSAGE, headers=headers))
        await wait_until(lambda: cache.waiting == 1)
        broker.gate.set()
        responses = await asyncio.gather(first, duplicate)

    # Then the duplicate waited and got the first one's answer, with a single publish
    assert [r.status_code for r in responses] == [202, 202]
    assert responses[0].json() == responses[1].json()
    assert broker.publish_sizes == [1]
    await broker.close()


async def test_after_a_failed_publish_the_key_can_be_retried(recording: RecordingBroker) -> None:
    async with api_client(recording) as client:
        # Given a send that failed because the broker was down
        await recording.close()
        failed = await client.post("/send", json=MESSAGE, headers={"Idempotency-Key": "k-4"})
        assert_problem(failed, 503)

        # When the broker is back and the send is retried with the same key
        await recording.connect()
        retry = await client.post("/send", json=MESSAGE, headers={"Idempotency-Key": "k-4"})

    # Then it is published now
    assert retry.status_code == 202
    assert "Idempotent-Replayed" not in retry.headers
    [message] = await received(recording, "payments", 1)
    assert message.id == retry.json()["id"]


async def test_two_api_replicas_derive_the_same_message_id_from_the_key() -> None:
    # Given two API processes (apps with their own caches) on one broker store
    store = MemoryStore()
    brokers = [MemoryBroker(store), MemoryBroker(store)]
    headers = {"Idempotency-Key": "k-5"}
    ids = []
    for broker in brokers:
        async with api_client(broker, manage_broker=True) as client:
            # When the same send reaches each replica
            response = await client.post("/send", json=MESSAGE, headers=headers)
            ids.append(response.json()["id"])

    # Then both published the same message id, which the worker's idempotency deduplicates
    assert ids[0] == ids[1] == idempotent_message_id("", "k-5", 0)


async def test_keys_are_scoped_by_api_key(recording: RecordingBroker) -> None:
    # Given two clients with different API keys using the same idempotency key
    settings = Settings(queue_type="memory", api_keys=("key-one", "key-two"))
    async with api_client(recording, settings=settings) as client:
        one = await client.post(
            "/send", json=MESSAGE, headers={"Idempotency-Key": "same", "X-API-Key": "key-one"}
        )
        two = await client.post(
            "/send", json=MESSAGE, headers={"Idempotency-Key": "same", "X-API-Key": "key-two"}
        )

    # Then each got its own message
    assert one.status_code == two.status_code == 202
    assert one.json()["id"] != two.json()["id"]
    assert recording.publish_sizes == [1, 1]


async def test_an_ill_formed_idempotency_key_is_a_400(client: httpx.AsyncClient) -> None:
    for key in ("k" * 256, "tab\tinside"):
        response = await client.post("/send", json=MESSAGE, headers={"Idempotency-Key": key})
        assert_problem(response, 400, "invalid-idempotency-key")


async def test_the_cache_forgets_keys_after_their_ttl_and_beyond_its_size() -> None:
    # Given a cache of 2 keys living 10 s, on a clock we move by hand
    now = [0.0]
    cache = IdempotencyCache(max_keys=2, ttl=10.0, clock=lambda: now[0])
    runs: list[str] = []

    async def run(key: str) -> bool:
        async def operation() -> None:
            runs.append(key)

        return await cache.run_once(key, b"fingerprint", operation)

    # When keys are used, reused within the TTL, after it, and pushed out by newer keys
    assert await run("a") is False
    assert await run("a") is True
    now[0] = 11.0
    assert await run("a") is False  # expired: runs again
    await run("b")
    await run("c")  # evicts "a", the least recently used
    assert await run("a") is False

    # Then each run happened exactly when the key was not remembered
    assert runs == ["a", "a", "b", "c", "a"]
    assert len(cache) == 2
