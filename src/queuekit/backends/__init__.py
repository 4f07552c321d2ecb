"""Backend registry: ``create_broker(settings)`` picks and builds a backend lazily.

Client libraries are imported only when their backend is chosen; a missing one gives a
:class:`~queuekit.errors.BackendNotInstalled` error that says what to install.
"""

from __future__ import annotations

import importlib

from queuekit.broker import Broker
from queuekit.errors import BackendNotInstalled, ConfigError
from queuekit.settings import Settings

_EXTRAS = {"redis": "redis", "rabbitmq": "rabbitmq", "kafka": "kafka"}


def create_broker(settings: Settings) -> Broker:
    """Build (not connect) the broker that ``settings.queue_type`` names."""
    kind = settings.queue_type
    try:
        module = importlib.import_module(f"queuekit.backends.{_MODULES[kind]}")
    except KeyError:
        raise ConfigError(f"unknown QUEUE_TYPE {kind!r}") from None
    except ImportError as exc:
        if exc.name is None or exc.name.split(".")[0] == "queuekit":
            raise  # a bug inside queuekit, not a missing client library
        extra = _EXTRAS.get(kind, "all")
        raise BackendNotInstalled(
            f"the {kind} backend needs a library that is not installed ({exc.name}): "
            f'pip install "queuekit[{extra}]"'
        ) from exc
    broker: Broker = module.from_settings(settings)
    return broker


_MODULES = {
    "memory": "memory",
    "sqlite": "sqlite",
    "redis": "redis_streams",
    "rabbitmq": "rabbitmq",
    "kafka": "kafka",
}
