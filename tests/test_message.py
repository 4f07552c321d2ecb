"""Message: validation at build time, immutability, and the dead-letter header round trip."""

from __future__ import annotations

import dataclasses
import math
import os
import pickle
import time
import tracemalloc
from typing import Any

import pytest

from queuekit.errors import InvalidMessage, InvalidTopic
from queuekit.message import (
    DLQ_AT,
    DLQ_ATTEMPTS,
    DLQ_ERROR,
    DLQ_GROUP,
    DLQ_REASON,
    DLQ_TOPIC,
    MAX_TOPIC_LENGTH,
    Message,
    dead_letter_headers,
    dlq_topic,
    new_message_id,
    parse_dead_letter,
    validate_group,
)

# -- topics ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "topic", ["orders", "a", "Orders-2024", "billing.invoices", "x_y-z.1", "7up", "a" * 120]
)
def test_valid_topic_names_are_accepted(topic: str) -> None:
    # Given a name made of letters, digits, '.', '_' and '-' starting with a letter or digit
    # When a message is built for it
    message = Message.build(topic, {})

    # Then the message carries that topic
    assert message.topic == topic


@pytest.mark.parametrize(
    ("topic", "complaint"),
    [
        ("", "non-empty"),
        ("a" * (MAX_TOPIC_LENGTH + 1), "longer than 120"),
        ("has space", "invalid topic"),
        ("-leading-dash", "invalid topic"),
        (".hidden", "invalid topic"),
        ("slash/topic", "invalid topic"),
        ("colon:topic", "invalid topic"),
        ("ünïcode", "invalid topic"),
        ("orders\n", "invalid topic"),
        ("orders.dlq", "reserved"),
    ],
)
def test_invalid_topic_names_are_rejected_with_the_reason(topic: str, complaint: str) -> None:
    # Given an ill-formed topic name
    # When a message is built for it
    # Then InvalidTopic says what is wrong
    with pytest.raises(InvalidTopic, match=complaint):
        Message.build(topic, {})


def test_a_non_string_topic_is_rejected() -> None:
    # Given a topic that is not a string / When building / Then InvalidTopic
    with pytest.raises(InvalidTopic):
        Message.build(42, {})  # type: ignore[arg-type]


def test_invalid_topic_is_also_a_value_error() -> None:
    # Given code that catches ValueError around input handling
    # When the topic is bad / Then the error is a ValueError too
    with pytest.raises(ValueError, match="reserved"):
        Message.build("x.dlq", {})


@pytest.mark.parametrize("group", ["default", "billing-workers", "g.1"])
def test_valid_group_names_are_accepted(group: str) -> None:
    assert validate_group(group) == group


@pytest.mark.parametrize("group", ["", "a" * 101, "bad group", "_x", "g\n"])
def test_invalid_group_names_are_rejected(group: str) -> None:
    with pytest.raises(InvalidTopic):
        validate_group(group)


def test_dlq_topic_appends_the_suffix() -> None:
    assert dlq_topic("orders") == "orders.dlq"


# -- priority ---------------------------------------------------------------------------------


@pytest.mark.parametrize("priority", [0, 5, 9])
def test_priorities_0_to_9_are_accepted(priority: int) -> None:
    assert Message.build("t", {}, priority=priority).priority == priority


@pytest.mark.parametrize("priority", [-1, 10, 100])
def test_priorities_out_of_range_are_rejected(priority: int) -> None:
    with pytest.raises(InvalidMessage, match="from 0 to 9"):
        Message.build("t", {}, priority=priority)


@pytest.mark.parametrize("priority", [True, False, 1.0, "3", None])
def test_non_integer_priorities_are_rejected_bool_included(priority: Any) -> None:
    # Given a priority that is not a plain int (a bool is an int to Python, not to us)
    # When building / Then InvalidMessage
    with pytest.raises(InvalidMessage, match="integer"):
        Message.build("t", {}, priority=priority)


# -- delay --------------------------------------------------------------------------------------


def test_a_delay_sets_not_before_relative_to_now() -> None:
    # Given a delay of 30 seconds
    before = time.time()

    # When building
    message = Message.build("t", {}, delay=30)

    # Then not_before is 30 s after the creation time
    assert message.not_before is not None
    assert message.not_before == pytest.approx(message.created_at + 30)
    assert before <= message.created_at <= time.time()


@pytest.mark.parametrize("delay", [None, 0, 0.0])
def test_no_delay_or_zero_delay_means_deliverable_now(delay: float | None) -> None:
    assert Message.build("t", {}, delay=delay).not_before is None


@pytest.mark.parametrize("delay", [-1, -0.001, math.nan, math.inf, -math.inf, 10**400, True, "5"])
def test_negative_non_finite_and_non_numeric_delays_are_rejected(delay: Any) -> None:
    # Given a delay that cannot be a point in the future
    # When building / Then InvalidMessage (a NaN or infinite delay would never deliver)
    with pytest.raises(InvalidMessage, match="delay"):
        Message.build("t", {}, delay=delay)


# -- headers, key and id ------------------------------------------------------------------------


def test_headers_are_copied_into_a_plain_dict() -> None:
    # Given a caller's header mapping
    given = {"trace-id": "abc"}

    # When building and then mutating the caller's mapping
    message = Message.build("t", {}, headers=given)
    given["trace-id"] = "changed"

    # Then the message kept its own copy
    assert dict(message.headers) == {"trace-id": "abc"}


@pytest.mark.parametrize(
    "headers",
    [{"n": 1}, {"n": None}, {"": "v"}, {1: "v"}, {"n": b"bytes"}],
)
def test_headers_must_map_non_empty_strings_to_strings(headers: dict[Any, Any]) -> None:
    with pytest.raises(InvalidMessage, match="headers"):
        Message.build("t", {}, headers=headers)


@pytest.mark.parametrize("name", ["x-dlq-reason", "X-DLQ-anything"])
def test_dead_letter_header_names_are_reserved(name: str) -> None:
    # Given a producer that sets an x-dlq-* header itself
    # When building / Then InvalidMessage (those headers describe dead-lettering only)
    with pytest.raises(InvalidMessage, match="reserved"):
        Message.build("t", {}, headers={name: "v"})


def test_a_non_string_key_is_rejected() -> None:
    with pytest.raises(InvalidMessage, match="key"):
        Message.build("t", {}, key=42)  # type: ignore[arg-type]


@pytest.mark.parametrize("message_id", ["", 7])
def test_an_empty_or_non_string_message_id_is_rejected(message_id: Any) -> None:
    with pytest.raises(InvalidMessage, match="message_id"):
        Message.build("t", {}, message_id=message_id)


def test_a_given_message_id_and_key_are_kept() -> None:
    message = Message.build("t", {}, message_id="order-7", key="customer-1")
    assert (message.id, message.key) == ("order-7", "customer-1")


def test_generated_ids_are_unique_hex() -> None:
    # Given many fresh ids / Then all differ and are 32 hex characters
    ids = {new_message_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_a_forked_child_does_not_reuse_its_parents_ids() -> None:
    # Given a process that has ids to spare (they are read from the OS in bulk)
    new_message_id()
    reader, writer = os.pipe()

    # When it forks and the child and the parent each take ids
    child = os.fork()
    if child == 0:  # the child: report its ids and leave at once
        os.write(writer, " ".join(new_message_id() for _ in range(10)).encode())
        os._exit(0)
    os.close(writer)
    parent_ids = {new_message_id() for _ in range(10)}
    with os.fdopen(reader) as pipe:
        child_ids = set(pipe.read().split())
    os.waitpid(child, 0)

    # Then no id was handed out twice
    assert len(child_ids) == 10
    assert parent_ids.isdisjoint(child_ids)


# -- payload and immutability -------------------------------------------------------------------


def test_the_payload_is_json_bytes_and_decodes_back() -> None:
    # Given a JSON value / When building / Then the payload is its JSON encoding
    message = Message.build("t", {"to": "ada@example.com", "n": [1, 2.5, None, True]})
    assert message.payload == b'{"to":"ada@example.com","n":[1,2.5,null,true]}'
    assert message.json() == {"to": "ada@example.com", "n": [1, 2.5, None, True]}


def test_a_built_payload_takes_about_its_own_size_in_memory() -> None:
    # Given payloads of about 1 KiB
    body = {"data": "x" * 1000}
    tracemalloc.start()
    try:
        # When 200 messages are built and kept
        before = tracemalloc.get_traced_memory()[0]
        messages = [Message.build("t", body) for _ in range(200)]
        kept = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()

    # Then each holds little more than its payload (not the encoder's 8 KiB buffer)
    assert len(messages[0].payload) == 1011
    assert kept / len(messages) < 2048


def test_a_non_json_payload_is_rejected() -> None:
    with pytest.raises(InvalidMessage, match="JSON-serializable"):
        Message.build("t", {"when": object()})


def test_a_message_is_immutable_and_with_attempt_copies() -> None:
    # Given a built message
    message = Message.build("t", {})

    # When the attempt is changed
    second = message.with_attempt(2)

    # Then the original is untouched and cannot be mutated
    assert (message.attempt, second.attempt) == (1, 2)
    assert second.id == message.id
    with pytest.raises(AttributeError):
        message.attempt = 3  # type: ignore[misc]


def test_restore_sets_every_field_like_the_dataclass_constructor() -> None:
    # Given a value for every field of a message
    values: dict[str, Any] = {
        "topic": "orders",
        "payload": b'{"n":1}',
        "id": "id-1",
        "headers": {"trace-id": "t-1"},
        "key": "k",
        "priority": 7,
        "not_before": 123.5,
        "attempt": 3,
        "created_at": 100.25,
    }
    assert set(values) == {f.name for f in dataclasses.fields(Message)}

    # When a backend restores a message from them (the fast path)
    restored = Message.restore(**values)

    # Then it is a Message equal to the one the dataclass constructor builds, just as
    # immutable, and it pickles
    built = Message(**values)
    assert type(restored) is Message
    assert restored == built
    assert pickle.loads(pickle.dumps(restored)) == built
    with pytest.raises(AttributeError):
        restored.topic = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        object.__setattr__(restored, "unknown", 1)


def test_with_attempt_keeps_every_other_field() -> None:
    # Given a message with every optional field set
    message = Message.build(
        "orders", {"n": 1}, headers={"h": "v"}, key="k", priority=4, delay=60, message_id="m"
    )

    # When only its attempt changes
    copy = message.with_attempt(5)

    # Then the copy is the message with that attempt
    assert copy == dataclasses.replace(message, attempt=5)


# -- dead-letter headers ------------------------------------------------------------------------


def test_dead_letter_headers_round_trip_to_the_original_message() -> None:
    # Given a message with its own headers, delivered for the 4th time
    original = Message.build("orders", {"n": 1}, headers={"trace-id": "t-1"}, key="k")
    delivered = original.with_attempt(4)

    # When it is dead-lettered into orders.dlq and read back
    before = time.time()
    headers = dead_letter_headers(
        delivered, reason="max_attempts", error="ValueError: boom", group="billing", attempts=4
    )
    stored = Message(
        topic=dlq_topic("orders"),
        payload=delivered.payload,
        id=delivered.id,
        headers=headers,
        key=delivered.key,
        attempt=delivered.attempt,
    )
    letter = parse_dead_letter(stored)

    # Then every fact survives and the message is the original again
    assert (letter.reason, letter.error, letter.group, letter.attempts) == (
        "max_attempts",
        "ValueError: boom",
        "billing",
        4,
    )
    assert before <= letter.dead_lettered_at <= time.time()
    assert letter.topic == "orders"
    assert letter.message.topic == "orders"
    assert dict(letter.message.headers) == {"trace-id": "t-1"}
    assert letter.message.attempt == 1
    assert (letter.message.id, letter.message.payload, letter.message.key) == (
        original.id,
        original.payload,
        "k",
    )


def test_dead_letter_headers_describe_everything_and_truncate_long_errors() -> None:
    # Given a huge error text
    message = Message.build("orders", {})

    # When dead-letter headers are made
    headers = dead_letter_headers(message, reason="r", error="x" * 5000, group="g", attempts=1)

    # Then all x-dlq-* headers are there and the error is capped
    assert {DLQ_REASON, DLQ_ERROR, DLQ_GROUP, DLQ_ATTEMPTS, DLQ_AT, DLQ_TOPIC} <= set(headers)
    assert len(headers[DLQ_ERROR]) == 2000
    assert headers[DLQ_TOPIC] == "orders"


def test_dead_letter_without_error_has_no_error_header() -> None:
    headers = dead_letter_headers(
        Message.build("orders", {}), reason="rejected", error=None, group="g", attempts=1
    )
    assert DLQ_ERROR not in headers
    assert parse_dead_letter(Message("orders.dlq", b"{}", headers=headers)).error is None


def test_a_dead_letter_written_by_another_client_parses_with_defaults() -> None:
    # Given a message in orders.dlq with no x-dlq-* headers, or malformed ones
    bare = Message("orders.dlq", b"{}")
    garbled = Message("orders.dlq", b"{}", headers={DLQ_ATTEMPTS: "three", DLQ_AT: "nan"})

    # When parsed
    letters = [parse_dead_letter(bare), parse_dead_letter(garbled)]

    # Then the topic comes from the queue name and the unknowns have defaults
    for letter in letters:
        assert letter.topic == "orders"
        assert (letter.reason, letter.group, letter.attempts) == ("unknown", "default", 0)
        assert letter.dead_lettered_at == 0.0
