"""Concurrent sends are not serialized by the API: the broker batches them (group commit)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from api.support import api_client, wait_until
from queuekit.backends.memory import MemoryBroker
from queuekit.batching import GroupCommitter
from queuekit.message import Message

CONCURRENT_SENDS = 50


class GroupCommitMemoryBroker(MemoryBroker):
    """A MemoryBroker writing through a group commit, as networked backends do.

    Records the size of every batch written; writes wait for ``round_trip`` (a slow
    broker), so that the publishes arriving meanwhile queue up behind the first.
    """

    def __init__(self) -> None:
        super().__init__()
        self.submitted = 0
        self.batches: list[int] = []
        self.round_trip = asyncio.Event()
        self._committer = GroupCommitter(self._write)

    async def publish(self, messages: Sequence[Message]) -> None:
        self.check_connected()
        self.submitted += len(messages)
        await self._committer.submit(messages)

    async def _write(self, batch: Sequence[Message]) -> None:
        self.batches.append(len(batch))
        await self.round_trip.wait()
        await super().publish(batch)


async def test_concurrent_posts_reach_the_broker_together_and_are_batched() -> None:
    # Given a broker whose first write is slow
    broker = GroupCommitMemoryBroker()
    async with api_client(broker, manage_broker=True) as client:
        # When 50 sends are posted concurrently
        posts = [
            asyncio.create_task(client.post("/send", json={"topic": "load", "payload": n}))
            for n in range(CONCURRENT_SENDS)
        ]

        # Then all 50 reach the broker while the first write is still in flight (no lock)
        await wait_until(lambda: broker.submitted == CONCURRENT_SENDS)
        broker.round_trip.set()
        responses = await asyncio.gather(*posts)

        # And they were written in at most two round trips: the first write, then all the
        # publishes that queued up behind it
        assert [r.status_code for r in responses] == [202] * CONCURRENT_SENDS
        assert sum(broker.batches) == CONCURRENT_SENDS
        assert len(broker.batches) <= 2
        assert len({r.json()["id"] for r in responses}) == CONCURRENT_SENDS
        [group] = (await broker.topic_stats("load")).groups
        assert group.depth == CONCURRENT_SENDS
