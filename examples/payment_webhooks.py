"""Payment webhooks: accept fast, verify the signature, book each event exactly once.

A payment provider calls your webhook endpoint and retries until it gets a 2xx, often
sending the same event several times. The endpoint does the minimum: check the signature
(:func:`verify_webhook`), enqueue, answer 202. The worker books the event in a ledger.

Producer side (your web endpoint)::

    @api.post("/webhooks/payments", status_code=202)
    async def payments(request: Request) -> dict[str, str]:
        body = await request.body()
        try:
            event = verify_webhook(body, request.headers.get(SIGNATURE_HEADER), secret)
        except InvalidSignature:
            raise HTTPException(400, "bad signature") from None
        message_id = await send_message(TOPIC, event.model_dump())
        return {"queued": message_id}

Consumer side: ``queuekit worker examples.payment_webhooks:app``.

* Idempotency: the handler's business key is the provider's event id, so an event delivered
  twice (the provider retried, or two copies were queued) is booked once, for every copy
  and every redelivery; the worker remembers processed keys in ``IDEMPOTENCY_STORE``.
* An unknown event type is rejected to the dead-letter queue (no retry can teach us a new
  type); inspect it with ``queuekit dlq list payment-webhooks``.
* The ledger is ``LEDGER_PATH`` (default ``.queuekit/ledger.jsonl``): one JSON line per
  booked event, with refunds as negative amounts. Each line is one ``O_APPEND`` write, so
  concurrent handlers never interleave. One window remains, as with any store next to a
  queue: a crash after the line is written and before the key is remembered books the
  event twice on redelivery; a real ledger writes the line and the key in one transaction.

The signature scheme is the common one (Stripe's, among others): the header is
``t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">``, and old timestamps are refused so a
captured request cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from pathlib import Path

import orjson
from pydantic import BaseModel, Field, ValidationError

from queuekit import App, Message, Reject

TOPIC = "payment-webhooks"
SIGNATURE_HEADER = "Webhook-Signature"
SIGNATURE_TOLERANCE = 300.0

app = App("payments")

# Event type -> sign of its amount in the ledger.
LEDGER_SIGN = {"payment.succeeded": 1, "payment.refunded": -1}


class WebhookEvent(BaseModel):
    """One event as the provider sends it. ``amount`` is in minor units (cents)."""

    id: str = Field(min_length=1, max_length=255)
    type: str = Field(min_length=1, max_length=100)
    amount: int = Field(ge=0)
    currency: str = Field(pattern=r"^[A-Z]{3}$")


class InvalidSignature(ValueError):
    """The webhook's signature is missing, malformed, wrong or too old."""


def sign_webhook(body: bytes, secret: bytes, *, timestamp: int | None = None) -> str:
    """The signature header value for ``body`` (what the provider computes)."""
    moment = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret, f"{moment}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={moment},v1={digest}"


def verify_webhook(
    body: bytes,
    signature: str | None,
    secret: bytes,
    *,
    tolerance: float = SIGNATURE_TOLERANCE,
    now: float | None = None,
) -> WebhookEvent:
    """Check ``signature`` over the raw ``body`` and return the parsed event.

    Call it with the exact bytes received, before any JSON parsing. Compares digests in
    constant time; accepts any of several ``v1=`` values (providers send two while rotating
    secrets).

    Raises:
        InvalidSignature: no or malformed header, no matching digest, or a timestamp more
            than ``tolerance`` seconds away from ``now``; or a body that is not an event.
    """
    if not signature:
        raise InvalidSignature("missing signature")
    parts = [item.partition("=") for item in signature.split(",")]
    stamps = [value for name, _, value in parts if name.strip() == "t"]
    digests = [value.strip() for name, _, value in parts if name.strip() == "v1"]
    if len(stamps) != 1 or not stamps[0].strip().isdigit() or not digests:
        raise InvalidSignature("malformed signature header")
    moment = int(stamps[0])
    current = time.time() if now is None else now
    if abs(current - moment) > tolerance:
        raise InvalidSignature("signature timestamp outside the tolerance")
    expected = hmac.new(secret, f"{moment}.".encode() + body, hashlib.sha256).hexdigest()
    if not any(hmac.compare_digest(expected, digest) for digest in digests):
        raise InvalidSignature("signature does not match")
    try:
        return WebhookEvent.model_validate_json(body)
    except ValidationError as exc:
        raise InvalidSignature(f"signed body is not a webhook event: {exc.title}") from None


def ledger_path() -> Path:
    """The ledger file: ``LEDGER_PATH``, default ``.queuekit/ledger.jsonl``."""
    return Path(os.environ.get("LEDGER_PATH", ".queuekit/ledger.jsonl"))


def append_line(path: Path, record: dict[str, object]) -> None:
    """Append ``record`` as one JSON line in a single ``O_APPEND`` write."""
    path.parent.mkdir(parents=True, exist_ok=True)
    line = orjson.dumps(record) + b"\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def event_key(event: WebhookEvent) -> str:
    """The business idempotency key: the provider's event id (the handler gets the model)."""
    return event.id


@app.handler(TOPIC, schema=WebhookEvent, idempotency_key=event_key, retries=8, backoff=2.0)
def book_event(event: WebhookEvent, message: Message) -> None:
    """Book one payment event in the ledger; unknown types go to the dead-letter queue."""
    sign = LEDGER_SIGN.get(event.type)
    if sign is None:
        raise Reject(f"unknown event type {event.type!r}")
    append_line(
        ledger_path(),
        {
            "event_id": event.id,
            "type": event.type,
            "amount": sign * event.amount,
            "currency": event.currency,
            "message_id": message.id,
        },
    )
