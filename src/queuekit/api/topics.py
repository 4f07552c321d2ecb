"""Topic statistics and dead-letter operations (list, replay, purge), behind the API key.

A topic is *known* if the broker has seen it or the catalog handles it; other names are a
404, ill-formed names a 400. These routes need a backend implementing
:class:`~queuekit.broker.Admin` (all shipped backends do), else they answer 501.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from queuekit.api.body import parse_json, validate_body
from queuekit.api.context import ApiContext
from queuekit.api.openapi import problem_responses
from queuekit.api.problems import Problem
from queuekit.api.schemas import (
    DeadLetterListResponse,
    DeadLetterOut,
    PurgeResponse,
    ReplayRequest,
    ReplayResponse,
    TopicListResponse,
    TopicStatsOut,
)
from queuekit.errors import InvalidTopic
from queuekit.message import validate_topic

MAX_DEAD_LETTER_LIMIT = 1000

TopicName = Annotated[str, Path(description="The topic's name (not its '.dlq').")]


def topics_router(context: ApiContext) -> APIRouter:
    """The topic and dead-letter routes, bound to ``context``."""
    router = APIRouter(
        prefix="/topics",
        tags=["topics"],
        dependencies=[Depends(context.auth)],
        responses=problem_responses(401, 501, 503),
    )

    def has_handler(topic: str) -> bool | None:
        return None if context.catalog is None else topic in context.catalog.topics

    async def known(topic: str) -> str:
        try:
            validate_topic(topic)
        except InvalidTopic as exc:
            raise Problem(400, "invalid-topic", str(exc), title="Invalid topic") from None
        if topic not in await context.known_topics():
            raise Problem(404, "unknown-topic", f"no topic {topic!r}", title="Unknown topic")
        return topic

    @router.get("", response_model=TopicListResponse, summary="Every topic with its counts")
    async def list_topics() -> TopicListResponse:
        stats = await context.all_stats()
        return TopicListResponse(
            topics=[TopicStatsOut.of(s, has_handler=has_handler(s.topic)) for s in stats]
        )

    @router.get(
        "/{topic}",
        response_model=TopicStatsOut,
        summary="Depth, in flight, delayed, lag per group and dead letters of a topic",
        responses=problem_responses(400, 404),
    )
    async def topic_stats(topic: TopicName) -> TopicStatsOut:
        stats = await context.admin.topic_stats(await known(topic))
        return TopicStatsOut.of(stats, has_handler=has_handler(topic))

    @router.get(
        "/{topic}/dead-letters",
        response_model=DeadLetterListResponse,
        summary="The oldest dead letters of a topic",
        responses=problem_responses(400, 404, 422),
    )
    async def dead_letters(
        topic: TopicName,
        limit: Annotated[int, Query(ge=1, le=MAX_DEAD_LETTER_LIMIT)] = 100,
    ) -> DeadLetterListResponse:
        letters = await context.admin.dead_letters(await known(topic), limit)
        return DeadLetterListResponse(
            topic=topic, dead_letters=[DeadLetterOut.of(letter) for letter in letters]
        )

    @router.post(
        "/{topic}/dead-letters/replay",
        response_model=ReplayResponse,
        summary="Send dead letters (all, or those with ids) back to the group that failed them",
        responses=problem_responses(400, 404, 413, 415, 422),
        openapi_extra={
            "requestBody": {
                "required": False,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/ReplayRequest"}}
                },
            }
        },
    )
    async def replay(topic: TopicName, request: Request) -> ReplayResponse:
        document = parse_json(await request.body(), request.headers.get("content-type"), empty={})
        body = validate_body(ReplayRequest, document)
        replayed = await context.admin.replay_dead_letters(await known(topic), body.ids)
        return ReplayResponse(replayed=replayed)

    @router.delete(
        "/{topic}/dead-letters",
        response_model=PurgeResponse,
        summary="Delete every dead letter of a topic",
        responses=problem_responses(400, 404),
    )
    async def purge_dead_letters(topic: TopicName) -> PurgeResponse:
        purged = await context.admin.purge_dead_letters(await known(topic))
        return PurgeResponse(purged=purged)

    return router
