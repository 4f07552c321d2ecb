"""Real brokers for tests: skip (locally) or fail (in CI) when one is not running."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BROKERS_SCRIPT = os.environ.get("QUEUEKIT_BROKERS_SCRIPT", str(ROOT / "scripts" / "brokers"))
# The exit status of `scripts/brokers stop` when the broker runs but another checkout (or
# something else) started it: this checkout cannot restart it.
STARTED_ELSEWHERE = 3


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


def stop_own_broker(name: str) -> None:
    """Stop broker ``name`` through this checkout's ``scripts/brokers`` (blocking).

    A broker started by another checkout on this machine cannot be stopped from here: the
    test is skipped then (it fails in CI, where the checkout always starts its own).
    """
    stopped = subprocess.run(
        [BROKERS_SCRIPT, "stop", name], timeout=120, capture_output=True, text=True
    )
    if stopped.returncode == STARTED_ELSEWHERE:
        hint = f"cannot restart {name} from this checkout: {stopped.stdout.strip()}"
        if os.environ.get("CI"):
            pytest.fail(hint)
        pytest.skip(hint)
    assert stopped.returncode == 0, f"scripts/brokers stop {name} failed: {stopped.stdout}"


def start_broker(name: str) -> None:
    """Start broker ``name`` through ``scripts/brokers`` and wait until it is ready."""
    started = subprocess.run(
        [BROKERS_SCRIPT, "start", name], timeout=120, capture_output=True, text=True
    )
    assert started.returncode == 0, f"scripts/brokers start {name} failed: {started.stdout}"
