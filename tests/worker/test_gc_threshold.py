"""A running worker raises the garbage collector's first threshold (queuekit.interpreter)."""

from __future__ import annotations

import gc

import pytest

from queuekit.backends.memory import MemoryBroker
from queuekit.errors import ConfigError
from queuekit.worker import App, Worker

from .helpers import running


async def test_a_running_worker_raises_the_collectors_threshold_then_restores_it() -> None:
    # Given the collector's threshold before any worker runs
    found = gc.get_threshold()
    app = App("gc")

    @app.handler("jobs")
    async def handle(payload: object) -> None:
        return None

    async with MemoryBroker() as broker:
        held = Worker(app, broker, gc_threshold=50_000)
        untouched = Worker(app, broker, gc_threshold=None)

        # When workers run (one of them asking for nothing)
        async with running(untouched):
            alone = gc.get_threshold()
            async with running(held):
                during = gc.get_threshold()

    # Then the first threshold is raised only while the asking worker runs, the others kept,
    # and everything is as found afterwards
    assert alone == found
    assert during == (50_000, *found[1:])
    assert gc.get_threshold() == found


@pytest.mark.parametrize("threshold", [0, -1, 2.5, True])
def test_a_bad_gc_threshold_is_a_config_error(threshold: object) -> None:
    with pytest.raises(ConfigError, match="gc_threshold"):
        Worker(App("gc"), MemoryBroker(), gc_threshold=threshold)  # type: ignore[arg-type]
