"""Where each queuekit concept lives on RabbitMQ: exchange and queue names, delay tiers.

Topic and group names never contain ``:`` or ``@`` (see :func:`queuekit.message.validate_topic`),
so the names below cannot collide between topics or groups:

=========================================  ==========================================
``<topic>``                                 fanout exchange: publishing reaches every group
``<topic>:<group>``                         the group's queue (classic, x-max-priority 9)
``<topic>:<group>:delay:<ms>ms``            retries of one group waiting ``ms`` milliseconds
``<topic>:@all:delay:<ms>ms``               delayed publishes for all groups
``<topic>.dlq``                             the topic's dead letters
=========================================  ==========================================
"""

from __future__ import annotations

import math
import re

ALL_GROUPS = "@all"
DELAY_MARK = ":delay:"

# One queue per delay tier. The tiers of a decade (x 10**k ms) step up by at most 10 %, so a
# delay is rounded up by at most 10 % with 29 tiers a decade.
_STEPS = (
    10,
    11,
    12,
    13,
    14,
    15,
    16,
    17,
    18,
    19,
    20,
    22,
    24,
    26,
    28,
    30,
    33,
    36,
    39,
    42,
    46,
    50,
    55,
    60,
    66,
    72,
    79,
    86,
    94,
)
MIN_DELAY_MS = 10
# RabbitMQ takes TTLs up to 2**32-1 ms; longer delays wait in the longest tier and the
# consumer delays the rest again when the message comes back early.
MAX_DELAY_MS = 2_000_000_000

_DELAY_QUEUE_RE = re.compile(r"^(?P<topic>[^:]+):(?P<target>[^:]+):delay:(?P<ms>\d+)ms$")


def exchange_name(topic: str) -> str:
    """The fanout exchange of ``topic``."""
    return topic


def group_queue(topic: str, group: str) -> str:
    """The queue that holds ``group``'s messages of ``topic``."""
    return f"{topic}:{group}"


def delay_queue(topic: str, group: str | None, delay_ms: int) -> str:
    """The delay tier queue for ``group`` (None: every group) of ``topic``."""
    return f"{topic}:{group or ALL_GROUPS}{DELAY_MARK}{delay_ms}ms"


def dead_letter_queue(topic: str) -> str:
    """The dead-letter queue of ``topic`` (``<topic>.dlq``)."""
    return f"{topic}.dlq"


def parse_group_queue(topic: str, queue: str) -> str | None:
    """The group whose queue of ``topic`` is ``queue``, or None if it is not a group queue."""
    prefix = topic + ":"
    if not queue.startswith(prefix):
        return None
    group = queue[len(prefix) :]
    if not group or ":" in group or group == ALL_GROUPS:
        return None
    return group


def parse_delay_queue(topic: str, queue: str) -> str | None:
    """The target of a delay queue of ``topic``: a group, ``ALL_GROUPS`` for all, or None."""
    match = _DELAY_QUEUE_RE.match(queue)
    if match is None or match["topic"] != topic:
        return None
    return match["target"]


def delay_tier_ms(seconds: float) -> int:
    """The delay tier (milliseconds) a delay of ``seconds`` waits in.

    The smallest tier >= the delay (at most 10 % longer; at least ``MIN_DELAY_MS``), except
    above ``MAX_DELAY_MS``, which is the longest tier.
    """
    if not seconds >= 0 or math.isinf(seconds):
        raise ValueError(f"delay must be a finite number of seconds >= 0, not {seconds!r}")
    wanted = max(MIN_DELAY_MS, math.ceil(seconds * 1000 - 1e-6))
    if wanted >= MAX_DELAY_MS:
        return MAX_DELAY_MS
    scale = int(10 ** (len(str(wanted)) - 2))
    mantissa = -(-wanted // scale)  # ceiling division: 10..100
    step = next((value for value in _STEPS if value >= mantissa), 100)
    return step * scale
