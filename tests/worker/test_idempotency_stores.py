"""The idempotency stores keep the claim protocol: memory, SQLite (cross-process), Redis."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from brokers import require_broker
from queuekit.errors import ConfigError
from queuekit.idempotency import (
    ClaimState,
    IdempotencyStore,
    IdempotencyStoreError,
    MemoryIdempotencyStore,
    RedisIdempotencyStore,
    SqliteIdempotencyStore,
    create_idempotency_store,
)
from queuekit.settings import Settings

from .helpers import wait_for_value

REDIS_URL = "redis://127.0.0.1:6379/0"

StoreFactory = Callable[..., Awaitable[IdempotencyStore]]


@pytest.fixture(params=["memory", "sqlite", "redis"])
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """Build stores of one kind; stores made by one factory share their data."""
    kind = request.param
    if kind == "redis":
        require_broker("redis", "127.0.0.1", 6379)
    prefix = f"queuekit-test:{uuid.uuid4().hex}:"
    made: list[IdempotencyStore] = []
    shared_memory = MemoryIdempotencyStore()

    async def make(*, ttl: float = 3600.0) -> IdempotencyStore:
        store: IdempotencyStore
        if kind == "memory":
            shared_memory.ttl = ttl
            return shared_memory
        if kind == "sqlite":
            store = SqliteIdempotencyStore(tmp_path / "idempotency.db", ttl=ttl)
        else:
            store = RedisIdempotencyStore(REDIS_URL, ttl=ttl, prefix=prefix)
        made.append(store)
        return store

    yield make
    for store in made:
        await store.close()
    if kind == "redis":
        await _delete_redis_keys(prefix)


async def _delete_redis_keys(prefix: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*")]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


async def test_first_claim_wins_and_others_are_busy(make_store: StoreFactory) -> None:
    # Given two consumers sharing a store
    first, second = await make_store(), await make_store()

    # When both claim the same key
    mine = await first.begin("orders/default/m1", "token-a", 30.0)
    theirs = await second.begin("orders/default/m1", "token-b", 30.0)

    # Then only the first holds it; asking again with the same token is still a claim
    assert (mine, theirs) == (ClaimState.CLAIMED, ClaimState.BUSY)
    assert await first.begin("orders/default/m1", "token-a", 30.0) is ClaimState.CLAIMED


async def test_a_completed_key_is_done_for_everyone(make_store: StoreFactory) -> None:
    first, second = await make_store(), await make_store()
    assert await first.begin("k", "token-a", 30.0) is ClaimState.CLAIMED

    await first.complete("k", "token-a")

    assert await second.begin("k", "token-b", 30.0) is ClaimState.DONE
    assert await first.begin("k", "token-a", 30.0) is ClaimState.DONE


async def test_a_released_claim_can_be_taken_by_another(make_store: StoreFactory) -> None:
    first, second = await make_store(), await make_store()
    assert await first.begin("k", "token-a", 30.0) is ClaimState.CLAIMED

    # When someone else tries to release it, nothing changes
    await second.release("k", "token-b")
    assert await second.begin("k", "token-b", 30.0) is ClaimState.BUSY

    # When the holder releases it, the other can claim it
    await first.release("k", "token-a")
    assert await second.begin("k", "token-b", 30.0) is ClaimState.CLAIMED


async def test_a_redelivery_takes_over_a_dead_holders_claim(make_store: StoreFactory) -> None:
    # Given a claim held for 300 s by a consumer that died (SIGKILL) mid-handler
    dead, alive = await make_store(), await make_store()
    assert await dead.begin("k", "token-dead", 300.0) is ClaimState.CLAIMED

    # When the redelivered message claims the key with take_over
    state = await alive.begin("k", "token-new", 30.0, take_over=True)

    # Then it holds the claim at once, and the dead holder's token no longer does
    assert state is ClaimState.CLAIMED
    assert await dead.begin("k", "token-dead", 30.0) is ClaimState.BUSY


async def test_take_over_never_reopens_a_completed_key(make_store: StoreFactory) -> None:
    store = await make_store()
    assert await store.begin("k", "token-a", 30.0) is ClaimState.CLAIMED
    await store.complete("k", "token-a")

    assert await store.begin("k", "token-b", 30.0, take_over=True) is ClaimState.DONE


async def test_release_never_undoes_a_completed_key(make_store: StoreFactory) -> None:
    store = await make_store()
    assert await store.begin("k", "token-a", 30.0) is ClaimState.CLAIMED
    await store.complete("k", "token-a")

    await store.release("k", "token-a")

    assert await store.begin("k", "token-b", 30.0) is ClaimState.DONE


async def test_a_claim_frees_itself_when_its_lease_runs_out(make_store: StoreFactory) -> None:
    # Given a claim whose holder died, with a short lease
    first, second = await make_store(), await make_store()
    assert await first.begin("k", "token-a", 0.05) is ClaimState.CLAIMED

    # When the lease has run out, then another consumer can claim the key
    state = await wait_for_value(
        lambda: second.begin("k", "token-b", 30.0),
        lambda found: found is ClaimState.CLAIMED,
        what="the lease to run out",
    )
    assert state is ClaimState.CLAIMED


async def test_done_keys_are_forgotten_after_their_ttl(make_store: StoreFactory) -> None:
    store = await make_store(ttl=0.05)
    assert await store.begin("k", "token-a", 30.0) is ClaimState.CLAIMED
    await store.complete("k", "token-a")

    state = await wait_for_value(
        lambda: store.begin("k", "token-b", 30.0),
        lambda found: found is ClaimState.CLAIMED,
        what="the ttl to run out",
    )
    assert state is ClaimState.CLAIMED


async def test_concurrent_claims_of_one_key_have_exactly_one_winner(
    make_store: StoreFactory,
) -> None:
    # Given two store instances (two processes)
    stores = [await make_store(), await make_store()]

    # When 20 consumers race for the same key
    results = await asyncio.gather(
        *(stores[i % 2].begin("race", f"token-{i}", 30.0) for i in range(20))
    )

    # Then exactly one wins
    assert results.count(ClaimState.CLAIMED) == 1
    assert results.count(ClaimState.BUSY) == 19


async def test_sqlite_store_deletes_expired_keys(tmp_path: Path) -> None:
    # Given a store cleaning up at every batch, holding an expired key and a live one
    path = tmp_path / "idempotency.db"
    store = SqliteIdempotencyStore(path, ttl=3600.0, cleanup_interval=0.0)
    try:
        assert await store.begin("expired", "t", 0.001) is ClaimState.CLAIMED
        assert await store.begin("live", "t", 3600.0) is ClaimState.CLAIMED

        # When further operations run, then the expired row is deleted from the file
        def keys() -> set[str]:
            with sqlite3.connect(path) as conn:
                return {row[0] for row in conn.execute("SELECT key FROM queuekit_idempotency")}

        async def keys_after_a_write() -> set[str]:
            await store.begin("other", "t", 3600.0)
            return keys()

        remaining = await wait_for_value(
            keys_after_a_write, lambda found: "expired" not in found, what="the cleanup"
        )
        assert remaining == {"live", "other"}
    finally:
        await store.close()


async def test_sqlite_store_that_cannot_open_its_file_says_so(tmp_path: Path) -> None:
    # Given a path under a regular file (no directory can be created there)
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = SqliteIdempotencyStore(blocker / "idempotency.db")

    # When it is used, then the error names the path, every time
    with pytest.raises(IdempotencyStoreError, match="cannot open"):
        await store.begin("k", "t", 1.0)
    with pytest.raises(IdempotencyStoreError, match="cannot open"):
        await store.begin("k", "t", 1.0)
    await store.close()


async def test_a_closed_sqlite_store_refuses_work(tmp_path: Path) -> None:
    store = SqliteIdempotencyStore(tmp_path / "idempotency.db")
    assert await store.begin("k", "t", 1.0) is ClaimState.CLAIMED
    await store.close()
    await store.close()  # idempotent

    with pytest.raises(IdempotencyStoreError, match="closed"):
        await store.begin("k", "t", 1.0)


async def test_create_idempotency_store_picks_the_kind_from_the_setting(tmp_path: Path) -> None:
    kinds = {
        "memory": MemoryIdempotencyStore,
        str(tmp_path / "keys.db"): SqliteIdempotencyStore,
        REDIS_URL: RedisIdempotencyStore,
    }
    for value, kind in kinds.items():
        store = create_idempotency_store(Settings(idempotency_store=value))
        assert isinstance(store, kind)
        await store.close()
    with pytest.raises(ConfigError, match="IDEMPOTENCY_STORE"):
        create_idempotency_store(Settings(idempotency_store="  "))
