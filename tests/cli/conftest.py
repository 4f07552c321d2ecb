"""Run the real ``queuekit`` console script as a subprocess against a temporary SQLite file."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

REPO = Path(__file__).resolve().parents[2]
QUEUEKIT = str(Path(sys.executable).with_name("queuekit"))
COMMAND_TIMEOUT = 30.0


@dataclass(frozen=True)
class Result:
    """What one run of the command printed and returned."""

    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> object:
        return orjson.loads(self.stdout)


class Cli:
    """Runs ``queuekit`` with a clean environment pointing at ``sqlite_path``."""

    def __init__(self, sqlite_path: Path) -> None:
        self.sqlite_path = sqlite_path
        self.env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("QUEUE", "API_", "WORKER_", "SQLITE_", "REDIS_", "RABBITMQ_"))
            and not name.startswith(("KAFKA_", "LOG_", "IDEMPOTENCY_"))
        }
        self.env.update(
            QUEUE_TYPE="sqlite", SQLITE_PATH=str(sqlite_path), LOG_FORMAT="text", COLUMNS="200"
        )

    def __call__(self, *args: str, stdin: str = "", **env: str) -> Result:
        done = subprocess.run(
            [QUEUEKIT, *args],
            cwd=REPO,
            env={**self.env, **env},
            input=stdin,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def stats(self) -> dict[str, dict[str, object]]:
        """``stats --json`` keyed by topic."""
        result = self("stats", "--json")
        assert result.code == 0, result.output
        rows = result.json()
        assert isinstance(rows, list)
        return {row["topic"]: row for row in rows}


def assert_one_error_line(result: Result, *, code: int = 1) -> str:
    """The run failed with ``code`` and exactly one ``error:`` line on stderr; return it."""
    assert result.code == code, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    return lines[0]


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path / "queue.db")
