"""One delivery of a Kafka record: settled by an offset mark, a retry record or a dead letter.

* ``ack`` marks the offset handled; the subscription commits the contiguous handled prefix in
  the background (every ~50 ms, and synchronously on revoke and close). A crash before that
  commit redelivers the message (at-least-once).
* ``nack(delay)`` produces the message to ``<topic>.<group>.retry`` with ``attempt + 1`` and
  ``not_before`` (acks=all, awaited), then marks the offset handled: the retry reaches this
  group only and never blocks the partition it came from.
* ``dead_letter`` produces it to ``<topic>.dlq`` with the ``x-dlq-*`` headers, then marks it.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from queuekit.backends.kafka.records import to_record
from queuekit.broker import Delivery
from queuekit.message import Message, dead_letter_headers, dlq_topic

if TYPE_CHECKING:
    from queuekit.backends.kafka.partition import Partition
    from queuekit.backends.kafka.subscription import KafkaSubscription

_OPEN, _SETTLING, _SETTLED = 0, 1, 2


class KafkaDelivery(Delivery):
    """A record fetched from ``part`` at ``offset``, and then its delivery.

    One object from fetch to settlement (a consumer builds one per record, so it is kept
    to one): it waits in :class:`~queuekit.backends.kafka.ready.ReadyRecords`, is handed
    out by the subscription, and is settled by its handler. ``released`` once the consumer
    gave it back; ``earlier``: deliveries before this one that left no trace but a mark.
    """

    __slots__ = ("_state", "_subscription", "earlier", "message", "offset", "part", "released")
    message: Message  # a plain slot: read on every step of a delivery's way

    def __init__(
        self, subscription: KafkaSubscription, part: Partition, offset: int, message: Message
    ) -> None:
        self._subscription = subscription
        self.part = part
        self.offset = offset
        self.message = message
        self.released = False
        self.earlier = 0
        self._state = _OPEN

    @property
    def group(self) -> str:
        return self._subscription.group

    @property
    def settled(self) -> bool:
        """Whether the delivery was settled (by its handler, or released by the consumer)."""
        return self._state == _SETTLED

    def _begin(self) -> bool:
        """Claim the settlement; False if the consumer already released the delivery."""
        if self._state == _SETTLED and self.released:
            self._subscription.check_open_broker()
            return False
        if self._state != _OPEN:
            raise RuntimeError(f"delivery of message {self.message.id} was already settled")
        self._subscription.check_open_broker()
        self._state = _SETTLING
        return True

    def mark_settled(self) -> bool:
        """Called by the subscription when it settles (or releases) this delivery; False if
        it was settled already."""
        if self._state == _SETTLED:
            return False
        self._state = _SETTLED
        return True

    async def ack(self) -> None:
        if self._state == _OPEN and not self._subscription.broker_closed:  # the hot path
            self._state = _SETTLING
            self._subscription.settle(self)
        elif self._begin():
            self._subscription.settle(self)

    async def nack(self, delay: float = 0.0) -> None:
        if not delay >= 0 or math.isinf(delay):
            raise ValueError(f"nack delay must be a finite number of seconds >= 0, not {delay!r}")
        if not self._begin():
            return
        message = self.message
        retry = replace(
            message,
            attempt=message.attempt + 1,
            not_before=time.time() + delay if delay > 0 else None,
        )
        await self._produce_then_settle(retry, self._subscription.retry_topic)

    async def dead_letter(self, reason: str, *, error: str | None = None) -> None:
        if not self._begin():
            return
        message = self.message
        headers = dead_letter_headers(
            message, reason=reason, error=error, group=self.group, attempts=message.attempt
        )
        letter = replace(message, headers=headers, not_before=None)
        await self._produce_then_settle(letter, dlq_topic(message.topic))

    async def _produce_then_settle(self, message: Message, kafka_topic: str) -> None:
        try:
            await self._subscription.producer.send([to_record(message, kafka_topic)])
        except BaseException:
            self._state = _OPEN  # still leased: the caller may try again
            raise
        self._subscription.settle(self)
