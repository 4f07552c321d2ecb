"""The backend conformance suite: the contract of :mod:`queuekit.broker` as tests.

Any backend runs it by subclassing :class:`BrokerConformance` in a test module and providing
one fixture, ``make_broker``, that yields a :data:`BrokerFactory`::

    from collections.abc import AsyncIterator

    import pytest

    from queuekit.backends.memory import MemoryBroker, MemoryStore
    from queuekit.testing.conformance import BrokerConformance, BrokerFactory, connected_brokers


    class TestMemory(BrokerConformance):
        @pytest.fixture
        async def make_broker(self) -> AsyncIterator[BrokerFactory]:
            store = MemoryStore()
            build = lambda: MemoryBroker(store, visibility_timeout=self.visibility_timeout)
            async with connected_brokers(build) as make:
                yield make

Each call of the factory returns a NEW, CONNECTED broker on the SAME store or server (that is
how "a consumer that went away" and "a new broker instance" are tested), configured with
``visibility_timeout = self.visibility_timeout`` (1 s by default; a backend may raise it).
Every test uses its own topic, so the suite runs against a persistent server. What a backend's
``Features`` says it lacks is skipped with a reason, never passed silently.

Requirements beyond :mod:`queuekit.broker` that the suite relies on: a cancelled
``Subscription.__anext__`` loses no message (the suite consumes with timeouts), and every
operation of a broker that is not connected raises ``BrokerUnavailable("... not connected")``.
"""

from __future__ import annotations

from queuekit.testing.conformance.admin import AdminConformance
from queuekit.testing.conformance.base import ConformanceBase
from queuekit.testing.conformance.delivery import DeliveryConformance
from queuekit.testing.conformance.helpers import (
    DEFAULT_WAIT,
    BrokerFactory,
    DeletesTopics,
    ack_all,
    assert_no_delivery,
    collect,
    connected_brokers,
    counts,
    delete_used_topics,
    eventually,
    group_stats,
    next_delivery,
    publish_json,
    require_admin,
    require_feature,
    unique_topic,
)
from queuekit.testing.conformance.lifecycle import LifecycleConformance
from queuekit.testing.conformance.retries import RetryConformance

__all__ = [
    "DEFAULT_WAIT",
    "AdminConformance",
    "BrokerConformance",
    "BrokerFactory",
    "ConformanceBase",
    "DeletesTopics",
    "DeliveryConformance",
    "LifecycleConformance",
    "RetryConformance",
    "ack_all",
    "assert_no_delivery",
    "collect",
    "connected_brokers",
    "counts",
    "delete_used_topics",
    "eventually",
    "group_stats",
    "next_delivery",
    "publish_json",
    "require_admin",
    "require_feature",
    "unique_topic",
]


class BrokerConformance(
    DeliveryConformance, RetryConformance, LifecycleConformance, AdminConformance
):
    """The whole suite; subclass it as ``Test<Backend>`` and provide ``make_broker``."""
