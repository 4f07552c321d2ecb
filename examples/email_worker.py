"""Email worker: the first example, and what ``make run`` serves by default.

A web request hands the slow part (talking to a mail server) to the ``emails`` topic and
answers at once; this handler sends the email. Without ``SMTP_HOST`` it writes each email as
an ``.eml`` file into ``OUTBOX_DIR`` (default ``.queuekit/outbox``), so a local run shows
its effect with no mail server.

    curl -X POST localhost:8080/send -H 'content-type: application/json' -d \\
      '{"topic": "emails", "payload": {"to": "ada@example.com", "subject": "Hi", "body": "Yo"}}'
"""

from __future__ import annotations

import logging
import os
import smtplib
from email.message import EmailMessage
from pathlib import Path

from pydantic import BaseModel, EmailStr, Field

from queuekit import App, Message

log = logging.getLogger("examples.email")

app = App("email-service")


class Email(BaseModel):
    """The payload of an ``emails`` message."""

    to: EmailStr
    subject: str = Field(min_length=1, max_length=200)
    body: str = Field(max_length=100_000)


def compose(email: Email, message_id: str) -> EmailMessage:
    """Build the MIME message; the queue message id becomes its Message-ID."""
    mime = EmailMessage()
    mime["From"] = os.environ.get("EMAIL_FROM", "queuekit@localhost")
    mime["To"] = str(email.to)
    mime["Subject"] = email.subject
    mime["Message-ID"] = f"<{message_id}@queuekit>"
    mime.set_content(email.body)
    return mime


@app.handler("emails", schema=Email, retries=5, backoff=2.0, timeout=30.0)
def send_email(email: Email, message: Message) -> None:
    """Send one email; a failure raises, so queuekit retries it with backoff."""
    mime = compose(email, message.id)
    smtp_host = os.environ.get("SMTP_HOST")
    if smtp_host:
        with smtplib.SMTP(smtp_host, int(os.environ.get("SMTP_PORT", "25")), timeout=20) as smtp:
            smtp.send_message(mime)
    else:
        outbox = Path(os.environ.get("OUTBOX_DIR", ".queuekit/outbox"))
        outbox.mkdir(parents=True, exist_ok=True)
        # Written under a temporary name and renamed, so a reader never sees half a file.
        target = outbox / f"{message.id}.eml"
        partial = target.with_suffix(".part")
        partial.write_bytes(bytes(mime))
        partial.replace(target)
    log.info("email sent", extra={"message_id": message.id, "attempt": message.attempt})
