"""Structured logging for queuekit processes: one JSON object per line, or readable text.

:func:`configure_logging` installs a single handler on the root logger (calling it again
replaces that handler, so it is safe to call from both the CLI and :func:`run_worker`).
Fields passed with ``extra=`` (topic, group, message_id, attempt, outcome, duration_ms...)
become keys of the JSON object. Payloads are never logged by queuekit, and extra fields whose
name looks like a credential (``password``, ``token``, ``api_key``...) are masked.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

__all__ = ["LOG_FORMATS", "JsonFormatter", "TextFormatter", "configure_logging"]

LOG_FORMATS = ("json", "text")
MASK = "***"

# Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRIBUTES = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "color_message",
    "taskName",
}
_SECRET_HINTS = ("password", "passwd", "secret", "token", "api_key", "apikey", "authorization")


def _is_secret(name: str) -> bool:
    lowered = name.lower()
    return any(hint in lowered for hint in _SECRET_HINTS)


def extra_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra=`` fields of ``record``, with credential-like values masked."""
    return {
        name: MASK if _is_secret(name) else value
        for name, value in record.__dict__.items()
        if name not in _RECORD_ATTRIBUTES and not name.startswith("_")
    }


def _timestamp(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``msg``, extras, ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(extra_fields(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        # default=str: an unexpected extra value must not make the log line (or the caller) fail.
        return orjson.dumps(entry, default=str).decode()


class TextFormatter(logging.Formatter):
    """``ts LEVEL logger: msg key=value ...`` for humans at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{name}={value}" for name, value in extra_fields(record).items())
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {record.getMessage()}"
        if extras:
            line = f"{line} {extras}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


class _QueuekitHandler(logging.StreamHandler[TextIO]):
    """Marks the handler :func:`configure_logging` installed, so a second call replaces it."""


def configure_logging(
    level: str | int = "INFO", fmt: str = "json", *, stream: TextIO | None = None
) -> None:
    """Send every log record at ``level`` or above to ``stream`` (stderr) as ``fmt``.

    Args:
        level: a level name (``"DEBUG"``, ``"INFO"``...) or number.
        fmt: ``"json"`` (one object per line, for log shippers) or ``"text"``.
        stream: where to write; standard error by default.

    Raises:
        ValueError: unknown level or format.
    """
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}, not {fmt!r}")
    numeric = level if isinstance(level, int) else logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    handler = _QueuekitHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for existing in [h for h in root.handlers if isinstance(h, _QueuekitHandler)]:
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(numeric)
