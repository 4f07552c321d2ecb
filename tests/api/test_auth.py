"""API keys: Bearer or X-API-Key, compared in constant time, never logged nor echoed."""

from __future__ import annotations

import hmac
import logging
from collections.abc import AsyncIterator

import httpx
import pytest

from api.support import api_client, assert_problem
from queuekit.api.auth import ApiKeyAuth, bearer_token
from queuekit.backends.memory import MemoryBroker
from queuekit.settings import Settings

KEYS = ("first-key-0123456789", "second-key-abcdef", "third-key-xyz")
MESSAGE = {"topic": "emails", "payload": {}}


@pytest.fixture
async def secured(broker: MemoryBroker) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(broker, settings=Settings(queue_type="memory", api_keys=KEYS)) as client:
        yield client


async def test_a_missing_key_is_a_401_with_a_challenge(
    secured: httpx.AsyncClient, broker: MemoryBroker
) -> None:
    for method, path in (("POST", "/send"), ("POST", "/send/batch"), ("GET", "/topics")):
        response = await secured.request(method, path, json=MESSAGE)
        assert_problem(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == 'Bearer realm="queuekit"'
    assert await broker.list_topics() == []


async def test_a_wrong_key_is_a_401_and_is_never_logged_nor_echoed(
    secured: httpx.AsyncClient, broker: MemoryBroker, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a wrong key, and every log record captured
    wrong = "wrong-key-s3cr3t-value"
    caplog.set_level(logging.DEBUG)

    # When it is presented either way
    responses = [
        await secured.post("/send", json=MESSAGE, headers={"X-API-Key": wrong}),
        await secured.post("/send", json=MESSAGE, headers={"Authorization": f"Bearer {wrong}"}),
    ]

    # Then both are 401s that mention the key neither in the body, the headers nor the logs
    for response in responses:
        assert_problem(response, 401, "unauthorized")
        assert "invalid_token" in response.headers["www-authenticate"]
        assert wrong not in response.text
        assert all(wrong not in value for value in response.headers.values())
    assert wrong not in caplog.text
    assert await broker.list_topics() == []


async def test_each_configured_key_is_accepted_either_way(secured: httpx.AsyncClient) -> None:
    for key in KEYS:
        by_header = await secured.post("/send", json=MESSAGE, headers={"X-API-Key": key})
        by_bearer = await secured.post(
            "/send", json=MESSAGE, headers={"Authorization": f"Bearer {key}"}
        )
        assert (by_header.status_code, by_bearer.status_code) == (202, 202)
    assert (await secured.get("/topics", headers={"X-API-Key": KEYS[0]})).status_code == 200


async def test_a_non_bearer_authorization_counts_as_no_key(secured: httpx.AsyncClient) -> None:
    # When the key is sent with another scheme, or the Bearer scheme carries no token
    for authorization in (f"Basic {KEYS[0]}", "Bearer", "Bearer   ", KEYS[0]):
        response = await secured.post(
            "/send", json=MESSAGE, headers={"Authorization": authorization}
        )

        # Then it is a 401 asking for a key (nothing was presented)
        assert_problem(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == 'Bearer realm="queuekit"', authorization


async def test_the_x_api_key_header_wins_over_authorization(secured: httpx.AsyncClient) -> None:
    # Given a request carrying a good X-API-Key and a wrong bearer token
    headers = {"X-API-Key": KEYS[1], "Authorization": "Bearer wrong-key"}

    # When it is posted, then the X-API-Key decides (as on the FastAPI routes)
    assert (await secured.post("/send", json=MESSAGE, headers=headers)).status_code == 202
    assert (await secured.get("/topics", headers=headers)).status_code == 200
    # And the other way round, a wrong X-API-Key fails even with a good bearer token
    swapped = {"X-API-Key": "wrong-key", "Authorization": f"Bearer {KEYS[1]}"}
    assert_problem(await secured.post("/send", json=MESSAGE, headers=swapped), 401)
    assert_problem(await secured.get("/topics", headers=swapped), 401)


def test_bearer_tokens_are_read_as_fastapi_reads_them() -> None:
    assert bearer_token("Bearer abc") == "abc"
    assert bearer_token("bearer  abc ") == "abc"
    assert bearer_token("BEARER abc def") == "abc def"
    for not_bearer in (None, "", "Bearer", "Bearer ", "Basic abc", "abc", " Bearer abc"):
        assert bearer_token(not_bearer) is None, not_bearer


async def test_probes_metrics_docs_and_the_dashboard_page_stay_open(
    secured: httpx.AsyncClient,
) -> None:
    for path in ("/health", "/ready", "/metrics", "/openapi.json", "/", "/dashboard"):
        assert (await secured.get(path)).status_code == 200, path


def test_every_key_is_compared_whichever_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given three keys, and compare_digest counted
    auth = ApiKeyAuth(KEYS)
    calls: list[int] = []
    real_compare = hmac.compare_digest

    def counting_compare(a: bytes, b: bytes) -> bool:
        calls.append(1)
        return real_compare(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting_compare)

    # When the first key, the last key and a wrong key are checked
    principals = [auth.principal(KEYS[0]), auth.principal(KEYS[2]), auth.principal("nope")]

    # Then each check compared against all three keys (no early exit), and only keys pass
    assert len(calls) == 3 * len(KEYS)
    assert principals[0] is not None
    assert principals[1] is not None
    assert principals[2] is None
    assert principals[0] != principals[1]
    assert KEYS[0] not in principals[0]


async def test_an_open_api_warns_loudly_at_start(
    broker: MemoryBroker, caplog: pytest.LogCaptureFixture
) -> None:
    # When an API starts without keys, then one with keys
    with caplog.at_level(logging.WARNING, logger="queuekit.api"):
        async with api_client(broker):
            pass
        open_records = [r for r in caplog.records if "API_KEYS is not set" in r.getMessage()]
        caplog.clear()
        async with api_client(broker, settings=Settings(queue_type="memory", api_keys=KEYS)):
            pass

    # Then only the first warned
    assert [r.levelno for r in open_records] == [logging.WARNING]
    assert not [r for r in caplog.records if "API_KEYS" in r.getMessage()]
