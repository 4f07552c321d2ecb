"""Fixtures that start real queuekit processes (``.venv/bin/queuekit``) on a temporary store."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
QUEUEKIT = str(Path(sys.executable).with_name("queuekit"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail the test with ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def wait_http_ok(url: str, timeout: float = 20.0) -> None:
    def answers() -> bool:
        try:
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(answers, timeout, f"{url} to answer 200")


class Processes:
    """Starts queuekit commands with a shared environment and kills leftovers at teardown."""

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, *args: str, **extra_env: str) -> subprocess.Popen[bytes]:
        with (self.logs / f"proc-{len(self.started)}.log").open("wb") as log:
            proc = subprocess.Popen(
                [QUEUEKIT, *args],
                cwd=REPO,
                env={**self.env, **extra_env},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.started.append(proc)
        return proc

    def output(self, proc: subprocess.Popen[bytes]) -> str:
        index = self.started.index(proc)
        return (self.logs / f"proc-{index}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("QUEUE_", "API_", "WORKER_", "SQLITE_", "E2E_"))
    }
    env.update(
        QUEUE_TYPE="sqlite",
        SQLITE_PATH=str(tmp_path / "queue.db"),
        IDEMPOTENCY_STORE=str(tmp_path / "idempotency.db"),
        E2E_RECORD_FILE=str(tmp_path / "records.txt"),
        OUTBOX_DIR=str(tmp_path / "outbox"),
        WORKER_METRICS_PORT="0",
        LOG_FORMAT="text",
        PYTHONUNBUFFERED="1",
    )
    procs = Processes(env, tmp_path)
    yield procs
    procs.stop_all()


def recorded_ids(path: Path) -> list[str]:
    """Message ids the e2e handlers recorded, in order, duplicates kept."""
    if not path.exists():
        return []
    return [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
