"""The embedded SQLite backend (``QUEUE_TYPE=sqlite``, the default): no server needed.

See :class:`SqliteBroker`; :func:`from_settings` builds one from :class:`Settings`.
"""

from __future__ import annotations

from pathlib import Path

from queuekit.backends.sqlite.broker import SqliteBroker
from queuekit.errors import ConfigError
from queuekit.settings import Settings

__all__ = ["SqliteBroker", "from_settings"]


def from_settings(settings: Settings) -> SqliteBroker:
    """A (not yet connected) broker on ``settings.sqlite_path``, creating its folder.

    Raises:
        ConfigError: the folder cannot be created.
    """
    path = Path(settings.sqlite_path).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"SQLITE_PATH={settings.sqlite_path!r}: cannot create its folder"
        ) from exc
    return SqliteBroker(
        path,
        visibility_timeout=settings.visibility_timeout,
        switch_interval=settings.sqlite_switch_interval or None,
    )
