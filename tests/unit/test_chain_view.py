"""The chain-view circuit breaker: transitions, reasons and limits of channel.chain_view."""

from __future__ import annotations

import pytest

from channel.chain_view import (
    ChainView,
    Freshness,
    StaleReason,
    default_max_tip_age_s,
)

T0 = 1_800_000_000.0   # a fixed "now" in seconds since 1970


def _view(limit: float = 10.0) -> ChainView:
    return ChainView(max_tip_age_s=limit, now_s=T0)


def test_new_block_keeps_the_view_fresh_until_the_limit_passes() -> None:
    """A tip that arrived as a new block is fresh for exactly max_tip_age_s, then stale."""
    view = _view()
    assert view.tip(T0, height=101, header_time_s=T0, new_block=True) is None
    assert view.tick(T0 + 10.0) is None
    assert not view.status.stale
    changed = view.tick(T0 + 10.5)
    assert changed is not None and changed.freshness is Freshness.STALE
    assert changed.reason is StaleReason.TIP_TOO_OLD
    assert changed.detail == "tip 101 is 10.5 s old, over the 10 s limit"
    assert changed.since_s == T0 + 10.5


def test_a_new_block_makes_a_stale_view_fresh_again() -> None:
    """Mining after a stall: one transition back to fresh, with the new tip named."""
    view = _view()
    view.tip(T0, height=101, header_time_s=T0, new_block=True)
    view.tick(T0 + 11)
    fresh = view.tip(T0 + 12, height=102, header_time_s=T0 + 12, new_block=True)
    assert fresh is not None and fresh.freshness is Freshness.FRESH
    assert fresh.reason is None and fresh.detail == "tip 102, 0 s old"
    assert view.status.refusal() is None


def test_old_tip_found_at_start_is_stale_at_once() -> None:
    """A node starting on an old tip: its header time decides at once."""
    view = _view()
    changed = view.tip(T0, height=500, header_time_s=T0 - 3600, new_block=False)
    assert changed is not None and changed.reason is StaleReason.TIP_TOO_OLD
    assert changed.detail == "tip 500 is 3600.0 s old, over the 10 s limit"


def test_an_old_block_arriving_is_stale_though_it_just_came() -> None:
    """A bitcoind catching up delivers old blocks: each is as old as its header says."""
    view = _view()
    changed = view.tip(T0, height=7, header_time_s=T0 - 3600, new_block=True)
    assert changed is not None and view.status.stale
    fresh = view.tip(T0 + 1, height=8, header_time_s=T0 - 2, new_block=True)
    assert fresh is not None and fresh.detail == "tip 8, 3 s old"


def test_header_time_in_the_future_counts_from_when_the_block_was_seen() -> None:
    """A header time ahead of the clock (a regtest burst) vouches for nothing: the node's
    clock since the block arrived decides."""
    view = _view()
    view.tip(T0, height=7, header_time_s=T0 + 30, new_block=True)
    assert view.tick(T0 + 10) is None and not view.status.stale
    changed = view.tick(T0 + 11)
    assert changed is not None and changed.detail == "tip 7 is 11.0 s old, over the 10 s limit"


def test_unknown_header_time_counts_from_when_the_tip_was_seen() -> None:
    """A backend without header times: the node's own clock alone."""
    view = _view()
    view.tip(T0, height=3, header_time_s=None, new_block=False)
    assert view.tick(T0 + 10) is None
    assert view.tick(T0 + 11) is not None and view.status.stale


def test_unreachable_is_stale_at_once_and_fresh_at_the_first_answer() -> None:
    """A failed poll: stale with the error; the next successful poll: fresh."""
    view = _view()
    view.tip(T0, height=101, header_time_s=T0, new_block=True)
    stale = view.unreachable(T0 + 1, "connection refused")
    assert stale is not None and stale.reason is StaleReason.BITCOIND_UNREACHABLE
    assert stale.detail == "bitcoind unreachable: connection refused"
    assert view.unreachable(T0 + 2, "connection refused") is None   # no repeated transition
    assert view.status.since_s == T0 + 1
    fresh = view.reachable(T0 + 3)
    assert fresh is not None and fresh.freshness is Freshness.FRESH


def test_unreachable_wins_over_tip_age_and_since_is_kept_across_details() -> None:
    """While bitcoind is down the reason is the outage; a new error text keeps `since`."""
    view = _view()
    view.tip(T0, height=101, header_time_s=T0, new_block=True)
    view.unreachable(T0 + 1, "connection refused")
    assert view.tick(T0 + 60) is None
    assert view.status.reason is StaleReason.BITCOIND_UNREACHABLE
    assert view.unreachable(T0 + 61, "-28 loading block index") is None
    assert view.status.detail == "bitcoind unreachable: -28 loading block index"
    assert view.status.since_s == T0 + 1
    changed = view.reachable(T0 + 62)   # back, but the tip is now 62 s old: another reason
    assert changed is not None and changed.reason is StaleReason.TIP_TOO_OLD


def test_refusal_and_json_name_the_stale_chain_view() -> None:
    """The one-line refusal says what is stale, since when, and what to do."""
    view = _view()
    view.unreachable(T0, "connection refused")
    assert view.status.refusal() == (
        "the chain view is stale since 2027-01-15 08:00:00 UTC (bitcoind unreachable: "
        "connection refused): no new HTLCs until it is fresh again; start it again")
    assert view.status.to_json() == {
        "state": "stale", "reason": "bitcoind_unreachable",
        "detail": "bitcoind unreachable: connection refused",
        "since": "2027-01-15 08:00:00 UTC", "since_s": T0}


def test_limits() -> None:
    """Regtest's default limit is longer than other chains'; a zero limit is refused."""
    assert default_max_tip_age_s("regtest") == 3600.0
    assert default_max_tip_age_s("main") == 7200.0
    with pytest.raises(ValueError, match="positive"):
        ChainView(max_tip_age_s=0, now_s=T0)
