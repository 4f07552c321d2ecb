"""The RabbitMQ management HTTP API (plugin ``rabbitmq_management``), for what AMQP cannot tell.

AMQP has no way to list exchanges or queues, nor to count unacknowledged messages. Admin
operations that need those ask the management API; its counters are sampled by RabbitMQ every
``collect_statistics_interval`` (5 s by default), so they may lag by that much. Counts that
AMQP can give exactly (ready messages, consumers) are taken from AMQP instead.

The few requests (admin operations, a gauge refresh every few seconds) go through the
standard library's ``urllib`` on a worker thread: an async HTTP client (httpx and what it
pulls in) would add about 6 MiB to every worker process for them.
"""

from __future__ import annotations

import asyncio
import base64
import http.client
import re
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, unquote, urlencode, urlsplit, urlunsplit

import orjson

from queuekit.backends.rabbitmq.topology import TOPIC_MARKER
from queuekit.errors import BrokerUnavailable, ConfigError

DEFAULT_MANAGEMENT_PORT = 15672
_PAGE_SIZE = 500


def management_url_for(amqp_url: str) -> str:
    """The management API URL that usually goes with ``amqp_url`` (same host and user)."""
    parts = urlsplit(amqp_url)
    if parts.scheme not in ("amqp", "amqps"):
        raise ConfigError(f"RABBITMQ_URL must start with amqp:// or amqps://, not {amqp_url!r}")
    scheme = "https" if parts.scheme == "amqps" else "http"
    userinfo = ""
    if parts.username is not None:
        userinfo = parts.username + (f":{parts.password}" if parts.password is not None else "")
        userinfo += "@"
    host = parts.hostname or "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return urlunsplit((scheme, f"{userinfo}{host}:{DEFAULT_MANAGEMENT_PORT}", "/", "", ""))


def vhost_of(amqp_url: str) -> str:
    """The virtual host named by ``amqp_url`` ("/" when the path is empty)."""
    path = urlsplit(amqp_url).path
    return unquote(path[1:]) if len(path) > 1 else "/"


class ManagementAPI:
    """A small client of the management API for one virtual host.

    Raises :class:`BrokerUnavailable` (with a hint) when the API cannot be reached.
    """

    def __init__(self, url: str, vhost: str, *, timeout: float = 10.0) -> None:
        parts = urlsplit(url)
        self._headers = {"Accept": "application/json"}
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            token = base64.b64encode(credentials.encode()).decode("ascii")
            self._headers["Authorization"] = f"Basic {token}"
        netloc = parts.hostname or "127.0.0.1"
        if ":" in netloc:
            netloc = f"[{netloc}]"
        if parts.port is not None:
            netloc += f":{parts.port}"
        self._base = urlunsplit((parts.scheme, netloc, parts.path.rstrip("/"), "", ""))
        self._vhost = quote(vhost, safe="")
        self._timeout = timeout

    async def aclose(self) -> None:
        """Nothing to release: each request opens and closes its own connection."""

    async def topic_exchanges(self) -> list[str]:
        """Names of the exchanges that queuekit declared for topics."""
        rows = await self._paged(f"/api/exchanges/{self._vhost}", columns="name,arguments")
        return [
            row["name"] for row in rows if (row.get("arguments") or {}).get(TOPIC_MARKER) == "topic"
        ]

    async def queues(self, prefix: str) -> list[dict[str, Any]]:
        """Queues whose name starts with ``prefix``: name, messages_ready, messages_unacked..."""
        rows = await self._paged(
            f"/api/queues/{self._vhost}",
            columns="name,messages_ready,messages_unacknowledged,consumers",
            name="^" + re.escape(prefix),
            use_regex="true",
        )
        return [row for row in rows if str(row.get("name", "")).startswith(prefix)]

    async def _paged(self, path: str, **params: str) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        page = 1
        while True:
            body = await self._get(path, page=str(page), page_size=str(_PAGE_SIZE), **params)
            rows.extend(body.get("items", []))
            if page >= int(body.get("page_count", 1) or 1):
                return rows
            page += 1

    async def _get(self, path: str, **params: str) -> dict[str, Any]:
        url = f"{self._base}{path}?{urlencode(params)}"
        try:
            status, raw = await asyncio.to_thread(self._fetch, url)
        except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
            raise BrokerUnavailable(
                f"RabbitMQ management API unreachable at {self._base} ({exc!r}); enable the "
                "rabbitmq_management plugin or set RABBITMQ_MANAGEMENT_URL"
            ) from exc
        if status in (401, 403):
            raise BrokerUnavailable(
                f"RabbitMQ management API at {self._base} refused the credentials "
                f"(HTTP {status}); the user needs the 'monitoring' tag"
            )
        if status != 200:
            raise BrokerUnavailable(
                f"RabbitMQ management API at {self._base} answered HTTP {status}"
            )
        body: dict[str, Any] = orjson.loads(raw)
        return body

    def _fetch(self, url: str) -> tuple[int, bytes]:
        """GET ``url`` (blocking): the status and the body (empty unless 2xx)."""
        request = urllib.request.Request(url, headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as exc:  # urllib raises for every status but 2xx
            exc.close()
            return exc.code, b""
