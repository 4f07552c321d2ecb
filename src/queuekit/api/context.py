"""What the API's routes share: one :class:`ApiContext` per app, on ``app.state``."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Protocol

from pydantic import BaseModel

from queuekit.api.auth import ApiKeyAuth
from queuekit.api.idempotency import IdempotencyCache
from queuekit.api.problems import Problem
from queuekit.broker import Admin, Broker, TopicStats
from queuekit.client import Producer
from queuekit.errors import BrokerUnavailable
from queuekit.metrics import Metrics
from queuekit.settings import Settings

STATS_TIMEOUT_SECONDS = 2.0
MAX_CONCURRENT_STATS = 16

log = logging.getLogger("queuekit.api")


class TopicCatalog(Protocol):
    """The topics the deployment handles, and their payload schemas (a worker ``App`` is one).

    When the API is given a catalog, it refuses to publish to topics without a handler
    (404) and validates payloads against the topic's schema (422).
    """

    @property
    def topics(self) -> frozenset[str]:
        """Topics that have a handler."""
        ...

    def schema_for(self, topic: str) -> type[BaseModel] | None:
        """The payload model of ``topic``'s handler, or None if it takes any JSON."""
        ...


@dataclass(frozen=True, slots=True)
class ApiContext:
    """Everything a route needs, built once by :func:`queuekit.api.create_app`."""

    broker: Broker
    producer: Producer
    settings: Settings
    metrics: Metrics
    auth: ApiKeyAuth
    idempotency: IdempotencyCache
    catalog: TopicCatalog | None

    @property
    def admin(self) -> Admin:
        """The broker's admin operations, or a 501 problem if the backend has none."""
        if not isinstance(self.broker, Admin):
            raise Problem(
                501,
                "not-supported",
                f"the {self.broker.backend} backend does not offer topic administration",
                title="Not supported by this backend",
            )
        return self.broker

    async def known_topics(self) -> list[str]:
        """Topics the broker knows, plus those the catalog handles, sorted."""
        topics = set(await self.admin.list_topics())
        if self.catalog is not None:
            topics |= self.catalog.topics
        return sorted(topics)

    async def all_stats(self) -> list[TopicStats]:
        """Counts for every known topic, fetched concurrently within a bounded time.

        Raises:
            BrokerUnavailable: the broker did not answer within ``STATS_TIMEOUT_SECONDS``.
        """
        admin = self.admin
        gate = asyncio.Semaphore(MAX_CONCURRENT_STATS)

        async def stats_of(topic: str) -> TopicStats:
            async with gate:
                return await admin.topic_stats(topic)

        try:
            async with asyncio.timeout(STATS_TIMEOUT_SECONDS):
                topics = await self.known_topics()
                async with asyncio.TaskGroup() as group:  # one failure cancels the rest
                    tasks = [group.create_task(stats_of(topic)) for topic in topics]
        except TimeoutError:
            raise BrokerUnavailable(
                f"topic statistics took longer than {STATS_TIMEOUT_SECONDS} s"
            ) from None
        except ExceptionGroup as failures:
            raise failures.exceptions[0] from None
        return [task.result() for task in tasks]

    async def refresh_gauges(self) -> None:
        """Set the queue gauges from the broker's counts; on failure keep the old values.

        Scraping must not fail or hang because the broker is slow or down: the metrics
        endpoint still serves the counters, with gauges as of the last successful refresh.
        """
        if not isinstance(self.broker, Admin):
            return
        try:
            for stats in await self.all_stats():
                self.metrics.observe_stats(stats)
        except Exception as exc:
            log.warning("could not refresh queue gauges: %s", exc)
