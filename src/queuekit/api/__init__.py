"""The producer HTTP API: :func:`create_app` builds it on a broker."""

from queuekit.api.app import create_app
from queuekit.api.context import TopicCatalog

__all__ = ["TopicCatalog", "create_app"]
