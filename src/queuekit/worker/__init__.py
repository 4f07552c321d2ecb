"""The worker: register handlers on an :class:`App`, run them with a :class:`Worker`.

::

    app = App("email-service")

    @app.handler("emails", schema=Email, retries=5)
    async def send_email(email: Email) -> None: ...

    await Worker(app, broker).run()          # or: await run_worker(app, settings)
"""

from __future__ import annotations

from queuekit.worker.app import App, HandlerSpec, IdempotencyKey
from queuekit.worker.middleware import DEFAULT_MIDDLEWARE, Context, Middleware, Outcome
from queuekit.worker.process import run_worker, run_worker_sync
from queuekit.worker.runtime import Worker

__all__ = [
    "DEFAULT_MIDDLEWARE",
    "App",
    "Context",
    "HandlerSpec",
    "IdempotencyKey",
    "Middleware",
    "Outcome",
    "Worker",
    "run_worker",
    "run_worker_sync",
]
