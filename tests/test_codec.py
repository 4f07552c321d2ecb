"""The codec: JSON values <-> bytes with orjson, with clear errors both ways."""

from __future__ import annotations

import datetime
import uuid
from typing import Any

import pytest
from pydantic import BaseModel

from queuekit import codec
from queuekit.errors import InvalidMessage


@pytest.mark.parametrize(
    "value",
    [{"a": 1}, [1, "two", 3.5], "text", 42, 2.5, True, False, None, {"nested": {"x": [{}]}}],
)
def test_json_values_round_trip(value: Any) -> None:
    # Given a JSON value / When encoded and decoded / Then it comes back equal
    assert codec.decode(codec.encode(value)) == value


def test_encoding_is_compact_utf8() -> None:
    # Given text outside ASCII / When encoded / Then it is raw UTF-8 without spaces
    assert codec.encode({"name": "Zoë", "n": [1, 2]}) == '{"name":"Zoë","n":[1,2]}'.encode()


def test_a_pydantic_dump_encodes() -> None:
    # Given a model dumped in JSON mode
    class Email(BaseModel):
        to: str
        sent: datetime.datetime

    dumped = Email(to="a@b.c", sent=datetime.datetime(2024, 1, 2, 3, 4, 5)).model_dump(mode="json")

    # When encoded / Then it is its JSON
    assert codec.decode(codec.encode(dumped)) == {"to": "a@b.c", "sent": "2024-01-02T03:04:05"}


@pytest.mark.parametrize(
    "value", [object(), {1, 2}, b"bytes", {"k": object()}, complex(1, 2), 2**70]
)
def test_non_serializable_values_raise_invalid_message(value: Any) -> None:
    with pytest.raises(InvalidMessage, match="not JSON-serializable"):
        codec.encode(value)


def test_non_string_keys_raise_invalid_message() -> None:
    with pytest.raises(InvalidMessage, match="not JSON-serializable"):
        codec.encode({1: "one"})


def test_orjson_native_types_are_encoded_as_strings() -> None:
    # Given a UUID (orjson serializes it natively) / When encoded / Then it is its string form
    value = uuid.UUID(int=1)
    assert codec.decode(codec.encode({"id": value})) == {"id": str(value)}


@pytest.mark.parametrize(
    "body", [b"", b"{", b"{'single': 1}", b"\xff\xfe", b"NaN", b"[1,]", b"{} trailing"]
)
def test_undecodable_bodies_raise_invalid_message(body: bytes) -> None:
    with pytest.raises(InvalidMessage, match="not valid JSON"):
        codec.decode(body)


def test_decode_errors_are_value_errors_too() -> None:
    # Given code that handles ValueError / Then it also catches codec failures
    with pytest.raises(ValueError, match="not valid JSON"):
        codec.decode(b"nope")
