"""Configuration: environment variables -> one frozen :class:`Settings`.

The environment is read only here (via :meth:`Settings.from_env`) and in ``cli.py``; never at
import time. Every variable has a default that runs the product locally on embedded SQLite.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

from queuekit.errors import ConfigError
from queuekit.interpreter import DEFAULT_GC_THRESHOLD, DEFAULT_SWITCH_INTERVAL

BACKENDS = ("sqlite", "memory", "redis", "rabbitmq", "kafka")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Settings:
    """Every setting of queuekit. Field names are the environment variables, lower-cased."""

    queue_type: str = "sqlite"
    sqlite_path: str = ".queuekit/queuekit.db"
    # seconds; 0 leaves the interpreter's own switch interval (see queuekit/interpreter.py)
    sqlite_switch_interval: float = DEFAULT_SWITCH_INTERVAL
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_require_durability: bool = False
    rabbitmq_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    # empty: the same host and user as RABBITMQ_URL, on the management port 15672
    rabbitmq_management_url: str = ""
    kafka_bootstrap_servers: str = "127.0.0.1:9092"
    kafka_partitions: int = 3
    visibility_timeout: float = 30.0
    api_host: str = "127.0.0.1"
    api_port: int = 8080
    api_keys: tuple[str, ...] = field(default=(), repr=False)
    max_payload_bytes: int = 1024 * 1024
    worker_concurrency: int = 16
    worker_metrics_port: int = 9100
    # 0 leaves the garbage collector's own threshold (see queuekit/interpreter.py)
    worker_gc_threshold: int = DEFAULT_GC_THRESHOLD
    shutdown_grace_seconds: float = 30.0
    idempotency_store: str = ".queuekit/idempotency.db"
    log_level: str = "INFO"
    log_format: str = "json"
    queuekit_app: str = "examples.email_worker:app"

    def __post_init__(self) -> None:
        if self.queue_type not in BACKENDS:
            raise ConfigError(f"QUEUE_TYPE={self.queue_type!r} is not one of {', '.join(BACKENDS)}")
        for name in ("api_port", "worker_metrics_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise ConfigError(f"{name.upper()}={port} is not a TCP port")
        positives = (
            "kafka_partitions",
            "visibility_timeout",
            "max_payload_bytes",
            "worker_concurrency",
        )
        for name in positives:
            # "not > 0" and isfinite: NaN compares false to everything and would slip through.
            value = getattr(self, name)
            if not value > 0 or not math.isfinite(value):
                raise ConfigError(f"{name.upper()} must be a positive number, not {value!r}")
        switch = self.sqlite_switch_interval
        if not 0 <= switch < 1:  # also rejects NaN
            raise ConfigError(
                f"SQLITE_SWITCH_INTERVAL must be a number of seconds in [0, 1), not {switch!r}"
            )
        if self.worker_gc_threshold < 0:
            raise ConfigError(
                f"WORKER_GC_THRESHOLD must be an integer >= 0, not {self.worker_gc_threshold!r}"
            )
        grace = self.shutdown_grace_seconds
        if not grace >= 0 or not math.isfinite(grace):
            raise ConfigError(f"SHUTDOWN_GRACE_SECONDS must be a finite number >= 0, not {grace!r}")
        if self.log_format not in ("json", "text"):
            raise ConfigError("LOG_FORMAT must be 'json' or 'text'")
        if self.log_level.upper() not in logging.getLevelNamesMapping():
            raise ConfigError(
                f"LOG_LEVEL={self.log_level!r} is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL"
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read settings from ``env`` (default: ``os.environ``); ``overrides`` win.

        Raises:
            ConfigError: a variable has a value of the wrong type or out of range.
        """
        source = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = source.get(f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = _parse(f.name, raw, _PARSERS.get(f.name, str))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def auth_enabled(self) -> bool:
        """Whether the producer API requires an API key."""
        return bool(self.api_keys)


def _parse(name: str, raw: str, parser: Callable[[str], T]) -> T:
    try:
        return parser(raw.strip())
    except ValueError as exc:
        raise ConfigError(f"{name.upper()}={raw!r} is invalid: {exc}") from None


def _parse_bool(raw: str) -> bool:
    lowered = raw.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _parse_keys(raw: str) -> tuple[str, ...]:
    return tuple(key.strip() for key in raw.split(",") if key.strip())


_PARSERS: dict[str, Callable[[str], Any]] = {
    "queue_type": str.lower,
    "sqlite_switch_interval": float,
    "redis_require_durability": _parse_bool,
    "kafka_partitions": int,
    "visibility_timeout": float,
    "api_port": int,
    "api_keys": _parse_keys,
    "max_payload_bytes": int,
    "worker_concurrency": int,
    "worker_metrics_port": int,
    "worker_gc_threshold": int,
    "shutdown_grace_seconds": float,
    "log_level": str.upper,
    "log_format": str.lower,
}
