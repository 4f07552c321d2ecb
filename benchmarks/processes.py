"""Run one benchmark side in its own process and read its result and peak RSS."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.workload import RESULT_MARK, peak_rss_kib

REPO = Path(__file__).resolve().parents[1]


class SideFailed(RuntimeError):
    """A side's process failed; the message holds the end of its stderr."""


@dataclass(frozen=True, slots=True)
class Sample:
    """One round of one side: its rate (messages or requests per second) and peak RSS."""

    rate: float
    peak_rss_kib: int
    extra: dict[str, Any] = field(default_factory=dict)


def _reap(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, bool]:
    """Wait for ``proc``, killing it after ``timeout``; return its exit code and whether
    it had to be killed."""
    try:
        return proc.wait(timeout), False
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(), True


def run_side(
    argv: list[str], *, timeout: float = 180.0, env: dict[str, str] | None = None
) -> Sample:
    """Run ``argv`` (from the repository root) and parse its result line.

    Raises:
        SideFailed: non-zero exit, timeout, or no result line.
    """
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(argv, cwd=REPO, stdout=out, stderr=err, env=env)
        code, killed = _reap(proc, timeout)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    results = [line for line in stdout.splitlines() if line.startswith(RESULT_MARK)]
    if code != 0 or not results:
        tail = "\n".join(stderr.strip().splitlines()[-6:])
        how = f"timed out after {timeout:.0f} s" if killed else f"exited {code}"
        raise SideFailed(f"{' '.join(argv[-4:])} {how}: {tail}")
    result = json.loads(results[-1][len(RESULT_MARK) :])
    return Sample(rate=result["rate"], peak_rss_kib=result["peak_rss_kib"], extra=result)


class Server:
    """A server process (an API under test), its peak RSS read when it is stopped."""

    def __init__(self, argv: list[str], port: int) -> None:
        self.argv = argv
        self.port = port
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(argv, cwd=REPO, stdout=self._log, stderr=self._log)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Wait until the port accepts connections (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise SideFailed(f"{' '.join(self.argv)} exited early: {self._tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                if time.monotonic() > deadline:
                    raise SideFailed(f"{self.argv[3]} did not listen on {self.port}") from None
                time.sleep(0.05)

    def stop(self) -> int:
        """Read the peak RSS (KiB), SIGTERM, reap; return the peak RSS."""
        peak = peak_rss_kib(self.proc.pid)
        self.proc.send_signal(signal.SIGTERM)
        _reap(self.proc, 30.0)
        self._log.close()
        return peak

    def _tail(self) -> str:
        self._log.seek(0)
        return "\n".join(self._log.read().decode(errors="replace").splitlines()[-6:])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
