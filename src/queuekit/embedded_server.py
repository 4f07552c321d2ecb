"""A uvicorn server that runs inside an event loop the host process owns."""

from __future__ import annotations

import contextlib
from collections.abc import Generator

import uvicorn


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its host process.

    uvicorn normally replaces SIGTERM/SIGINT handlers while it serves and re-raises the
    signal afterwards; a worker or ``queuekit run`` owns those signals instead
    (:mod:`queuekit.signals`) and stops the server through ``should_exit``.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield
