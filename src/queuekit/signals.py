"""SIGTERM / SIGINT policy shared by every long-running command.

The first signal asks for a graceful stop (in-flight messages finish within the grace
period), a second one for an immediate stop.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable


def install_stop_signals(
    request_stop: Callable[[bool], None], logger: logging.Logger, *, grace_seconds: float
) -> Callable[[], None]:
    """Route SIGTERM/SIGINT to ``request_stop(now)`` on the running loop; return the undo.

    ``now`` is False for the first signal and True for every later one. Where signals cannot
    be handled (not the main thread), a warning is logged and nothing is installed.
    """
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    received_before = False

    def on_signal(received: signal.Signals) -> None:
        nonlocal received_before
        if received_before:
            logger.warning("second signal: stopping now", extra={"signal": received.name})
            request_stop(True)
            return
        received_before = True
        logger.info(
            "signal received: stopping gracefully",
            extra={"signal": received.name, "grace_seconds": grace_seconds},
        )
        request_stop(False)

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, on_signal, sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, Windows
            logger.warning("cannot handle %s here; stop the process another way", sig.name)
        else:
            installed.append(sig)

    def uninstall() -> None:
        for sig in installed:
            loop.remove_signal_handler(sig)

    return uninstall
