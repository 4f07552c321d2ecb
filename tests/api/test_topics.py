"""Topic statistics and dead letters over HTTP: list, replay, purge."""

from __future__ import annotations

import base64

import httpx

from api.support import StaticCatalog, api_client, assert_problem, received
from queuekit.backends.memory import MemoryBroker
from queuekit.message import Message


async def dead_letter_all(broker: MemoryBroker, topic: str, count: int, *, group: str) -> None:
    """Deliver ``count`` messages of ``topic`` to ``group`` and dead-letter each."""
    async with await broker.subscribe(topic, group, prefetch=count) as subscription:
        for _ in range(count):
            delivery = await anext(subscription)
            await delivery.dead_letter("invalid", error="ValueError: bad amount")


async def test_topics_lists_every_topic_with_its_counts(
    client: httpx.AsyncClient, broker: MemoryBroker
) -> None:
    # Given two messages ready in "emails", one delayed in "reports"
    await broker.publish([Message.build("emails", 1), Message.build("emails", 2)])
    await broker.publish([Message.build("reports", 3, delay=3600)])

    # When the topics are listed
    response = await client.get("/topics")

    # Then each topic comes with its totals and per-group counts
    assert response.status_code == 200
    topics = {t["topic"]: t for t in response.json()["topics"]}
    assert set(topics) == {"emails", "reports"}
    assert (topics["emails"]["depth"], topics["emails"]["delayed"]) == (2, 0)
    assert (topics["reports"]["depth"], topics["reports"]["delayed"]) == (0, 1)
    assert topics["emails"]["groups"][0]["group"] == "default"
    assert topics["emails"]["groups"][0]["lag"] == 2
    assert topics["emails"]["has_handler"] is None


async def test_with_a_catalog_handled_topics_are_listed_before_any_message(
    broker: MemoryBroker,
) -> None:
    async with api_client(broker, catalog=StaticCatalog({"emails": None})) as client:
        listed = (await client.get("/topics")).json()["topics"]
        one = await client.get("/topics/emails")
    assert [(t["topic"], t["depth"], t["has_handler"]) for t in listed] == [("emails", 0, True)]
    assert one.json()["has_handler"] is True


async def test_one_topic_shows_depth_in_flight_lag_and_dead_letters(
    client: httpx.AsyncClient, broker: MemoryBroker
) -> None:
    # Given a topic with 3 messages, one dead-lettered and one in flight
    await broker.publish([Message.build("orders", n) for n in range(3)])
    await dead_letter_all(broker, "orders", 1, group="default")
    subscription = await broker.subscribe("orders")
    await anext(subscription)

    # When its stats are read
    stats = (await client.get("/topics/orders")).json()
    await subscription.close()

    # Then they show it
    assert (stats["depth"], stats["in_flight"], stats["dead_letters"]) == (1, 1, 1)
    assert stats["groups"][0]["lag"] == 2


async def test_bad_and_unknown_topic_names(client: httpx.AsyncClient) -> None:
    assert_problem(await client.get("/topics/no%20way"), 400, "invalid-topic")
    assert_problem(await client.get("/topics/orders.dlq"), 400, "invalid-topic")
    assert_problem(await client.get("/topics/never-seen"), 404, "unknown-topic")
    assert_problem(await client.get("/topics/never-seen/dead-letters"), 404, "unknown-topic")
    assert_problem(await client.delete("/topics/never-seen/dead-letters"), 404, "unknown-topic")


async def test_dead_letters_are_listed_with_why_they_failed(
    client: httpx.AsyncClient, broker: MemoryBroker
) -> None:
    # Given a JSON message and a non-JSON one, both dead-lettered by group "billing"
    json_message = Message.build("pay", {"amount": 5}, headers={"trace": "t1"}, key="c-1")
    raw_message = Message(topic="pay", payload=b"\xff\x00raw")
    await broker.subscribe("pay", "billing")
    await broker.publish([json_message, raw_message])
    await dead_letter_all(broker, "pay", 2, group="billing")

    # When the dead letters are listed
    response = await client.get("/topics/pay/dead-letters", params={"limit": 10})

    # Then each shows its payload (JSON decoded, else base64), headers, reason and group
    assert response.status_code == 200
    first, second = response.json()["dead_letters"]
    assert first["id"] == json_message.id
    assert (first["payload"], first["payload_encoding"]) == ({"amount": 5}, "json")
    assert (first["headers"], first["key"]) == ({"trace": "t1"}, "c-1")
    assert (first["reason"], first["error"]) == ("invalid", "ValueError: bad amount")
    assert (first["group"], first["attempts"]) == ("billing", 1)
    assert first["dead_lettered_at"] > 0
    assert second["payload_encoding"] == "base64"
    assert base64.b64decode(second["payload"]) == b"\xff\x00raw"


async def test_dead_letter_limit_is_bounded(
    client: httpx.AsyncClient, broker: MemoryBroker
) -> None:
    await broker.publish([Message.build("pay", n) for n in range(3)])
    await dead_letter_all(broker, "pay", 3, group="default")
    listed = await client.get("/topics/pay/dead-letters", params={"limit": 2})
    assert [d["payload"] for d in listed.json()["dead_letters"]] == [
        0,
        1,
    ]
    for limit in (0, 1001, "x"):
        response = await client.get("/topics/pay/dead-letters", params={"limit": limit})
        assert_problem(response, 422, "validation-error")


async def test_replay_sends_dead_letters_back_to_their_group(
    client: httpx.AsyncClient, broker: MemoryBroker
) -> None:
    # Given three dead letters
    messages = [Message.build("pay", n) for n in range(3)]
    await broker.publish(messages)
    await dead_letter_all(broker, "pay", 3, group="default")

    # When one is replayed by id, then the rest without a body
    by_id = await client.post("/topics/pay/dead-letters/replay", json={"ids": [messages[1].id]})
    rest = await client.post("/topics/pay/dead-letters/replay")

    # Then they are back in the group, with their ids, and the dead-letter queue is empty
    assert by_id.json() == {"replayed": 1}
    assert rest.json() == {"replayed": 2}
    back = await received(broker, "pay", 3)
    assert {m.id for m in back} == {m.id for m in messages}
    assert (await broker.topic_stats("pay")).dead_letters == 0


async def test_replay_rejects_a_malformed_body(
    client: httpx.AsyncClient, broker: MemoryBroker
) -> None:
    await broker.publish([Message.build("pay", 1)])
    await dead_letter_all(broker, "pay", 1, group="default")
    malformed = await client.post(
        "/topics/pay/dead-letters/replay",
        content=b"{ids:",
        headers={"content-type": "application/json"},
    )
    assert_problem(malformed, 400, "malformed-json")
    assert_problem(await client.post("/topics/pay/dead-letters/replay", json={"ids": "a"}), 422)
    assert (await broker.topic_stats("pay")).dead_letters == 1


async def test_purge_deletes_the_dead_letters(
    client: httpx.AsyncClient, broker: MemoryBroker
) -> None:
    # Given two dead letters
    await broker.publish([Message.build("pay", n) for n in range(2)])
    await dead_letter_all(broker, "pay", 2, group="default")

    # When they are purged
    response = await client.delete("/topics/pay/dead-letters")

    # Then they are gone
    assert response.json() == {"purged": 2}
    assert (await client.get("/topics/pay/dead-letters")).json()["dead_letters"] == []


async def test_topic_routes_answer_503_when_the_broker_is_down(
    client: httpx.AsyncClient, broker: MemoryBroker
) -> None:
    await broker.close()
    response = await client.get("/topics")
    assert_problem(response, 503, "broker-unavailable")
    assert response.headers["retry-after"]
