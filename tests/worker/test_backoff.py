"""Exponential backoff with equal jitter."""

from __future__ import annotations

import random

import pytest

from queuekit.worker.middleware.retry import backoff_ceiling, backoff_delay


def test_ceiling_doubles_per_attempt_up_to_the_maximum() -> None:
    ceilings = [backoff_ceiling(attempt, 1.0, 10.0) for attempt in range(1, 7)]
    assert ceilings == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_huge_attempt_numbers_stay_at_the_maximum() -> None:
    assert backoff_ceiling(10_000, 1.0, 300.0) == 300.0


@pytest.mark.parametrize("attempt", [1, 2, 3, 8])
def test_delay_is_between_half_the_ceiling_and_the_ceiling(attempt: int) -> None:
    # Given a seeded random source, when many delays are drawn
    rng = random.Random(attempt)
    ceiling = backoff_ceiling(attempt, 0.5, 30.0)
    delays = [backoff_delay(attempt, 0.5, 30.0, rng) for _ in range(500)]

    # Then each lies in [ceiling / 2, ceiling] and they are spread out (jitter)
    assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
    assert max(delays) - min(delays) > ceiling / 4


def test_zero_backoff_means_immediate_retries() -> None:
    assert backoff_delay(3, 0.0, 0.0) == 0.0
