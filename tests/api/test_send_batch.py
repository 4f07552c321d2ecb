"""POST /send/batch: all messages validated first, then published in one broker call."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest

from api.support import RecordingBroker, StaticCatalog, api_client, assert_problem, received
from queuekit.api.body import BATCH_BODY_FACTOR
from queuekit.api.schemas import MAX_BATCH_MESSAGES
from queuekit.settings import Settings


@pytest.fixture
async def recording() -> AsyncIterator[RecordingBroker]:
    broker = RecordingBroker()
    await broker.connect()
    yield broker
    await broker.close()


async def test_a_batch_is_published_in_one_call_and_ids_come_back_in_order(
    recording: RecordingBroker,
) -> None:
    # Given three messages over two topics
    batch = {
        "messages": [
            {"topic": "a", "payload": 1},
            {"topic": "b", "payload": 2, "priority": 9},
            {"topic": "a", "payload": 3, "key": "k"},
        ]
    }
    async with api_client(recording) as client:
        # When they are posted as one batch
        response = await client.post("/send/batch", json=batch)

    # Then one publish call carried all three, and the ids match what each topic holds
    assert response.status_code == 202
    ids = response.json()["ids"]
    assert len(set(ids)) == 3
    assert recording.publish_sizes == [3]
    in_a = await received(recording, "a", 2)
    [in_b] = await received(recording, "b", 1)
    assert [m.id for m in in_a] == [ids[0], ids[2]]
    assert in_b.id == ids[1]
    assert [orjson.loads(m.payload) for m in in_a] == [1, 3]


async def test_one_bad_message_rejects_the_whole_batch(recording: RecordingBroker) -> None:
    # Given a batch whose third message has a bad topic, another whose second fails its schema
    bad_topic = {
        "messages": [{"topic": "a", "payload": 1}] * 2 + [{"topic": "no way", "payload": 1}]
    }
    bad_type = {"messages": [{"topic": "a", "payload": 1}, {"topic": "a", "priority": 3}]}
    async with api_client(recording, catalog=StaticCatalog({"a": None})) as client:
        # When they are posted
        topic_response = await client.post("/send/batch", json=bad_topic)
        type_response = await client.post("/send/batch", json=bad_type)
        unknown_response = await client.post(
            "/send/batch",
            json={"messages": [{"topic": "a", "payload": 1}, {"topic": "b", "payload": 1}]},
        )

    # Then each is refused, pointing at the culprit, and nothing at all was published
    assert "messages[2]" in assert_problem(topic_response, 400, "invalid-topic")["detail"]
    errors = assert_problem(type_response, 422, "validation-error")["errors"]
    assert ["body", "messages", 1, "payload"] in [e["loc"] for e in errors]
    assert "messages[1]" in assert_problem(unknown_response, 404, "unknown-topic")["detail"]
    assert recording.publish_sizes == []
    assert await recording.list_topics() == []


async def test_one_oversize_payload_rejects_the_whole_batch_with_413(
    recording: RecordingBroker,
) -> None:
    settings = Settings(queue_type="memory", max_payload_bytes=100)
    batch = {"messages": [{"topic": "a", "payload": "ok"}, {"topic": "a", "payload": "x" * 200}]}
    async with api_client(recording, settings=settings) as client:
        response = await client.post("/send/batch", json=batch)
    assert "messages[1]" in assert_problem(response, 413, "payload-too-large")["detail"]
    assert recording.publish_sizes == []


async def test_batch_size_bounds_are_a_422(recording: RecordingBroker) -> None:
    too_many = {"messages": [{"topic": "a", "payload": n} for n in range(MAX_BATCH_MESSAGES + 1)]}
    async with api_client(recording) as client:
        assert_problem(await client.post("/send/batch", json={"messages": []}), 422)
        assert_problem(await client.post("/send/batch", json=too_many), 422)
        full = {"messages": too_many["messages"][:MAX_BATCH_MESSAGES]}
        assert (await client.post("/send/batch", json=full)).status_code == 202
    assert recording.publish_sizes == [MAX_BATCH_MESSAGES]


async def test_batch_bodies_have_their_own_larger_limit(recording: RecordingBroker) -> None:
    # Given a 100 kB payload limit: /send bodies may be 100 kB + 64 KiB, batches 8 x 100 kB
    settings = Settings(queue_type="memory", max_payload_bytes=100_000)
    message = {"topic": "a", "payload": "x" * 90_000}
    over_batch_limit = {"messages": [message] * (BATCH_BODY_FACTOR * 100_000 // 90_000 + 1)}
    over_single_limit = {"messages": [message] * 2}
    async with api_client(recording, settings=settings) as client:
        # When a batch over the batch limit and one over only the /send limit are posted
        over = await client.post("/send/batch", json=over_batch_limit)
        within = await client.post("/send/batch", json=over_single_limit)

    # Then the first is a 413 and the second is published
    assert_problem(over, 413, "payload-too-large")
    assert within.status_code == 202
    assert recording.publish_sizes == [2]
