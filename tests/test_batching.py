"""GroupCommitter: concurrent submits become few flushes; each waiter gets its batch's outcome."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from queuekit.batching import GroupCommitter, WriteBehind

WAIT = 5.0


class Store:
    """A real sink for batches: records each flush, can hold one open, fails chosen calls."""

    def __init__(self, failures: dict[int, Exception] | None = None) -> None:
        self.batches: list[list[int]] = []
        self.gate: asyncio.Event | None = None
        self.entered = asyncio.Event()
        self.failures = failures or {}  # flush call number (0-based) -> error it raises
        self.calls = 0
        self.active = 0
        self.max_active = 0

    async def flush(self, items: Sequence[int]) -> None:
        call, self.calls = self.calls, self.calls + 1
        self.active += 1
        self.max_active = max(self.max_active, self.active)
        try:
            self.entered.set()
            if self.gate is not None:
                gate, self.gate = self.gate, None
                await gate.wait()
            if call in self.failures:
                raise self.failures[call]
            self.batches.append(list(items))
        finally:
            self.active -= 1

    def hold_next_flush(self) -> asyncio.Event:
        """Make the next flush wait until the returned event is set."""
        self.gate = asyncio.Event()
        self.entered.clear()
        return self.gate


async def submit_while_blocked(
    committer: GroupCommitter[int], store: Store, chunks: Sequence[Sequence[int]]
) -> tuple[asyncio.Task[None], list[asyncio.Task[None]], asyncio.Event]:
    """Start a first submit whose flush is held open, then queue ``chunks`` behind it."""
    gate = store.hold_next_flush()
    first = asyncio.create_task(committer.submit([0]))
    await asyncio.wait_for(store.entered.wait(), WAIT)
    # No yield needed: the loop runs callbacks in the order they were scheduled, so these
    # tasks register their items before the held flush can resume after the gate opens.
    queued = [asyncio.create_task(committer.submit(chunk)) for chunk in chunks]
    return first, queued, gate


async def test_a_lone_submit_is_flushed_at_once() -> None:
    # Given an idle committer
    store = Store()
    committer = GroupCommitter(store.flush)

    # When one call submits items
    await asyncio.wait_for(committer.submit([1, 2, 3]), WAIT)

    # Then they were flushed in one call before submit returned
    assert store.batches == [[1, 2, 3]]


async def test_concurrent_submits_during_a_flush_share_the_next_flush() -> None:
    # Given a flush in progress and 50 single submits queued behind it
    store = Store()
    committer = GroupCommitter(store.flush)
    first, queued, gate = await submit_while_blocked(committer, store, [[n] for n in range(1, 51)])

    # When the flush in progress completes
    gate.set()
    await asyncio.wait_for(asyncio.gather(first, *queued), WAIT)

    # Then the 50 waiting submits were written in ONE more flush, in submission order
    assert store.batches == [[0], list(range(1, 51))]
    assert store.max_active == 1


async def test_a_failed_flush_fails_every_waiter_of_its_batch_and_not_the_next() -> None:
    # Given a second flush that will fail, and three submits queued for it
    failing = RuntimeError("disk full")
    store = Store(failures={1: failing})
    committer = GroupCommitter(store.flush)
    first, queued, gate = await submit_while_blocked(committer, store, [[1], [2], [3]])

    # When the flushes run, and another submit follows
    gate.set()
    await asyncio.wait_for(first, WAIT)
    results = await asyncio.wait_for(asyncio.gather(*queued, return_exceptions=True), WAIT)
    await asyncio.wait_for(committer.submit([4]), WAIT)

    # Then each of the three got that very error, and the next submit succeeded
    assert results == [failing, failing, failing]
    assert store.batches == [[0], [4]]


async def test_the_error_of_one_batch_does_not_reach_a_batch_queued_behind_it() -> None:
    # Given a first flush that will fail, held open, and a submit queued behind it
    store = Store(failures={0: ValueError("rejected")})
    committer = GroupCommitter(store.flush)
    first, queued, gate = await submit_while_blocked(committer, store, [[1]])

    # When the failing flush completes
    gate.set()

    # Then its waiter sees the error and the queued submit is flushed fine
    with pytest.raises(ValueError, match="rejected"):
        await asyncio.wait_for(first, WAIT)
    await asyncio.wait_for(queued[0], WAIT)
    assert store.batches == [[1]]


async def test_batches_hold_at_most_max_batch_items_of_whole_submits() -> None:
    # Given max_batch=3 and seven single submits plus one pair queued behind a flush
    store = Store()
    committer = GroupCommitter(store.flush, max_batch=3)
    chunks = [[1], [2], [3], [4], [5, 6], [7], [8]]
    first, queued, gate = await submit_while_blocked(committer, store, chunks)

    # When everything is flushed
    gate.set()
    await asyncio.wait_for(asyncio.gather(first, *queued), WAIT)

    # Then no batch holds more than 3 items and no submit was split
    assert store.batches == [[0], [1, 2, 3], [4, 5, 6], [7, 8]]


async def test_a_submit_larger_than_max_batch_is_flushed_alone_unsplit() -> None:
    # Given max_batch=2, a big submit queued between two small ones
    store = Store()
    committer = GroupCommitter(store.flush, max_batch=2)
    first, queued, gate = await submit_while_blocked(committer, store, [[1], [2, 3, 4, 5], [6]])

    # When flushed
    gate.set()
    await asyncio.wait_for(asyncio.gather(first, *queued), WAIT)

    # Then the big one went in a flush of its own, whole
    assert store.batches == [[0], [1], [2, 3, 4, 5], [6]]


async def test_drain_waits_for_everything_submitted() -> None:
    # Given submits started but not awaited, behind a held flush
    store = Store()
    committer = GroupCommitter(store.flush)
    first, queued, gate = await submit_while_blocked(committer, store, [[1], [2]])

    # When drain is awaited and the flush is released
    async def batches_when_drained() -> list[list[int]]:
        await committer.drain()
        return list(store.batches)

    draining = asyncio.create_task(batches_when_drained())
    gate.set()

    # Then every item was flushed by the time drain returned
    assert await asyncio.wait_for(draining, WAIT) == [[0], [1, 2]]
    await asyncio.gather(first, *queued)


async def test_drain_of_an_idle_committer_returns_at_once() -> None:
    committer = GroupCommitter(Store().flush)
    await asyncio.wait_for(committer.drain(), WAIT)


async def test_an_empty_submit_flushes_nothing() -> None:
    store = Store()
    committer = GroupCommitter(store.flush)
    await committer.submit([])
    assert store.batches == []


async def test_a_cancelled_waiter_does_not_disturb_the_others_of_its_batch() -> None:
    # Given two submits queued behind a held flush
    store = Store()
    committer = GroupCommitter(store.flush)
    first, (doomed, kept), gate = await submit_while_blocked(committer, store, [[1], [2]])

    # When one waiter is cancelled before its batch is flushed
    doomed.cancel()
    gate.set()

    # Then the other still completes normally
    await asyncio.wait_for(asyncio.gather(first, kept), WAIT)
    assert doomed.cancelled()
    assert store.batches == [[0], [2]]  # cancelled before it queued anything


@pytest.mark.parametrize("max_batch", [0, -1, True])
def test_max_batch_must_be_a_positive_integer(max_batch: int) -> None:
    with pytest.raises(ValueError, match="max_batch"):
        GroupCommitter(Store().flush, max_batch=max_batch)


# -- WriteBehind: add returns at once, batches are written from one background task -----------


class Failures:
    """What a WriteBehind handed to its on_error callback."""

    def __init__(self) -> None:
        self.seen: list[tuple[list[int], str]] = []

    def __call__(self, items: Sequence[int], error: Exception) -> None:
        self.seen.append((list(items), str(error)))


async def test_items_added_while_a_write_runs_form_the_next_batch() -> None:
    # Given a write-behind whose first write is held open
    store = Store()
    behind = WriteBehind(store.flush, Failures(), max_batch=3)
    gate = store.hold_next_flush()
    behind.add(0)
    await asyncio.wait_for(store.entered.wait(), WAIT)

    # When five more items are added (each add returns at once) and the write completes
    for item in range(1, 6):
        behind.add(item)
    gate.set()
    await asyncio.wait_for(behind.drain(), WAIT)

    # Then they were written behind it in batches of at most 3, in order, one at a time
    assert store.batches == [[0], [1, 2, 3], [4, 5]]
    assert store.max_active == 1


async def test_a_failed_write_goes_to_on_error_and_later_items_are_still_written() -> None:
    # Given a write-behind whose first write fails
    store = Store(failures={0: OSError("disk full")})
    failures = Failures()
    behind = WriteBehind(store.flush, failures)

    # When an item is added, then another once the first was handled
    behind.add(1)
    await asyncio.wait_for(behind.drain(), WAIT)
    behind.add(2)
    await asyncio.wait_for(behind.drain(), WAIT)

    # Then the failed batch reached on_error with its error, and the next one was written
    assert failures.seen == [([1], "disk full")]
    assert store.batches == [[2]]


async def test_drain_of_an_idle_write_behind_returns_at_once() -> None:
    behind = WriteBehind(Store().flush, Failures())
    await asyncio.wait_for(behind.drain(), WAIT)


@pytest.mark.parametrize("max_batch", [0, -1, True])
def test_write_behind_max_batch_must_be_a_positive_integer(max_batch: int) -> None:
    with pytest.raises(ValueError, match="max_batch"):
        WriteBehind(Store().flush, Failures(), max_batch=max_batch)
