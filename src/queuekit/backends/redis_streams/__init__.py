"""The Redis Streams backend (``QUEUE_TYPE=redis``); see docs/backends/redis.md.

Needs redis-py with hiredis (``pip install "queuekit[redis]"``) and Redis 7 or later.
"""

from __future__ import annotations

from queuekit.backends.redis_streams.broker import RedisStreamsBroker
from queuekit.settings import Settings

__all__ = ["RedisStreamsBroker", "from_settings"]


def from_settings(settings: Settings) -> RedisStreamsBroker:
    """A broker for ``settings.redis_url`` with the configured visibility timeout."""
    return RedisStreamsBroker(
        settings.redis_url,
        visibility_timeout=settings.visibility_timeout,
        require_durability=settings.redis_require_durability,
    )
