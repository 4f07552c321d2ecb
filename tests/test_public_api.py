"""The public surface: ``queuekit.__all__`` is sorted and importable; importing is cheap."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

import queuekit

# Heavy server stacks that only `queuekit api` / `run` need.
# uvicorn and starlette belong here too once queuekit.worker.health imports them lazily
# (today it imports them at module level; reported).
NOT_IMPORTED_BY_QUEUEKIT = ("fastapi", "starlette", "uvicorn")
OPTIONAL_CLIENTS = ("redis", "aio_pika", "aiormq", "confluent_kafka")


def modules_loaded_by_import_queuekit(cwd: Path) -> list[str]:
    """Top-level module names present after a fresh ``import queuekit`` in a new interpreter."""
    code = (
        "import sys, orjson; import queuekit; "
        "sys.stdout.write(orjson.dumps(sorted({m.split('.')[0] for m in sys.modules})).decode())"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, capture_output=True, timeout=30, check=True
    )
    loaded: list[str] = orjson.loads(done.stdout)
    return loaded


def test_all_is_sorted_and_unique() -> None:
    assert queuekit.__all__ == sorted(set(queuekit.__all__))


def test_every_public_name_is_importable() -> None:
    # Given the names the package promises
    # When each is looked up on the package / Then it exists and is not None
    for name in queuekit.__all__:
        assert getattr(queuekit, name, None) is not None, name


def test_star_import_gives_exactly_the_public_names() -> None:
    namespace: dict[str, object] = {}
    exec("from queuekit import *", namespace)
    assert set(namespace) - {"__builtins__"} == set(queuekit.__all__)


def test_the_core_programming_model_is_public() -> None:
    # Given what a user writes in a first program: an App, a Worker, send_message, errors
    core = {"App", "Worker", "Message", "send_message", "Settings", "Reject", "Retry", "Broker"}

    # Then all of it is importable from the package root
    assert core <= set(queuekit.__all__)


def test_import_does_not_load_the_web_stack_or_broker_clients(tmp_path: Path) -> None:
    # Given a fresh interpreter
    # When it imports queuekit
    loaded = modules_loaded_by_import_queuekit(tmp_path)

    # Then neither FastAPI nor any optional broker client was imported
    assert not set(loaded) & set(NOT_IMPORTED_BY_QUEUEKIT)
    assert not set(loaded) & set(OPTIONAL_CLIENTS)


def test_import_touches_no_files(tmp_path: Path) -> None:
    # Given an empty working directory
    # When queuekit is imported there
    modules_loaded_by_import_queuekit(tmp_path)

    # Then nothing was created (no .queuekit folder, no database)
    assert list(tmp_path.iterdir()) == []


def test_the_version_is_a_string() -> None:
    assert isinstance(queuekit.__version__, str)
    assert queuekit.__version__.count(".") >= 1
