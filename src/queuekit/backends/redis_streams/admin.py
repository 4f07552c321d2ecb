"""Operations on a topic's keys: stats, purge, trimming and dead letters."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from redis.asyncio import Redis

from queuekit.backends.redis_streams import entries
from queuekit.backends.redis_streams.connection import execute
from queuekit.backends.redis_streams.keys import TOPICS_KEY, TopicKeys
from queuekit.backends.redis_streams.scripts import Scripts, run
from queuekit.broker import GroupStats, TopicStats
from queuekit.message import DEFAULT_GROUP, DeadLetter, dlq_topic, parse_dead_letter

# Dead letters read per round trip when scanning the dead-letter stream.
DLQ_PAGE = 500


async def list_topics(client: Redis) -> list[str]:
    return sorted(_text(member) for member in await client.smembers(TOPICS_KEY))


async def delete_topic(client: Redis, topic: str) -> int:
    """Delete every key of ``topic`` and its entry in the topic index; return how many keys.

    A topic's keys all start with its hash-tagged base (``queuekit:{T}``), and a valid topic
    name has no glob characters, so one SCAN pattern finds exactly them.
    """
    keys = [key async for key in client.scan_iter(match=TopicKeys(topic).base + "*", count=1000)]
    deleted = 0
    for start in range(0, len(keys), 1000):
        deleted += await client.delete(*keys[start : start + 1000])
    await client.srem(TOPICS_KEY, topic)
    return deleted


async def group_names(client: Redis, keys: TopicKeys) -> list[str]:
    """The topic's registered groups, sorted."""
    return sorted(_text(member) for member in await client.smembers(keys.groups))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _group_keys(keys: TopicKeys, groups: Sequence[str]) -> list[str]:
    return [key for group in groups for key in (keys.retry(group), keys.group_delayed(group))]


async def topic_stats(client: Redis, scripts: Scripts, topic: str) -> TopicStats:
    """Counts per group from XINFO GROUPS (lag, pending) and the delayed sets.

    A topic nobody subscribed to yet reports the default group, which would receive it all.
    """
    keys = TopicKeys(topic)
    registered = await group_names(client, keys)
    groups = registered or [DEFAULT_GROUP]
    reply = await run(
        scripts.stats,
        [*keys.lanes, keys.delayed, keys.dlq, *_group_keys(keys, groups)],
        groups,
    )
    stats: list[GroupStats] = []
    for position, group in enumerate(groups):
        depth, in_flight, delayed, consumers = (
            int(v) for v in reply[1 + 4 * position : 5 + 4 * position]
        )
        stats.append(
            GroupStats(
                group=group,
                depth=depth,
                in_flight=in_flight,
                delayed=delayed,
                lag=depth + in_flight + delayed,
                consumers=consumers,
            )
        )
    if not registered and not (stats[0].depth or stats[0].delayed):
        stats = []
    return TopicStats(topic, tuple(stats), int(reply[0]))


async def trim(client: Redis, scripts: Scripts, topic: str, *, consumer_idle_ms: int) -> int:
    """Delete lane entries every group acknowledged; forget long-idle empty consumers."""
    keys = TopicKeys(topic)
    return int(await run(scripts.trim, list(keys.lanes), [consumer_idle_ms]))


async def purge(client: Redis, scripts: Scripts, topic: str, *, consumer_idle_ms: int) -> int:
    """Drop what waits (ready, delayed, due retries) in every group; count per group."""
    keys = TopicKeys(topic)
    groups = await group_names(client, keys)
    dropped = int(
        await run(
            scripts.purge,
            [*keys.lanes, keys.delayed, *_group_keys(keys, groups)],
            groups,
        )
    )
    await trim(client, scripts, topic, consumer_idle_ms=consumer_idle_ms)
    return dropped


async def _dlq_page(client: Redis, keys: TopicKeys, start: bytes, count: int) -> list[Any]:
    page: list[Any] = await execute(client, "XRANGE", keys.dlq, start, "+", "COUNT", count)
    return page


def _letter(topic: str, entry_id: bytes, fields: Sequence[bytes]) -> DeadLetter:
    stream = TopicKeys(topic).dlq
    message = entries.decode(dlq_topic(topic), stream, entry_id, fields, priority=0, deliveries=1)
    return parse_dead_letter(message)


async def dead_letters(client: Redis, topic: str, limit: int) -> list[DeadLetter]:
    if limit == 0:
        return []
    page = await _dlq_page(client, TopicKeys(topic), b"-", limit)
    return [_letter(topic, entry_id, fields) for entry_id, fields in page]


async def replay_dead_letters(client: Redis, topic: str, ids: Sequence[str] | None) -> int:
    """Move dead letters (all, or those with message ``ids``) to their group's retry stream.

    Each page moves in one MULTI/EXEC: the XADD to the retry stream and the XDEL from the
    dead-letter stream happen together.
    """
    keys = TopicKeys(topic)
    wanted = None if ids is None else set(ids)
    replayed = 0
    start = b"-"
    while True:
        page = await _dlq_page(client, keys, start, DLQ_PAGE)
        if not page:
            return replayed
        pipe = client.pipeline(transaction=True)
        moved = 0
        for entry_id, fields in page:
            letter = _letter(topic, entry_id, fields)
            if wanted is not None and letter.message.id not in wanted:
                continue
            message = replace(letter.message, not_before=None)
            pipe.execute_command("XADD", keys.retry(letter.group), "*", *entries.encode(message))
            pipe.execute_command("XDEL", keys.dlq, entry_id)
            moved += 1
        if moved:
            await pipe.execute()
        replayed += moved
        if len(page) < DLQ_PAGE:
            return replayed
        start = b"(" + page[-1][0]


async def purge_dead_letters(scripts: Scripts, topic: str) -> int:
    return int(await run(scripts.purge_dead_letters, [TopicKeys(topic).dlq], []))
