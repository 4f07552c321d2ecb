"""One exception tree for everything queuekit raises.

Backends map their client libraries' errors onto this tree at the boundary
(``raise BrokerUnavailable(...) from exc``), so callers never import a broker client to
catch an error. Control-flow signals for handlers (:class:`Retry`, :class:`Reject`) live
apart: they are not failures of queuekit itself.
"""

from __future__ import annotations


class QueuekitError(Exception):
    """Base class of every error queuekit raises."""


class ConfigError(QueuekitError):
    """The configuration (environment, URL, arguments) is invalid."""


class InvalidTopic(QueuekitError, ValueError):
    """A topic or group name does not follow the naming rules."""


class InvalidMessage(QueuekitError, ValueError):
    """A message is malformed: bad priority, oversize payload, undecodable body..."""


class PayloadTooLarge(InvalidMessage):
    """The encoded payload is larger than the configured limit."""


class BrokerError(QueuekitError):
    """The broker failed to do what was asked."""


class BrokerUnavailable(BrokerError):
    """The broker cannot be reached (down, refused, timed out, not connected)."""


class ConnectionLost(BrokerUnavailable):
    """An established connection to the broker was lost."""


class PublishError(BrokerError):
    """The broker did not confirm that it holds the published messages durably."""


class NotSupported(BrokerError):
    """The backend does not offer this operation (see its ``Features``)."""


class BackendNotInstalled(ConfigError):
    """The client library of a backend is missing; the message says what to install."""


class HandlerControl(Exception):
    """Base of the signals a handler raises to steer what happens to its message."""


class Retry(HandlerControl):
    """Ask for the message to be tried again after ``delay`` seconds (or the backoff).

    Counts as an attempt: after the handler's last attempt the message is dead-lettered.
    """

    def __init__(self, reason: str = "retry requested", *, delay: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.delay = delay


class Reject(HandlerControl):
    """Give up on the message at once: it goes to the dead-letter queue with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
