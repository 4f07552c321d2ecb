"""The conformance suite on the SQLite backend: brokers sharing one database file."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from queuekit.backends.sqlite import SqliteBroker
from queuekit.testing.conformance import BrokerConformance, BrokerFactory, connected_brokers


class TestSqlite(BrokerConformance):
    @pytest.fixture
    async def make_broker(self, tmp_path: Path) -> AsyncIterator[BrokerFactory]:
        path = tmp_path / "queuekit.db"

        def build() -> SqliteBroker:
            return SqliteBroker(path, visibility_timeout=self.visibility_timeout)

        async with connected_brokers(build) as make:
            yield make
