"""Exponential backoff with *equal jitter* between attempts of a failing message.

For the n-th attempt (1-based) the ceiling is ``min(max_backoff, backoff * 2 ** (n - 1))``
and the delay is drawn uniformly from ``[ceiling / 2, ceiling]``. Equal jitter (rather than
full jitter, ``[0, ceiling]``) keeps a floor under every delay, so a struggling dependency
is given at least half the intended pause while retries of many messages still spread out.
"""

from __future__ import annotations

import random

__all__ = ["backoff_ceiling", "backoff_delay"]

# 2 ** 64 seconds is far beyond any max_backoff; clamping keeps the float finite.
_MAX_EXPONENT = 64


def backoff_ceiling(attempt: int, backoff: float, max_backoff: float) -> float:
    """The longest delay after failed attempt number ``attempt`` (1 for the first)."""
    exponent = min(max(attempt, 1) - 1, _MAX_EXPONENT)
    return float(min(max_backoff, backoff * 2.0**exponent))


def backoff_delay(
    attempt: int, backoff: float, max_backoff: float, rng: random.Random | None = None
) -> float:
    """The delay before retrying after failed attempt ``attempt``: equal jitter, see above."""
    ceiling = backoff_ceiling(attempt, backoff, max_backoff)
    draw = (rng or random).uniform(0.5, 1.0)
    return ceiling * draw
