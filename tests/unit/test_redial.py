"""Redial backoff and the ping budget: the numbers a reconnecting or flooded node lives by."""

from __future__ import annotations

import random

from channel.peers import MAX_PINGS_PER_S, PING_BURST, PingBudget
from channel.redial import FIRST_DELAY_S, MAX_DELAY_S, backoff_delays


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    """Each wait is in [1/2, 1] of a step that doubles from FIRST_DELAY_S and stops at
    MAX_DELAY_S."""
    next_delay = backoff_delays(random.Random(7))
    steps = [FIRST_DELAY_S * 2 ** i for i in range(12)]
    for step in steps:
        capped = min(step, MAX_DELAY_S)
        assert capped / 2 <= next_delay() <= capped


def test_backoff_jitter_spreads_two_peers() -> None:
    """Two peers of one restarted node do not retry at the same instants."""
    a, b = backoff_delays(random.Random(1)), backoff_delays(random.Random(2))
    assert [a() for _ in range(5)] != [b() for _ in range(5)]


def test_ping_budget_answers_the_rate_then_refills() -> None:
    """A burst gets PING_BURST answers; one second later MAX_PINGS_PER_S more."""
    budget = PingBudget(at=100.0)
    answered = [budget.take(100.0) for _ in range(3 * PING_BURST)]
    assert answered.count(True) == PING_BURST
    assert answered[:PING_BURST] == [True] * PING_BURST
    assert budget.unanswered == 2 * PING_BURST
    assert [budget.take(101.0) for _ in range(MAX_PINGS_PER_S + 1)].count(True) == \
        MAX_PINGS_PER_S
    assert budget.unanswered == 1
