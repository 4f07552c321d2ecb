"""End to end: real ``queuekit`` processes on an SQLite file, driven over HTTP and signals."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import httpx
import pytest

from queuekit import Message
from queuekit.backends.sqlite import SqliteBroker

from .conftest import Processes, free_port, recorded_ids, wait_http_ok, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]


def publish_jobs(db: Path, count: int) -> list[str]:
    """Publish ``count`` e2e jobs straight into the SQLite store; return their ids."""
    messages = [Message.build("e2e-jobs", {"n": n}) for n in range(count)]

    async def publish() -> None:
        async with SqliteBroker(db) as broker:
            await broker.publish(messages)

    asyncio.run(publish())
    return [m.id for m in messages]


def test_make_run_flow_sends_the_readme_email(processes: Processes, tmp_path: Path) -> None:
    # Given `queuekit run` with the default app (examples.email_worker:app), as `make run` does
    port = free_port()
    proc = processes.start("run", "--port", str(port))
    wait_http_ok(f"http://127.0.0.1:{port}/health")

    # When the README's curl request is sent
    response = httpx.post(
        f"http://127.0.0.1:{port}/send",
        json={
            "topic": "emails",
            "payload": {"to": "ada@example.com", "subject": "Hi", "body": "Hello from queuekit"},
        },
    )

    # Then it is accepted, and the worker writes the email to the outbox
    assert response.status_code == 202, response.text
    message_id = response.json()["id"]
    outbox = tmp_path / "outbox" / f"{message_id}.eml"
    wait_until(outbox.exists, 20, "the email to reach the outbox")
    assert "Subject: Hi" in outbox.read_text()
    metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
    assert "worker_tasks_processed_total{" in metrics
    assert 'outcome="success"' in metrics
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, processes.output(proc)


def test_run_rejects_invalid_email_payload_with_422(processes: Processes) -> None:
    # Given `queuekit run` with the email example
    port = free_port()
    processes.start("run", "--port", str(port))
    wait_http_ok(f"http://127.0.0.1:{port}/health")

    # When a payload fails the handler's schema
    response = httpx.post(
        f"http://127.0.0.1:{port}/send",
        json={"topic": "emails", "payload": {"to": "not-an-address", "subject": ""}},
    )

    # Then the API answers 422 with a problem document, and nothing is queued
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    stats = httpx.get(f"http://127.0.0.1:{port}/topics/emails").json()
    assert all(group["depth"] == 0 for group in stats["groups"])


def test_sigkilled_worker_loses_nothing(processes: Processes, tmp_path: Path) -> None:
    # Given 150 jobs and a worker handling them slowly, 8 at a time, with a 1 s lease
    ids = publish_jobs(tmp_path / "queue.db", 150)
    records = tmp_path / "records.txt"
    first = processes.start(
        "worker",
        "tests.e2e.e2e_app:app",
        "--concurrency",
        "8",
        E2E_HANDLER_SECONDS="0.05",
        VISIBILITY_TIMEOUT="1",
    )
    wait_until(lambda: len(recorded_ids(records)) >= 20, 30, "the first worker to make progress")

    # When it is killed with SIGKILL in the middle of the batch
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert len(set(recorded_ids(records))) < len(ids), "the kill came too late to matter"

    # Then a second worker processes every message at least once
    processes.start(
        "worker", "tests.e2e.e2e_app:app", E2E_HANDLER_SECONDS="0", VISIBILITY_TIMEOUT="1"
    )
    wait_until(lambda: set(recorded_ids(records)) >= set(ids), 60, "every job to be processed")
    assert set(recorded_ids(records)) == set(ids)


def test_sigterm_finishes_in_flight_work_and_exits_cleanly(
    processes: Processes, tmp_path: Path
) -> None:
    # Given 40 jobs taking 0.2 s each, 4 at a time
    ids = publish_jobs(tmp_path / "queue.db", 40)
    records = tmp_path / "records.txt"
    worker = processes.start(
        "worker",
        "tests.e2e.e2e_app:app",
        "--concurrency",
        "4",
        E2E_HANDLER_SECONDS="0.2",
        SHUTDOWN_GRACE_SECONDS="10",
    )
    wait_until(lambda: len(recorded_ids(records)) >= 4, 30, "the worker to make progress")

    # When it gets SIGTERM during processing
    worker.send_signal(signal.SIGTERM)

    # Then it exits 0 after finishing what it had started, having processed nothing twice
    assert worker.wait(timeout=30) == 0, processes.output(worker)
    done_before_restart = recorded_ids(records)
    assert len(done_before_restart) == len(set(done_before_restart))
    assert len(done_before_restart) < len(ids)

    # And a new worker processes the rest: nothing was lost
    processes.start("worker", "tests.e2e.e2e_app:app", E2E_HANDLER_SECONDS="0")
    wait_until(lambda: set(recorded_ids(records)) >= set(ids), 60, "the rest to be processed")
    assert sorted(recorded_ids(records)) == sorted(ids), "a graceful stop processed none twice"
