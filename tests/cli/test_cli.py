"""The ``queuekit`` command, run as a real process on an SQLite file.

Every failure a user can cause must end in one ``error: ...`` line on stderr, a non-zero exit
code and no traceback.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from queuekit.backends.sqlite import SqliteBroker
from queuekit.message import Message

from .conftest import Cli, assert_one_error_line

WAIT = 10.0


async def make_dead_letter(path: Path, topic: str, payload: object) -> Message:
    """Publish ``payload`` to ``topic``, consume it in group 'default' and dead-letter it."""
    message = Message.build(topic, payload, headers={"trace-id": "t-1"})
    async with SqliteBroker(path) as broker:
        await broker.publish([message])
        async with await broker.subscribe(topic) as subscription:
            delivery = await asyncio.wait_for(anext(subscription), WAIT)
            await delivery.dead_letter("rejected", error="ValueError: unknown sku")
    return message


# -- send ---------------------------------------------------------------------------------------


def test_send_prints_the_id_and_the_message_is_stored(cli: Cli) -> None:
    # Given an empty store
    # When a message is sent
    result = cli("send", "emails", '{"to": "ada@example.com"}')

    # Then the id is printed alone and the topic holds one ready message
    assert result.code == 0, result.output
    message_id = result.stdout.strip()
    assert len(message_id) == 32
    assert int(message_id, 16) >= 0
    assert result.stderr == ""
    (group,) = cli.stats()["emails"]["groups"]  # type: ignore[misc]
    assert (group["group"], group["depth"], group["delayed"]) == ("default", 1, 0)


def test_send_with_options_stores_a_delayed_message(cli: Cli) -> None:
    # Given options for priority, delay, key and headers
    # When sent
    result = cli(
        "send",
        "emails",
        "[1, 2]",
        "--priority",
        "9",
        "--delay",
        "3600",
        "--key",
        "k-1",
        "-H",
        "trace-id=abc",
        "--header",
        "tenant=acme",
    )

    # Then it is stored as delayed (not ready yet)
    assert result.code == 0, result.output
    (group,) = cli.stats()["emails"]["groups"]  # type: ignore[misc]
    assert (group["depth"], group["delayed"]) == (0, 1)


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["emails", "{bad json"], "payload is not valid JSON"),
        (["bad topic", "{}"], "invalid topic"),
        (["emails.dlq", "{}"], "reserved"),
        (["emails", "{}", "--priority", "12"], "priority must be from 0 to 9"),
        (["emails", "{}", "--priority", "-1"], "priority must be from 0 to 9"),
        (["emails", "{}", "--header", "no-equals-sign"], "--header must look like name=value"),
        (["emails", "{}", "--header", "=value"], "--header must look like name=value"),
        (["emails", "{}", "--header", "x-dlq-reason=forged"], "reserved"),
        (["emails", "{}", "--delay", "-5"], "delay"),
        (["emails", "{}", "--delay", "inf"], "delay"),
    ],
)
def test_send_with_bad_input_fails_with_one_clear_line(
    cli: Cli, args: list[str], complaint: str
) -> None:
    # Given bad input on the command line
    # When sending
    result = cli("send", *args)

    # Then one error line says what is wrong, exit code 1, and nothing was stored
    assert complaint in assert_one_error_line(result)
    assert result.stdout == ""
    assert "emails" not in cli.stats()


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        (["emails", "{}", "--priority", "high"], "Invalid value for '--priority'"),
        (["emails"], "Missing argument 'payload'"),
        (["emails", "{}", "--colour", "red"], "No such option: --colour"),
    ],
)
def test_a_malformed_command_line_is_one_line_with_exit_code_2(
    cli: Cli, args: list[str], complaint: str
) -> None:
    # Given a command line the parser cannot accept
    # When run
    result = cli("send", *args)

    # Then one error line (with a pointer to --help) and the usage exit code 2
    line = assert_one_error_line(result, code=2)
    assert complaint in line
    assert "queuekit send --help" in line


def test_an_unknown_command_is_one_line(cli: Cli) -> None:
    assert "No such command 'sned'" in assert_one_error_line(cli("sned"), code=2)


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize("command", [["send", "emails", "{}"], ["stats"], ["dlq", "list", "t"]])
def test_an_unknown_queue_type_names_queue_type(cli: Cli, command: list[str]) -> None:
    # Given QUEUE_TYPE=bogus / When any command runs / Then one line names QUEUE_TYPE
    line = assert_one_error_line(cli(*command, QUEUE_TYPE="bogus"))
    assert "QUEUE_TYPE='bogus'" in line


@pytest.mark.parametrize(
    ("variable", "value"), [("LOG_LEVEL", "loud"), ("VISIBILITY_TIMEOUT", "soon")]
)
def test_a_bad_variable_is_one_line_naming_it(cli: Cli, variable: str, value: str) -> None:
    assert variable in assert_one_error_line(cli("stats", **{variable: value}))


def test_the_queue_type_option_overrides_the_environment(cli: Cli) -> None:
    # Given QUEUE_TYPE=bogus in the environment / When --queue-type sqlite is passed
    result = cli("stats", "--json", "--queue-type", "sqlite", QUEUE_TYPE="bogus")

    # Then the option wins
    assert result.code == 0, result.output
    assert result.json() == []


# -- stats ----------------------------------------------------------------------------------------


def test_stats_shows_a_table_per_topic_and_group(cli: Cli) -> None:
    # Given two topics with messages
    assert cli("send", "emails", "{}").code == 0
    assert cli("send", "images", "{}").code == 0

    # When stats runs without --json
    result = cli("stats")

    # Then a table lists both with their counts
    assert result.code == 0, result.output
    lines = result.stdout.splitlines()
    assert any("topic" in line and "dead letters" in line for line in lines)
    rows = [line for line in lines if "emails" in line or "images" in line]
    assert len(rows) == 2
    assert all("default" in row and "1" in row for row in rows)


def test_stats_json_for_one_topic(cli: Cli) -> None:
    # Given two topics
    assert cli("send", "emails", "{}").code == 0
    assert cli("send", "images", "{}").code == 0

    # When stats --json asks for one
    result = cli("stats", "images", "--json")

    # Then only that topic is printed, as JSON
    assert result.code == 0, result.output
    assert result.json() == [
        {
            "topic": "images",
            "dead_letters": 0,
            "groups": [
                {
                    "group": "default",
                    "depth": 1,
                    "in_flight": 0,
                    "delayed": 0,
                    "lag": 1,
                    "consumers": 0,
                }
            ],
        }
    ]


def test_stats_of_an_empty_store_is_an_empty_list(cli: Cli) -> None:
    result = cli("stats", "--json")
    assert (result.code, result.json()) == (0, [])


# -- dead letters ---------------------------------------------------------------------------------


async def test_dlq_list_shows_a_real_dead_letter(cli: Cli) -> None:
    # Given a message that a consumer dead-lettered
    message = await make_dead_letter(cli.sqlite_path, "orders", {"sku": "nope"})

    # When dead letters are listed, as JSON and as a table
    as_json = cli("dlq", "list", "orders", "--json")
    as_table = cli("dlq", "list", "orders")

    # Then the letter is there with its reason, error, group and payload
    assert as_json.code == 0, as_json.output
    (row,) = as_json.json()  # type: ignore[misc]
    assert row == {
        "id": message.id,
        "group": "default",
        "reason": "rejected",
        "error": "ValueError: unknown sku",
        "attempts": 1,
        "payload": '{"sku":"nope"}',
    }
    assert as_table.code == 0, as_table.output
    assert message.id in as_table.stdout
    assert "rejected" in as_table.stdout
    assert cli.stats()["orders"]["dead_letters"] == 1


async def test_dlq_replay_sends_the_letter_back_to_its_group(cli: Cli) -> None:
    # Given a dead letter
    message = await make_dead_letter(cli.sqlite_path, "orders", {"sku": "later"})

    # When it is replayed by id
    result = cli("dlq", "replay", "orders", "--id", message.id)

    # Then it is ready again in its group and gone from the dead letters
    assert result.code == 0, result.output
    assert "replayed 1 dead letter(s) of orders" in result.stdout
    stats = cli.stats()["orders"]
    assert stats["dead_letters"] == 0
    (group,) = stats["groups"]  # type: ignore[misc]
    assert (group["group"], group["depth"]) == ("default", 1)


async def test_dlq_purge_with_yes_deletes_the_letters(cli: Cli) -> None:
    # Given a dead letter
    await make_dead_letter(cli.sqlite_path, "orders", {})

    # When purged with --yes
    result = cli("dlq", "purge", "orders", "--yes")

    # Then it is gone
    assert result.code == 0, result.output
    assert "purged 1 dead letter(s) of orders" in result.stdout
    assert cli.stats()["orders"]["dead_letters"] == 0


@pytest.mark.parametrize(("answer", "complaint"), [("", "aborted"), ("n\n", "not confirmed")])
async def test_dlq_purge_without_confirmation_purges_nothing(
    cli: Cli, answer: str, complaint: str
) -> None:
    # Given a dead letter
    await make_dead_letter(cli.sqlite_path, "orders", {})

    # When purge runs without --yes and stdin gives no answer, or "n"
    result = cli("dlq", "purge", "orders", stdin=answer)

    # Then it exits non-zero with one error line and the letter is still there
    assert complaint in assert_one_error_line(result)
    assert cli.stats()["orders"]["dead_letters"] == 1


async def test_dlq_purge_confirmed_on_stdin_deletes(cli: Cli) -> None:
    await make_dead_letter(cli.sqlite_path, "orders", {})
    result = cli("dlq", "purge", "orders", stdin="y\n")
    assert result.code == 0, result.output
    assert cli.stats()["orders"]["dead_letters"] == 0


# -- delete-topic ---------------------------------------------------------------------------


async def test_delete_topic_with_yes_deletes_it_and_nothing_else(cli: Cli) -> None:
    # Given a topic with a dead letter and a waiting message, and a second topic
    await make_dead_letter(cli.sqlite_path, "orders", {})
    assert cli("send", "orders", "{}").code == 0
    assert cli("send", "emails", "{}").code == 0

    # When "orders" is deleted with --yes
    result = cli("delete-topic", "orders", "--yes")

    # Then it is gone, and "emails" is untouched
    assert result.code == 0, result.output
    assert "deleted orders" in result.stdout
    stats = cli.stats()
    assert "orders" not in stats
    assert stats["emails"]["groups"][0]["depth"] == 1  # type: ignore[index]


async def test_delete_topic_without_confirmation_deletes_nothing(cli: Cli) -> None:
    # Given a topic with a waiting message
    assert cli("send", "orders", "{}").code == 0

    # When delete-topic runs without --yes and the answer is "n"
    result = cli("delete-topic", "orders", stdin="n\n")

    # Then it exits non-zero with one error line, and the topic is still there
    assert "not confirmed" in assert_one_error_line(result)
    assert cli.stats()["orders"]["groups"][0]["depth"] == 1  # type: ignore[index]


def test_dlq_list_of_an_invalid_topic_is_one_line(cli: Cli) -> None:
    assert "invalid topic" in assert_one_error_line(cli("dlq", "list", "no such topic"))


# -- worker ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "complaint"),
    [
        ("nope", "must look like 'package.module:app'"),
        ("no.such.module:app", "cannot import 'no.such.module'"),
        ("examples.email_worker:nothing", "is not a queuekit App"),
        ("examples.email_worker:log", "is not a queuekit App"),
        (":app", "must look like"),
    ],
)
def test_worker_with_a_bad_app_spec_fails_with_one_line(
    cli: Cli, spec: str, complaint: str
) -> None:
    # Given an app spec that does not lead to an App
    # When the worker starts
    result = cli("worker", spec, "--metrics-port", "0")

    # Then it stops at once with one line
    assert complaint in assert_one_error_line(result)


def test_worker_with_a_module_that_fails_at_import_is_one_line(cli: Cli, tmp_path: Path) -> None:
    # Given a module whose import raises
    (tmp_path / "broken_app.py").write_text("raise RuntimeError('config missing')\n")

    # When the worker is pointed at it
    result = cli("worker", "broken_app:app", PYTHONPATH=str(tmp_path))

    # Then one line says what failed
    line = assert_one_error_line(result)
    assert "importing 'broken_app' failed: RuntimeError: config missing" in line


# -- unreachable brokers --------------------------------------------------------------------------

UNREACHABLE = {
    "redis": {"QUEUE_TYPE": "redis", "REDIS_URL": "redis://127.0.0.1:1/0"},
    "rabbitmq": {"QUEUE_TYPE": "rabbitmq", "RABBITMQ_URL": "amqp://guest:guest@127.0.0.1:1/"},
    "kafka": {"QUEUE_TYPE": "kafka", "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1"},
}


@pytest.mark.parametrize("backend", sorted(UNREACHABLE))
@pytest.mark.parametrize("command", [["send", "emails", "{}"], ["stats"]])
def test_an_unreachable_broker_is_one_line_within_seconds(
    cli: Cli, backend: str, command: list[str]
) -> None:
    # Given a broker URL where nothing listens (port 1)
    started = time.monotonic()

    # When a one-shot command runs
    result = cli(*command, **UNREACHABLE[backend])

    # Then it fails fast with one line and no traceback
    assert_one_error_line(result)
    assert time.monotonic() - started < 10.0


# -- help -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["run"],
        ["api"],
        ["worker"],
        ["send"],
        ["stats"],
        ["dlq"],
        ["dlq", "list"],
        ["dlq", "replay"],
        ["dlq", "purge"],
    ],
)
def test_help_works_for_every_command(cli: Cli, command: list[str]) -> None:
    # Given any command / When asked for --help / Then it prints its usage and exits 0
    result = cli(*command, "--help")
    assert result.code == 0, result.output
    assert "Usage: queuekit" in result.stdout
    assert result.stderr == ""


def test_no_command_prints_the_usage(cli: Cli) -> None:
    result = cli()
    assert result.code == 2
    assert "Usage: queuekit" in result.stdout
    assert "send" in result.stdout
    assert "Traceback" not in result.output
