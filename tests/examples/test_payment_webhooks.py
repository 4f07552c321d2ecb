"""examples/payment_webhooks.py: signatures checked, each event booked once, unknown types DLQ."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest
from example_helpers import finished, running, wait_until
from examples.payment_webhooks import (
    TOPIC,
    InvalidSignature,
    WebhookEvent,
    app,
    sign_webhook,
    verify_webhook,
)

from queuekit.backends.memory import MemoryBroker
from queuekit.client import Producer
from queuekit.idempotency import IdempotencyStore, MemoryIdempotencyStore, SqliteIdempotencyStore
from queuekit.message import Message
from queuekit.metrics import Metrics
from queuekit.worker import Worker

SECRET = b"whsec_test_secret"
NOW = 1_700_000_000


def event_body(
    event_id: str = "evt_1", kind: str = "payment.succeeded", amount: int = 1250
) -> bytes:
    return orjson.dumps({"id": event_id, "type": kind, "amount": amount, "currency": "EUR"})


def ledger_lines(path: Path) -> list[dict[str, object]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


@pytest.fixture
def ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "books" / "ledger.jsonl"
    monkeypatch.setenv("LEDGER_PATH", str(path))
    return path


@pytest.fixture(params=["memory", "sqlite"])
async def idempotency(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[IdempotencyStore]:
    store: IdempotencyStore = (
        MemoryIdempotencyStore()
        if request.param == "memory"
        else SqliteIdempotencyStore(tmp_path / "idempotency.db")
    )
    yield store
    await store.close()


async def publish_event(broker: MemoryBroker, body: bytes) -> Message:
    message = Message.build(TOPIC, orjson.loads(body))
    await broker.publish([message])
    return message


# -- signatures (producer side) -------------------------------------------------------------------


def test_a_correctly_signed_webhook_gives_the_event() -> None:
    # Given a body signed with the shared secret
    body = event_body()
    header = sign_webhook(body, SECRET, timestamp=NOW)

    # When the endpoint verifies it
    event = verify_webhook(body, header, SECRET, now=NOW + 10)

    # Then it gets the parsed event
    assert event == WebhookEvent(id="evt_1", type="payment.succeeded", amount=1250, currency="EUR")


@pytest.mark.parametrize(
    ("header", "complaint"),
    [
        (None, "missing"),
        ("", "missing"),
        ("v1=abc", "malformed"),
        (f"t={NOW}", "malformed"),
        (f"t=yesterday,v1={'0' * 64}", "malformed"),
        (f"t={NOW},t={NOW},v1={'0' * 64}", "malformed"),
        (f"t={NOW},v1={'0' * 64}", "does not match"),
    ],
)
def test_missing_or_malformed_signatures_are_refused(header: str | None, complaint: str) -> None:
    with pytest.raises(InvalidSignature, match=complaint):
        verify_webhook(event_body(), header, SECRET, now=NOW)


def test_a_tampered_body_is_refused() -> None:
    # Given a signature over one body / When another body is presented with it / Then refused
    header = sign_webhook(event_body(amount=1250), SECRET, timestamp=NOW)
    with pytest.raises(InvalidSignature, match="does not match"):
        verify_webhook(event_body(amount=999_999), header, SECRET, now=NOW)


def test_another_secret_is_refused() -> None:
    header = sign_webhook(event_body(), b"someone else", timestamp=NOW)
    with pytest.raises(InvalidSignature, match="does not match"):
        verify_webhook(event_body(), header, SECRET, now=NOW)


@pytest.mark.parametrize("skew", [-301, 301])
def test_an_old_or_future_timestamp_is_refused_as_a_replay(skew: int) -> None:
    # Given a correctly signed request captured more than 5 minutes away from now
    header = sign_webhook(event_body(), SECRET, timestamp=NOW)

    # When it is presented / Then it is refused
    with pytest.raises(InvalidSignature, match="tolerance"):
        verify_webhook(event_body(), header, SECRET, now=NOW + skew)


def test_any_of_several_digests_may_match_during_secret_rotation() -> None:
    # Given a header carrying a digest for an old secret and one for the current secret
    body = event_body()
    current = sign_webhook(body, SECRET, timestamp=NOW).split(",")[1]
    header = f"t={NOW},v1={'f' * 64},{current}"

    # Then it is accepted
    assert verify_webhook(body, header, SECRET, now=NOW).id == "evt_1"


def test_a_signed_body_that_is_not_an_event_is_refused() -> None:
    body = b'{"id": "evt_1", "type": "payment.succeeded", "amount": -5, "currency": "eur"}'
    header = sign_webhook(body, SECRET, timestamp=NOW)
    with pytest.raises(InvalidSignature, match="not a webhook event"):
        verify_webhook(body, header, SECRET, now=NOW)


def test_signing_uses_the_current_time_by_default() -> None:
    header = sign_webhook(event_body(), SECRET)
    assert verify_webhook(event_body(), header, SECRET).id == "evt_1"
    assert abs(int(header.split(",")[0].removeprefix("t=")) - time.time()) < 60


# -- the handler on a worker ----------------------------------------------------------------------


async def test_a_verified_webhook_is_queued_and_booked(
    broker: MemoryBroker, metrics: Metrics, ledger: Path
) -> None:
    # Given the endpoint's steps: verify the signature, then send the event
    body = event_body("evt_42", amount=1999)
    event = verify_webhook(body, sign_webhook(body, SECRET), SECRET)
    message_id = await Producer(broker).send(TOPIC, event.model_dump())

    # When the worker runs
    async with running(Worker(app, broker, metrics=metrics)):
        await wait_until(lambda: finished(metrics, TOPIC, "success") == 1, "the booking")

    # Then the ledger has the event's line
    assert ledger_lines(ledger) == [
        {
            "event_id": "evt_42",
            "type": "payment.succeeded",
            "amount": 1999,
            "currency": "EUR",
            "message_id": message_id,
        }
    ]


async def test_a_refund_is_booked_as_a_negative_amount(
    broker: MemoryBroker, metrics: Metrics, ledger: Path
) -> None:
    await publish_event(broker, event_body("evt_r", "payment.refunded", 500))
    async with running(Worker(app, broker, metrics=metrics)):
        await wait_until(lambda: finished(metrics, TOPIC, "success") == 1, "the booking")
    (line,) = ledger_lines(ledger)
    assert (line["type"], line["amount"]) == ("payment.refunded", -500)


async def test_the_same_event_published_twice_is_booked_once(
    broker: MemoryBroker, metrics: Metrics, ledger: Path, idempotency: IdempotencyStore
) -> None:
    # Given a worker that remembers processed event ids
    worker = Worker(app, broker, metrics=metrics, idempotency=idempotency)

    # When the provider's retry makes the endpoint enqueue the same event again
    # (two messages, two message ids, one event id)
    async with running(worker):
        first = await publish_event(broker, event_body("evt_7"))
        await wait_until(lambda: finished(metrics, TOPIC, "success") == 1, "the first copy")
        second = await publish_event(broker, event_body("evt_7"))
        await wait_until(lambda: finished(metrics, TOPIC, "duplicate") == 1, "the second copy")

    # Then one ledger line, and the second message was acked as a duplicate
    assert first.id != second.id
    lines = ledger_lines(ledger)
    assert [line["event_id"] for line in lines] == ["evt_7"]
    assert lines[0]["message_id"] == first.id
    stats = await broker.topic_stats(TOPIC)
    assert (stats.depth, stats.in_flight) == (0, 0)


async def test_copies_arriving_together_are_booked_once(
    broker: MemoryBroker, metrics: Metrics, ledger: Path, idempotency: IdempotencyStore
) -> None:
    # Given three copies of one event and one other event, queued before the worker starts
    copies = [Message.build(TOPIC, orjson.loads(event_body("evt_9"))) for _ in range(3)]
    other = Message.build(TOPIC, orjson.loads(event_body("evt_10")))
    await broker.publish([*copies, other])

    # When the worker handles them concurrently
    async with running(Worker(app, broker, metrics=metrics, idempotency=idempotency)):
        await wait_until(
            lambda: (
                finished(metrics, TOPIC, "success") + finished(metrics, TOPIC, "duplicate") == 4
            ),
            "all four messages",
        )

    # Then each event id is in the ledger exactly once
    assert sorted(line["event_id"] for line in ledger_lines(ledger)) == ["evt_10", "evt_9"]


async def test_an_unknown_event_type_is_dead_lettered_and_not_booked(
    broker: MemoryBroker, metrics: Metrics, ledger: Path
) -> None:
    # Given an event type the ledger does not know
    message = await publish_event(broker, event_body("evt_x", "payment.teleported"))

    # When the worker handles it
    async with running(Worker(app, broker, metrics=metrics)):
        await wait_until(lambda: finished(metrics, TOPIC, "dead_lettered") == 1, "the reject")

    # Then it is in the dead-letter queue at once, with the reason, and the ledger is empty
    (letter,) = await broker.dead_letters(TOPIC)
    assert letter.message.id == message.id
    assert letter.reason == "rejected: unknown event type 'payment.teleported'"
    assert letter.attempts == 1
    assert ledger_lines(ledger) == []


@pytest.mark.parametrize(
    "payload",
    [
        {"id": "e", "type": "payment.succeeded", "amount": 1, "currency": "euro"},
        {"id": "e", "type": "payment.succeeded", "amount": -1, "currency": "EUR"},
        {"id": "", "type": "payment.succeeded", "amount": 1, "currency": "EUR"},
        {"type": "payment.succeeded", "amount": 1, "currency": "EUR"},
    ],
)
async def test_a_malformed_event_is_dead_lettered_as_invalid_payload(
    broker: MemoryBroker, metrics: Metrics, ledger: Path, payload: dict[str, object]
) -> None:
    await broker.publish([Message.build(TOPIC, payload)])
    async with running(Worker(app, broker, metrics=metrics)):
        await wait_until(lambda: finished(metrics, TOPIC, "dead_lettered") == 1, "the reject")
    (letter,) = await broker.dead_letters(TOPIC)
    assert letter.reason == "invalid_payload"
    assert ledger_lines(ledger) == []
