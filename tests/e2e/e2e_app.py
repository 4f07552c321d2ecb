"""Handlers for the end-to-end tests: they record what they processed in a file.

``E2E_RECORD_FILE``: each processed message appends ``<id> <attempt> <pid>`` as one line
(O_APPEND writes of one short line are atomic, so several processes can share the file).
``E2E_HANDLER_SECONDS``: how long each message takes, to have messages in flight.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

from queuekit import App, Message

app = App("e2e")


def record(message: Message) -> None:
    line = f"{message.id} {message.attempt} {os.getpid()}\n".encode()
    fd = os.open(os.environ["E2E_RECORD_FILE"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


@app.handler("e2e-jobs", retries=5, backoff=0.05)
async def slow_job(payload: Any, message: Message) -> None:
    await asyncio.sleep(float(os.environ.get("E2E_HANDLER_SECONDS", "0")))
    record(message)
