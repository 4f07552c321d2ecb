"""The producer API benchmark: wrk against ``POST /send`` of queuekit and of bare Starlette.

wrk ``-t2 -c64 -d<seconds>s --latency`` with a Lua script POSTing ``{"topic", "payload"}``
(the 1 KiB payload) to a fresh topic; both servers on uvicorn with one worker, publishing to
the same Redis. Reported: requests per second and the p99 latency; non-2xx answers fail
the round.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.processes import Sample, Server, SideFailed, free_port
from benchmarks.workload import payload, unique_name

API_KEY = "bench-key-0123456789abcdef"
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def ensure_wrk() -> str | None:
    """The wrk binary; installs Debian's package when missing and allowed, else None."""
    found = shutil.which("wrk")
    if found or not shutil.which("apt-get"):
        return found
    subprocess.run(
        ["apt-get", "install", "-y", "wrk"], capture_output=True, check=False, timeout=300
    )
    return shutil.which("wrk")


def lua_script(topic: str, api_key: str | None) -> str:
    body = json.dumps({"topic": topic, "payload": payload()}, separators=(",", ":"))
    lines = [
        'wrk.method = "POST"',
        f"wrk.body = [[{body}]]",
        'wrk.headers["Content-Type"] = "application/json"',
    ]
    if api_key:
        lines.append(f'wrk.headers["X-API-Key"] = "{api_key}"')
    return "\n".join(lines) + "\n"


def parse_wrk(output: str) -> tuple[float, float, int]:
    """(requests/s, p99 ms, non-2xx answers) from ``wrk --latency`` output."""
    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p99 = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
    errors = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    if rate is None or p99 is None:
        raise SideFailed(f"cannot read wrk's output:\n{output}")
    p99_ms = float(p99.group(1)) * _UNITS[p99.group(2)]
    return float(rate.group(1)), p99_ms, int(errors.group(1)) if errors else 0


def run_api_side(wrk: str, kind: str, seconds: int, *, auth: bool) -> Sample:
    """Serve ``kind`` (queuekit or starlette), load it with wrk, stop it; one round."""
    import asyncio

    from benchmarks.cleanup import delete_topic

    port = free_port()
    argv = [sys.executable, "-m", "benchmarks.api_servers", kind, "--port", str(port)]
    if auth:
        argv += ["--api-key", API_KEY]
    topic = unique_name("api")
    server = Server(argv, port)
    try:
        server.wait_ready()
        with tempfile.TemporaryDirectory() as folder:
            script = Path(folder) / "post.lua"
            script.write_text(lua_script(topic, API_KEY if auth else None))
            done = subprocess.run(
                [
                    wrk,
                    "-t2",
                    "-c64",
                    f"-d{seconds}s",
                    "--latency",
                    "-s",
                    str(script),
                    f"http://127.0.0.1:{port}/send",
                ],
                capture_output=True,
                text=True,
                timeout=seconds + 60,
                check=False,
            )
    finally:
        peak = server.stop()
        asyncio.run(delete_topic("redis", topic))
    rate, p99_ms, failures = parse_wrk(done.stdout)
    if done.returncode != 0 or failures:
        raise SideFailed(f"wrk against {kind}: {failures} non-2xx answers\n{done.stdout}")
    return Sample(rate=rate, peak_rss_kib=peak, extra={"p99_ms": p99_ms})
