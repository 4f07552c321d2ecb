"""Request and response bodies of the producer API (pydantic models, OpenAPI-documented).

Requests forbid unknown fields (a typo such as ``"payolad"`` is a 422, not a silently
dropped value) and are strict about types (``"priority": "5"`` is a 422). The topic name is
checked after the model (a bad name is a 400, see :func:`queuekit.message.validate_topic`).
"""

from __future__ import annotations

import base64
import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from queuekit import codec
from queuekit.broker import GroupStats, TopicStats
from queuekit.errors import InvalidMessage
from queuekit.message import MAX_PRIORITY, MIN_PRIORITY, DeadLetter

MAX_BATCH_MESSAGES = 1000
MAX_KEY_LENGTH = 1024
MAX_REPLAY_IDS = 10_000
RESERVED_HEADER_PREFIX = "x-dlq-"


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class SendRequest(_Request):
    """One message to publish."""

    topic: Annotated[str, Field(description="Where to publish; see the topic naming rules.")]
    payload: Annotated[Any, Field(description="Any JSON value; published as compact JSON.")]
    priority: Annotated[
        int,
        Field(ge=MIN_PRIORITY, le=MAX_PRIORITY, description="0 (default, lowest) to 9 (first)."),
    ] = MIN_PRIORITY
    delay: Annotated[
        float | None,
        Field(ge=0, description="Seconds to wait before the message may be delivered."),
    ] = None
    key: Annotated[
        str | None,
        Field(min_length=1, max_length=MAX_KEY_LENGTH, description="Partitioning/business key."),
    ] = None
    headers: Annotated[
        dict[str, str] | None,
        Field(description="String metadata; names starting with 'x-dlq-' are reserved."),
    ] = None

    @field_validator("delay")
    @classmethod
    def _finite_delay(cls, delay: float | None) -> float | None:
        if delay is not None and not math.isfinite(delay):
            raise ValueError("delay must be a finite number of seconds")
        return delay

    @field_validator("headers")
    @classmethod
    def _unreserved_headers(cls, headers: dict[str, str] | None) -> dict[str, str] | None:
        for name in headers or {}:
            if not name:
                raise ValueError("header names must not be empty")
            if name.lower().startswith(RESERVED_HEADER_PREFIX):
                raise ValueError(f"header {name!r}: names starting with 'x-dlq-' are reserved")
        return headers


class SendBatchRequest(_Request):
    """Messages to publish together: all are validated before any is published."""

    messages: Annotated[list[SendRequest], Field(min_length=1, max_length=MAX_BATCH_MESSAGES)]


class ReplayRequest(_Request):
    """Which dead letters to replay; no body (or no ``ids``) replays them all."""

    ids: Annotated[list[str] | None, Field(max_length=MAX_REPLAY_IDS)] = None


class SendResponse(BaseModel):
    """The id under which the message was published."""

    id: str
    topic: str


class SendBatchResponse(BaseModel):
    """The ids of the published messages, in request order."""

    ids: list[str]


class GroupStatsOut(BaseModel):
    """Counts for one consumer group."""

    group: str
    depth: int
    in_flight: int
    delayed: int
    lag: int
    consumers: int | None

    @classmethod
    def of(cls, stats: GroupStats) -> GroupStatsOut:
        return cls(
            group=stats.group,
            depth=stats.depth,
            in_flight=stats.in_flight,
            delayed=stats.delayed,
            lag=stats.lag,
            consumers=stats.consumers,
        )


class TopicStatsOut(BaseModel):
    """Counts for one topic: totals over its groups, per group, and dead letters."""

    topic: str
    depth: int
    in_flight: int
    delayed: int
    dead_letters: int
    has_handler: bool | None = Field(
        description="Whether the API's catalog has a handler for it (null without a catalog)."
    )
    groups: list[GroupStatsOut]

    @classmethod
    def of(cls, stats: TopicStats, *, has_handler: bool | None) -> TopicStatsOut:
        return cls(
            topic=stats.topic,
            depth=stats.depth,
            in_flight=stats.in_flight,
            delayed=sum(group.delayed for group in stats.groups),
            dead_letters=stats.dead_letters,
            has_handler=has_handler,
            groups=[GroupStatsOut.of(group) for group in stats.groups],
        )


class TopicListResponse(BaseModel):
    """Every known topic with its counts."""

    topics: list[TopicStatsOut]


class DeadLetterOut(BaseModel):
    """One dead letter. ``payload`` is the decoded JSON, or base64 if the body is not JSON."""

    id: str
    topic: str
    payload: Any
    payload_encoding: Literal["json", "base64"]
    headers: dict[str, str]
    key: str | None
    reason: str
    error: str | None
    group: str
    attempts: int
    dead_lettered_at: float

    @classmethod
    def of(cls, letter: DeadLetter) -> DeadLetterOut:
        message = letter.message
        encoding: Literal["json", "base64"] = "json"
        try:
            payload: Any = codec.decode(message.payload)
        except InvalidMessage:
            payload, encoding = base64.b64encode(message.payload).decode("ascii"), "base64"
        return cls(
            id=message.id,
            topic=letter.topic,
            payload=payload,
            payload_encoding=encoding,
            headers=dict(message.headers),
            key=message.key,
            reason=letter.reason,
            error=letter.error,
            group=letter.group,
            attempts=letter.attempts,
            dead_lettered_at=letter.dead_lettered_at,
        )


class DeadLetterListResponse(BaseModel):
    """The oldest dead letters of a topic, oldest first."""

    topic: str
    dead_letters: list[DeadLetterOut]


class ReplayResponse(BaseModel):
    """How many dead letters went back to their groups."""

    replayed: int


class PurgeResponse(BaseModel):
    """How many dead letters were deleted."""

    purged: int


class HealthResponse(BaseModel):
    """Liveness / readiness."""

    status: str
    backend: str
