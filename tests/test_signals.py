"""The shared stop-signal policy: first signal graceful, later ones immediate."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

from queuekit.signals import install_stop_signals


async def test_first_signal_asks_for_a_graceful_stop_and_the_next_for_an_immediate_one() -> None:
    # Given the policy installed on the running loop
    requests: list[bool] = []
    arrived = asyncio.Event()

    def request_stop(now: bool) -> None:
        requests.append(now)
        arrived.set()

    uninstall = install_stop_signals(request_stop, logging.getLogger("test"), grace_seconds=1)
    try:
        # When the process receives SIGTERM, then SIGINT
        for sig in (signal.SIGTERM, signal.SIGINT):
            arrived.clear()
            os.kill(os.getpid(), sig)
            await asyncio.wait_for(arrived.wait(), 5)
    finally:
        uninstall()

    # Then the first asked for a graceful stop, the second for an immediate one
    assert requests == [False, True]
    # And the loop's handlers are gone again
    loop = asyncio.get_running_loop()
    assert not loop.remove_signal_handler(signal.SIGTERM)
