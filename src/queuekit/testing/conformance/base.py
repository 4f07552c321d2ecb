"""The fixtures every part of the conformance suite shares."""

from __future__ import annotations

from typing import ClassVar

import pytest

from queuekit.broker import Broker
from queuekit.testing.conformance.helpers import BrokerFactory, unique_topic


class ConformanceBase:
    """Fixtures of the suite. A backend's test class provides ``make_broker``.

    ``make_broker`` yields a :data:`BrokerFactory`: each call returns a NEW, CONNECTED broker
    instance on the SAME store or server, configured with ``visibility_timeout =
    self.visibility_timeout``; the fixture closes them all at teardown.
    """

    visibility_timeout: ClassVar[float] = 1.0
    """Seconds after which a gone consumer's deliveries are redelivered (a backend may raise it)."""

    @pytest.fixture
    async def make_broker(self) -> BrokerFactory:
        raise NotImplementedError(
            f"{type(self).__name__} must define the make_broker fixture (see BrokerConformance)"
        )

    @pytest.fixture
    async def broker(self, make_broker: BrokerFactory) -> Broker:
        """A connected broker, the first one of the test."""
        return await make_broker()

    @pytest.fixture
    def topic(self) -> str:
        """A topic of this test only."""
        return unique_topic()
