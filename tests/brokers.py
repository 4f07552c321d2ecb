"""Real brokers for tests: skip (locally) or fail (in CI) when one is not running."""

from __future__ import annotations

import os
import socket

import pytest


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts TCP connections on ``host:port`` now."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_broker(name: str, host: str, port: int) -> None:
    """Skip the test unless broker ``name`` listens on ``host:port``.

    In CI (the ``CI`` environment variable is set) a missing broker fails the test instead:
    a CI run that silently skips every broker test proves nothing.
    """
    if port_open(host, port):
        return
    hint = f"{name} is not reachable on {host}:{port}: run scripts/brokers start {name}"
    if os.environ.get("CI"):
        pytest.fail(hint)
    pytest.skip(hint)
