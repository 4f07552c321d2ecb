"""Structured logging: JSON lines or text, extras, masking, and the worker's own lines."""

from __future__ import annotations

import io
import logging
from typing import Any

import orjson
import pytest

from queuekit.backends.memory import MemoryBroker
from queuekit.logs import JsonFormatter, configure_logging
from queuekit.worker import App, Worker

from .helpers import dead_letters, publish, running

pytestmark = pytest.mark.usefixtures("restore_root_logging")


def test_json_lines_carry_the_standard_fields_and_the_extras() -> None:
    # Given JSON logging into a buffer
    buffer = io.StringIO()
    configure_logging("DEBUG", "json", stream=buffer)

    # When a line with extras is logged
    logging.getLogger("queuekit.test").info(
        "handled %s", "it", extra={"topic": "jobs", "attempt": 2, "duration_ms": 1.5}
    )

    # Then it is one JSON object with ts, level, logger, msg and the extras
    (line,) = buffer.getvalue().splitlines()
    entry = orjson.loads(line)
    assert entry["ts"].endswith("Z")
    assert {k: entry[k] for k in ("level", "logger", "msg", "topic", "attempt", "duration_ms")} == {
        "level": "INFO",
        "logger": "queuekit.test",
        "msg": "handled it",
        "topic": "jobs",
        "attempt": 2,
        "duration_ms": 1.5,
    }


def test_credential_like_extras_are_masked_and_odd_values_do_not_break_a_line() -> None:
    buffer = io.StringIO()
    configure_logging("INFO", "json", stream=buffer)

    logging.getLogger("queuekit.test").warning(
        "connecting", extra={"api_key": "k-123", "redis_password": "hunter2", "when": object()}
    )

    entry = orjson.loads(buffer.getvalue())
    assert entry["api_key"] == entry["redis_password"] == "***"
    assert "hunter2" not in buffer.getvalue()
    assert entry["when"].startswith("<object object")


def test_exceptions_are_included_as_text() -> None:
    buffer = io.StringIO()
    configure_logging("INFO", "json", stream=buffer)

    try:
        raise KeyError("missing")
    except KeyError:
        logging.getLogger("queuekit.test").exception("failed")

    entry = orjson.loads(buffer.getvalue())
    assert "KeyError: 'missing'" in entry["exc"]


def test_text_format_is_one_readable_line() -> None:
    buffer = io.StringIO()
    configure_logging("INFO", "text", stream=buffer)

    logging.getLogger("queuekit.test").info("started", extra={"topic": "jobs"})

    line = buffer.getvalue().strip()
    assert line.endswith("INFO    queuekit.test: started topic=jobs")


def test_configuring_twice_replaces_the_handler_and_filters_by_level() -> None:
    first, second = io.StringIO(), io.StringIO()
    configure_logging("INFO", "json", stream=first)
    configure_logging("WARNING", "text", stream=second)

    logging.getLogger("queuekit.test").info("hidden")
    logging.getLogger("queuekit.test").warning("shown")

    assert first.getvalue() == ""
    assert "hidden" not in second.getvalue()
    assert "shown" in second.getvalue()


@pytest.mark.parametrize(("level", "fmt"), [("LOUD", "json"), ("INFO", "xml")])
def test_bad_level_or_format_is_a_clear_error(level: str, fmt: str) -> None:
    with pytest.raises(ValueError, match=r"log (level|format)"):
        configure_logging(level, fmt)


async def test_the_worker_logs_dead_letters_with_fields_but_never_the_payload(
    broker: MemoryBroker, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a failing handler and a payload holding a secret
    app = App("billing")

    @app.handler("charges", retries=0)
    async def charge(payload: Any) -> None:
        raise RuntimeError("card declined")

    # When its message is dead-lettered
    caplog.set_level(logging.DEBUG, logger="queuekit.worker")
    async with running(Worker(app, broker)):
        (sent,) = await publish(broker, "charges", {"card": "4111-1111-SECRET"})
        await dead_letters(broker, "charges")

    # Then one WARNING line describes it, with the fields and without the payload
    (record,) = [r for r in caplog.records if r.getMessage() == "message dead-lettered"]
    assert record.levelno == logging.WARNING
    fields = record.__dict__
    assert (fields["app"], fields["topic"], fields["group"]) == ("billing", "charges", "default")
    assert (fields["message_id"], fields["attempt"], fields["outcome"]) == (
        sent.id,
        1,
        "dead_lettered",
    )
    assert fields["reason"] == "max_attempts_exceeded"
    assert fields["error"] == "RuntimeError: card declined"
    assert fields["duration_ms"] >= 0
    line = JsonFormatter().format(record)
    assert "SECRET" not in line
