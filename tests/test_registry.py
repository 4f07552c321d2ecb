"""Backend registry: create_broker builds the chosen backend lazily, with an install hint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from queuekit.backends import create_broker
from queuekit.backends.memory import MemoryBroker
from queuekit.backends.sqlite import SqliteBroker
from queuekit.errors import ConfigError
from queuekit.message import Message
from queuekit.settings import Settings


async def test_memory_builds_an_unconnected_memory_broker_that_works() -> None:
    # Given QUEUE_TYPE=memory
    settings = Settings.from_env({"QUEUE_TYPE": "memory"})

    # When the registry builds the broker and it is connected
    broker = create_broker(settings)
    async with broker:
        await broker.publish([Message.build("t", {"n": 1})])
        async with await broker.subscribe("t") as subscription:
            delivery = await anext(subscription)
            await delivery.ack()

    # Then it was a memory broker that carried the message
    assert isinstance(broker, MemoryBroker)
    assert delivery.message.json() == {"n": 1}


async def test_sqlite_builds_a_broker_on_the_configured_file(tmp_path: Path) -> None:
    # Given QUEUE_TYPE=sqlite and a path
    path = tmp_path / "q.db"
    settings = Settings.from_env({"QUEUE_TYPE": "SQLite", "SQLITE_PATH": str(path)})

    # When the registry builds it and a message is published
    broker = create_broker(settings)
    assert not path.exists()  # building does not connect
    async with broker:
        await broker.publish([Message.build("t", {})])

    # Then it is a SQLite broker on that file
    assert isinstance(broker, SqliteBroker)
    assert path.exists()


def test_each_call_builds_a_new_broker() -> None:
    settings = Settings(queue_type="memory")
    assert create_broker(settings) is not create_broker(settings)


def test_an_unknown_queue_type_is_rejected_by_settings_before_the_registry() -> None:
    # Given QUEUE_TYPE=bogus / When settings are read / Then ConfigError names QUEUE_TYPE
    with pytest.raises(ConfigError, match="QUEUE_TYPE='bogus'"):
        Settings.from_env({"QUEUE_TYPE": "bogus"})


@pytest.mark.parametrize(
    ("queue_type", "client", "extra"),
    [
        ("redis", "redis", "redis"),
        ("rabbitmq", "aio_pika", "rabbitmq"),
        ("kafka", "confluent_kafka", "kafka"),
    ],
)
def test_a_missing_client_library_says_what_to_install(
    queue_type: str, client: str, extra: str, tmp_path: Path
) -> None:
    # Given an interpreter where the backend's client library cannot be imported
    # (sys.modules[name] = None makes `import name` fail, as if it were not installed)
    code = (
        f"import sys; sys.modules[{client!r}] = None\n"
        "from queuekit.backends import create_broker\n"
        "from queuekit.errors import BackendNotInstalled\n"
        "from queuekit.settings import Settings\n"
        "try:\n"
        f"    create_broker(Settings(queue_type={queue_type!r}))\n"
        "except BackendNotInstalled as exc:\n"
        "    print(exc)\n"
    )

    # When the registry is asked for that backend
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )

    # Then it raises BackendNotInstalled with the pip command
    assert done.returncode == 0, done.stderr
    assert f'pip install "queuekit[{extra}]"' in done.stdout
    assert client in done.stdout
