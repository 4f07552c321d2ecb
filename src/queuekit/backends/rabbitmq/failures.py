"""Client errors (aiormq, aio-pika, sockets) mapped onto :mod:`queuekit.errors`."""

from __future__ import annotations

import asyncio

import aiormq

from queuekit.errors import BrokerError, BrokerUnavailable

CLIENT_ERRORS = (
    aiormq.exceptions.AMQPError,
    aiormq.exceptions.ChannelInvalidStateError,
    ConnectionError,
    OSError,
    asyncio.TimeoutError,
)
"""What the AMQP client raises when the server refuses something or cannot be reached."""


def is_refusal(exc: BaseException) -> bool:
    """Whether RabbitMQ refused the operation, rather than the connection failing.

    A bare ``ChannelClosed`` comes from a channel that closed with its connection; its
    subclasses (precondition failed, access refused, not found...) are refusals.
    """
    if isinstance(exc, aiormq.exceptions.AMQPConnectionError):
        return False
    if type(exc) is aiormq.exceptions.ChannelClosed:
        return False
    return isinstance(exc, aiormq.exceptions.AMQPError)


def is_connection_failure(exc: BaseException) -> bool:
    """Whether ``exc`` means the connection (or its channel) went away: worth a retry."""
    return isinstance(exc, CLIENT_ERRORS) and not is_refusal(exc)


def broker_error(exc: BaseException, doing: str) -> BrokerError:
    """The queuekit error for client error ``exc`` raised while ``doing`` something."""
    if is_refusal(exc):
        return BrokerError(f"RabbitMQ refused {doing}: {exc}")
    return BrokerUnavailable(f"RabbitMQ unavailable while {doing}: {exc!r}")
