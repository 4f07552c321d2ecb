"""The middleware protocols (see :mod:`queuekit.worker.middleware.base`).

Kept out of the mypyc-compiled modules: mypyc drops the ``Protocol`` base of a decorated
(non-extension) class, so ``@runtime_checkable`` would reject it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from queuekit.worker.app import HandlerSpec
    from queuekit.worker.middleware.base import Context, Next, Observer, Services

__all__ = ["BindableMiddleware", "Middleware", "ObservingMiddleware"]


class Middleware(Protocol):
    """One layer of the onion (see the module docstring)."""

    async def __call__(self, ctx: Context, call_next: Next) -> None: ...


@runtime_checkable
class BindableMiddleware(Middleware, Protocol):
    """A middleware that can specialise itself for one handler (see the module docstring)."""

    def bind(self, call_next: Next, spec: HandlerSpec, services: Services) -> Next:
        """This layer for ``spec``, around ``call_next``; ``call_next`` itself to skip it."""
        ...


@runtime_checkable
class ObservingMiddleware(Middleware, Protocol):
    """A middleware that only looks at finished deliveries (see the module docstring).

    Its ``__call__`` must behave like awaiting ``call_next(ctx)`` and then calling its
    observer with ``ctx``, whether the inner layers returned or raised.
    """

    def observer(self, spec: HandlerSpec, services: Services) -> Observer | None:
        """What to call with each finished delivery of ``spec``; None if nothing."""
        ...
