"""Smoke tests of the benchmark tooling: it runs and reports sane figures (nothing is timed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson

from queuekit.backends.memory import MemoryBroker
from queuekit.bench import BenchConfig, run_bench

QUEUEKIT = str(Path(sys.executable).with_name("queuekit"))
REPO = Path(__file__).resolve().parents[1]


def test_queuekit_bench_prints_sane_json_on_sqlite(tmp_path: Path) -> None:
    # Given a SQLite queue configured in a scratch folder
    env = {**os.environ, "SQLITE_PATH": str(tmp_path / "data" / "queue.db")}

    # When `queuekit bench` measures it with a tiny count
    done = subprocess.run(
        [QUEUEKIT, "bench", "--backend", "sqlite", "--count", "200", "--json"],
        env=env,
        capture_output=True,
        timeout=50,
        check=False,
    )

    # Then it prints one JSON document with positive rates and ordered percentiles
    assert done.returncode == 0, done.stderr.decode()
    result = orjson.loads(done.stdout)
    assert result["backend"] == "sqlite"
    assert result["count"] == 200
    assert result["payload_bytes"] == 1024
    assert result["throughput"] > 0
    assert result["publish_rate"] >= result["throughput"]
    assert result["latency_count"] > 0
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    # ... and it left no scratch database behind next to the real one
    assert list((tmp_path / "data").iterdir()) == []


def test_queuekit_bench_rejects_a_bad_count_in_one_line(tmp_path: Path) -> None:
    # Given a count of zero
    env = {**os.environ, "SQLITE_PATH": str(tmp_path / "queue.db")}

    # When `queuekit bench` is asked to use it
    done = subprocess.run(
        [QUEUEKIT, "bench", "--backend", "sqlite", "--count", "0"],
        env=env,
        capture_output=True,
        timeout=50,
        check=False,
    )

    # Then it exits non-zero with a clear message and no traceback
    assert done.returncode == 1
    assert b"count must be an integer >= 1" in done.stderr
    assert b"Traceback" not in done.stderr


def test_harness_runs_sqlite_side_by_side_and_writes_results(tmp_path: Path) -> None:
    # Given the benchmark harness limited to SQLite, one tiny round, no peers
    argv = [sys.executable, "-m", "benchmarks", "--only", "sqlite", "--count", "100"]
    argv += ["--rounds", "1", "--skip-peers", "--results-dir", str(tmp_path)]

    # When it runs
    done = subprocess.run(argv, cwd=REPO, capture_output=True, timeout=55, check=False)

    # Then it prints the table with both sides and writes the figures and the environment
    assert done.returncode == 0, done.stderr.decode()
    output = done.stdout.decode()
    assert "raw sqlite3" in output
    assert "queuekit" in output
    (results,) = tmp_path.glob("*.json")
    figures = orjson.loads(results.read_bytes())
    rows = {row["side"]: row for row in figures["rows"]}
    assert set(rows) == {"raw sqlite3", "queuekit"}
    for row in rows.values():
        assert row["failures"] == []
        assert row["median"] > 0
        assert row["peak_rss_mib"] > 0
    assert rows["raw sqlite3"]["rate_ratio"] > 0
    assert figures["environment"]["machine"]["cores"] >= 1
    assert "queuekit" in figures["environment"]["libraries"]
    assert results.with_suffix(".md").read_text().startswith("# queuekit benchmarks")


def test_a_second_harness_run_does_not_overwrite_the_first_results(tmp_path: Path) -> None:
    # Given the results of one tiny harness run
    argv = [sys.executable, "-m", "benchmarks", "--only", "sqlite", "--count", "50"]
    argv += ["--rounds", "1", "--skip-peers", "--results-dir", str(tmp_path)]
    subprocess.run(argv, cwd=REPO, capture_output=True, timeout=55, check=True)
    (first,) = tmp_path.glob("*.json")
    written = first.read_bytes()

    # When a second run writes into the same folder (the same day: it is named by the date)
    subprocess.run(argv, cwd=REPO, capture_output=True, timeout=55, check=True)

    # Then it wrote files of its own, and the first run's are unchanged
    assert len(list(tmp_path.glob("*.json"))) == 2
    assert len(list(tmp_path.glob("*.md"))) == 2
    assert first.read_bytes() == written


async def test_a_bench_run_deletes_its_topic_afterwards() -> None:
    # Given a broker
    async with MemoryBroker() as broker:
        # When a short benchmark runs on it
        result = await run_bench(broker, BenchConfig(count=50, warmup=10, latency_fraction=0))

        # Then every message was acked, and the benchmark's topic is gone
        assert result.count == 50
        assert await broker.list_topics() == []
