"""Settings.from_env: defaults, every variable parsed, clear errors, secrets kept out of repr."""

from __future__ import annotations

from dataclasses import fields

import pytest

from queuekit.errors import ConfigError
from queuekit.settings import BACKENDS, Settings

EVERY_VARIABLE = {
    "QUEUE_TYPE": "Redis",
    "SQLITE_PATH": "/data/q.db",
    "SQLITE_SWITCH_INTERVAL": "0",
    "REDIS_URL": "redis://cache:6380/2",
    "REDIS_REQUIRE_DURABILITY": "yes",
    "RABBITMQ_URL": "amqp://u:p@rabbit:5673/vh",
    "RABBITMQ_MANAGEMENT_URL": "http://u:p@rabbit:15673/",
    "KAFKA_BOOTSTRAP_SERVERS": "k1:9092,k2:9092",
    "KAFKA_PARTITIONS": "12",
    "VISIBILITY_TIMEOUT": "12.5",
    "API_HOST": "0.0.0.0",
    "API_PORT": "9000",
    "API_KEYS": "k1,k2",
    "MAX_PAYLOAD_BYTES": "2048",
    "WORKER_CONCURRENCY": "4",
    "WORKER_METRICS_PORT": "0",
    "WORKER_GC_THRESHOLD": "0",
    "SHUTDOWN_GRACE_SECONDS": "0",
    "IDEMPOTENCY_STORE": "redis://cache:6380/3",
    "LOG_LEVEL": "debug",
    "LOG_FORMAT": "TEXT",
    "QUEUEKIT_APP": "my.module:app",
}


def test_an_empty_environment_gives_the_local_sqlite_defaults() -> None:
    # Given no variables at all
    # When settings are read
    settings = Settings.from_env({})

    # Then they run the product locally on embedded SQLite
    assert settings == Settings()
    assert settings.queue_type == "sqlite"
    assert settings.sqlite_path == ".queuekit/queuekit.db"
    assert settings.api_port == 8080
    assert settings.api_keys == ()
    assert not settings.auth_enabled
    assert settings.worker_concurrency == 16
    assert settings.log_format == "json"


def test_every_variable_is_read_and_parsed_to_its_type() -> None:
    # Given a value for every variable
    # When settings are read
    settings = Settings.from_env(EVERY_VARIABLE)

    # Then each field has the parsed value (names lower-cased, numbers and booleans parsed)
    assert settings == Settings(
        queue_type="redis",
        sqlite_path="/data/q.db",
        sqlite_switch_interval=0.0,
        redis_url="redis://cache:6380/2",
        redis_require_durability=True,
        rabbitmq_url="amqp://u:p@rabbit:5673/vh",
        rabbitmq_management_url="http://u:p@rabbit:15673/",
        kafka_bootstrap_servers="k1:9092,k2:9092",
        kafka_partitions=12,
        visibility_timeout=12.5,
        api_host="0.0.0.0",
        api_port=9000,
        api_keys=("k1", "k2"),
        max_payload_bytes=2048,
        worker_concurrency=4,
        worker_metrics_port=0,
        worker_gc_threshold=0,
        shutdown_grace_seconds=0.0,
        idempotency_store="redis://cache:6380/3",
        log_level="DEBUG",
        log_format="text",
        queuekit_app="my.module:app",
    )


def test_the_test_above_covers_every_field() -> None:
    # Given the fields of Settings / Then each has its variable in EVERY_VARIABLE
    assert {f.name.upper() for f in fields(Settings)} == set(EVERY_VARIABLE)


def test_empty_variables_mean_the_default_and_values_are_stripped() -> None:
    # Given an empty and a padded variable
    settings = Settings.from_env({"API_PORT": "", "WORKER_CONCURRENCY": " 8 "})

    # Then the empty one keeps its default and the padded one parses
    assert (settings.api_port, settings.worker_concurrency) == (8080, 8)


def test_the_process_environment_is_the_default_source(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a variable in os.environ
    monkeypatch.setenv("WORKER_CONCURRENCY", "3")

    # When no mapping is passed / Then os.environ is read
    assert Settings.from_env().worker_concurrency == 3


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("1", True), ("true", True), ("ON", True), ("0", False), ("no", False), ("Off", False)],
)
def test_booleans_accept_the_usual_spellings(raw: str, expected: bool) -> None:
    settings = Settings.from_env({"REDIS_REQUIRE_DURABILITY": raw})
    assert settings.redis_require_durability is expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("one", ("one",)),
        (" a , b ,, c ", ("a", "b", "c")),
        (",", ()),
        ("key-with=equals", ("key-with=equals",)),
    ],
)
def test_api_keys_are_comma_separated_and_trimmed(raw: str, expected: tuple[str, ...]) -> None:
    # Given API_KEYS / When read / Then each non-empty trimmed key is kept, in order
    settings = Settings.from_env({"API_KEYS": raw})
    assert settings.api_keys == expected
    assert settings.auth_enabled is bool(expected)


@pytest.mark.parametrize(
    ("variable", "raw"),
    [
        ("QUEUE_TYPE", "bogus"),
        ("KAFKA_PARTITIONS", "three"),
        ("KAFKA_PARTITIONS", "0"),
        ("VISIBILITY_TIMEOUT", "-1"),
        ("VISIBILITY_TIMEOUT", "nan"),
        ("VISIBILITY_TIMEOUT", "inf"),
        ("API_PORT", "http"),
        ("API_PORT", "70000"),
        ("API_PORT", "-1"),
        ("MAX_PAYLOAD_BYTES", "1.5"),
        ("MAX_PAYLOAD_BYTES", "0"),
        ("WORKER_CONCURRENCY", "-4"),
        ("WORKER_METRICS_PORT", "65536"),
        ("SHUTDOWN_GRACE_SECONDS", "-0.5"),
        ("SHUTDOWN_GRACE_SECONDS", "nan"),
        ("SQLITE_SWITCH_INTERVAL", "-0.001"),
        ("SQLITE_SWITCH_INTERVAL", "1"),
        ("SQLITE_SWITCH_INTERVAL", "nan"),
        ("WORKER_GC_THRESHOLD", "-1"),
        ("WORKER_GC_THRESHOLD", "many"),
        ("REDIS_REQUIRE_DURABILITY", "maybe"),
        ("LOG_FORMAT", "xml"),
        ("LOG_LEVEL", "loud"),
    ],
)
def test_a_bad_value_is_a_config_error_naming_the_variable(variable: str, raw: str) -> None:
    # Given one variable with a value of the wrong type or out of range
    # When settings are read
    # Then ConfigError names that variable
    with pytest.raises(ConfigError, match=variable):
        Settings.from_env({variable: raw})


def test_unknown_queue_type_lists_the_backends() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"QUEUE_TYPE": "zeromq"})
    assert all(name in str(caught.value) for name in BACKENDS)


def test_overrides_win_over_the_environment_and_none_means_not_given() -> None:
    # Given a port in the environment
    env = {"API_PORT": "9000", "QUEUE_TYPE": "memory"}

    # When one override is set and another is None (an option the user did not pass)
    settings = Settings.from_env(env, api_port=7000, queue_type=None)

    # Then the set override wins and the None one leaves the environment's value
    assert (settings.api_port, settings.queue_type) == (7000, "memory")


def test_overrides_are_validated_too() -> None:
    with pytest.raises(ConfigError, match="WORKER_CONCURRENCY"):
        Settings.from_env({}, worker_concurrency=0)


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(AttributeError):
        settings.api_port = 1  # type: ignore[misc]


def test_api_keys_never_appear_in_repr_or_str() -> None:
    # Given settings holding secret API keys
    settings = Settings.from_env({"API_KEYS": "s3cret-one,s3cret-two"})

    # When rendered for a log line or a traceback
    shown = [repr(settings), str(settings), f"{settings}", f"{settings!r}"]

    # Then the keys are not there, while the other settings are
    for text in shown:
        assert "s3cret" not in text
        assert "api_keys" not in text
        assert "api_port=8080" in text


def test_a_config_error_never_echoes_the_api_keys() -> None:
    # Given secret API keys next to an invalid port
    env = {"API_KEYS": "s3cret", "API_PORT": "nope"}

    # When settings are read
    with pytest.raises(ConfigError) as caught:
        Settings.from_env(env)

    # Then the error is about the port only
    assert "API_PORT" in str(caught.value)
    assert "s3cret" not in str(caught.value)
