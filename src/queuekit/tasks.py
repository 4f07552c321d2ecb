"""Stopping background tasks without swallowing the caller's own cancellation."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any

__all__ = ["cancel_and_wait"]


async def cancel_and_wait(tasks: Collection[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until all have ended; raise what one failed with, if one
    failed with something other than its cancellation.

    Not each task awaited under ``suppress(CancelledError)``: that swallows a cancellation of
    the caller too, and an ``asyncio.timeout`` around the caller never fires.
    """
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks)
    for task in tasks:
        if not task.cancelled():
            task.result()
