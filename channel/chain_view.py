"""The node's circuit breaker: is its view of the chain fresh enough to take on new HTLCs?

Pure: a small state machine fed observations with the times they were made (seconds since
1970, by the node's clock); it never reads a clock or bitcoind itself.

An HTLC is safe only for a node that watches the chain: it must claim with the preimage, or
time out, or punish a revoked commitment, before a deadline counted in blocks. A node whose
bitcoind is unreachable, or whose bitcoind has stopped learning blocks, cannot see those
deadlines come. Such a node stops *adding* HTLCs as payer and *accepting* new ones as payee or
forwarder; everything that ends an HTLC (fulfil, fail, penalties, sweeps) goes on.

The rule (an L2's sequencer-uptime feed pauses everyone at once; here each node asks only
about its own view):

* **unreachable**: the last poll of bitcoind failed (no answer, or it is still warming up).
  Stale at once, fresh at the first poll that succeeds again.
* **tip too old**: stale when the tip is older than ``max_tip_age_s``, its age read from two
  clocks: the tip's header ``time`` (bitcoind's word) and the node's own clock since it saw that
  tip appear. The tip counts from the EARLIER of the two, i.e. the header time, capped at the
  moment the node saw the block: a header time in the future (miners set it up to two hours
  ahead; regtest blocks mined in a burst run ahead of the wall clock) vouches for nothing the
  node did not see, so a stall shows after ``max_tip_age_s`` of the node's clock at the
  latest; a header time in the past (a node starting on an old tip, a bitcoind still catching
  up on old blocks) shows at once, however recently the block arrived. (The header ``time``,
  not ``mediantime``: the median of 11 lags the tip by about an hour on mainnet, longer than a
  sensible limit.) On regtest blocks come only when someone mines, so the default limit there
  is long; tests set a few seconds.

While stale, an HTLC offered to us is answered by :func:`refuse_incoming` with BOLT 4's
``temporary_node_failure`` (a failure of this node, for now: the payer may retry later or
elsewhere), whether we are its payee or would forward it. A hold invoice's HTLCs are the
exception: one held already is settled or cancelled as asked, and a new one is held too, which
reveals nothing until its `settle` (then done even while stale: ending an HTLC is always safe).

Unreachable wins over tip age (it is the cause to fix first); ``since`` is when the current
state began, kept while only the reason's detail changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from typing import TYPE_CHECKING

from channel.htlc_log import HtlcEntry

if TYPE_CHECKING:
    from channel.payee import Fail

__all__ = ["DEFAULT_MAX_TIP_AGE_S", "REGTEST_MAX_TIP_AGE_S", "ChainView", "ChainViewStatus",
           "Freshness", "StaleReason", "default_max_tip_age_s", "refuse_incoming"]

#: blocks come every ten minutes on average; two hours without one is a 1-in-160,000 event
DEFAULT_MAX_TIP_AGE_S = 7200.0
#: regtest blocks come only when someone mines: an hour of a quiet classroom is normal
REGTEST_MAX_TIP_AGE_S = 3600.0


def default_max_tip_age_s(chain: str) -> float:
    """The limit a node uses unless told (``chain`` as bitcoind names it)."""
    return REGTEST_MAX_TIP_AGE_S if chain == "regtest" else DEFAULT_MAX_TIP_AGE_S


class Freshness(Enum):
    FRESH = "fresh"
    STALE = "stale"


class StaleReason(Enum):
    BITCOIND_UNREACHABLE = "bitcoind_unreachable"
    TIP_TOO_OLD = "tip_too_old"


def _clock(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainViewStatus:
    """Fresh, or stale for ``reason`` (``detail`` in words), since ``since_s``."""

    freshness: Freshness
    reason: StaleReason | None
    detail: str
    since_s: float

    @property
    def stale(self) -> bool:
        return self.freshness is Freshness.STALE

    def refusal(self) -> str | None:
        """One line for whoever wants a new HTLC now, or None when fresh."""
        if not self.stale:
            return None
        fix = ("start it again" if self.reason is StaleReason.BITCOIND_UNREACHABLE
               else "mine a block, or check bitcoind's peers")
        return (f"the chain view is stale since {_clock(self.since_s)} ({self.detail}): "
                f"no new HTLCs until it is fresh again; {fix}")

    def describe(self) -> str:
        """The log line of a transition."""
        if not self.stale:
            return f"chain view fresh ({self.detail})"
        return f"chain view stale: {self.detail}; new HTLCs refused until it is fresh again"

    def to_json(self) -> dict[str, str | float | None]:
        return {"state": self.freshness.value,
                "reason": None if self.reason is None else self.reason.value,
                "detail": self.detail, "since": _clock(self.since_s), "since_s": self.since_s}


class ChainView:
    """Observations in, status out. Each observation returns the new status on a transition
    (fresh <-> stale, or a change of reason), else None: the caller logs one line per change.
    """

    def __init__(self, *, max_tip_age_s: float, now_s: float) -> None:
        if max_tip_age_s <= 0:
            raise ValueError("max_tip_age_s must be positive")
        self.max_tip_age_s = max_tip_age_s
        self._unreachable: str | None = None   # the last poll's error, while it fails
        self._tip_height: int | None = None
        self._tip_time_s: float | None = None  # the tip's header time
        self._tip_seen_s: float | None = None  # when the node saw it appear (or found it)
        self._status = ChainViewStatus(freshness=Freshness.FRESH, reason=None,
                                       detail="no tip seen yet", since_s=now_s)

    @property
    def status(self) -> ChainViewStatus:
        return self._status

    def tip(self, now_s: float, *, height: int, header_time_s: float | None,
            new_block: bool) -> ChainViewStatus | None:
        """The tip is ``height`` (``new_block``: it just arrived; False: found at start, or
        told again). A header time unknown (None): the node's clock alone."""
        if self._tip_height is None or height != self._tip_height or new_block:
            self._tip_seen_s = now_s
        self._tip_height, self._tip_time_s = height, header_time_s
        self._unreachable = None   # it answered
        return self.tick(now_s)

    def unreachable(self, now_s: float, error: str) -> ChainViewStatus | None:
        """A poll of bitcoind failed with ``error``."""
        self._unreachable = error
        return self.tick(now_s)

    def reachable(self, now_s: float) -> ChainViewStatus | None:
        """A poll of bitcoind succeeded."""
        self._unreachable = None
        return self.tick(now_s)

    def tick(self, now_s: float) -> ChainViewStatus | None:
        """Time passed: re-evaluate the tip's age."""
        new = self._evaluate(now_s)
        old = self._status
        if new.freshness is old.freshness and new.reason is old.reason:
            if new.detail != old.detail:  # the age moves on; the state began earlier
                self._status = ChainViewStatus(freshness=new.freshness, reason=new.reason,
                                               detail=new.detail, since_s=old.since_s)
            return None
        self._status = new
        return new

    def _evaluate(self, now_s: float) -> ChainViewStatus:
        if self._unreachable is not None:
            return ChainViewStatus(freshness=Freshness.STALE,
                                   reason=StaleReason.BITCOIND_UNREACHABLE,
                                   detail=f"bitcoind unreachable: {self._unreachable}",
                                   since_s=now_s)
        if self._tip_height is None:
            return ChainViewStatus(freshness=Freshness.FRESH, reason=None,
                                   detail="no tip seen yet", since_s=now_s)
        seen_s = now_s if self._tip_seen_s is None else self._tip_seen_s
        tip_s = seen_s if self._tip_time_s is None else min(self._tip_time_s, seen_s)
        age_s = now_s - tip_s
        if age_s > self.max_tip_age_s:
            return ChainViewStatus(
                freshness=Freshness.STALE, reason=StaleReason.TIP_TOO_OLD,
                detail=f"tip {self._tip_height} is {age_s:.1f} s old, over the "
                       f"{self.max_tip_age_s:g} s limit",
                since_s=now_s)
        return ChainViewStatus(freshness=Freshness.FRESH, reason=None,
                               detail=f"tip {self._tip_height}, {max(0.0, age_s):.0f} s old",
                               since_s=now_s)


def refuse_incoming(entry: HtlcEntry, *, node_secret: bytes) -> Fail | None:
    """The ``update_fail_htlc`` for an HTLC offered while our chain view is stale: BOLT 4
    ``temporary_node_failure``, encrypted with the shared secret of its onion. None for an
    onion we cannot peel at all: the payee's usual malformed answer applies to it."""
    # imported here: only a stale node offered an HTLC peels an onion; an idle node does not
    # load the onion modules (``make bench``: idle node RSS)
    from channel.failure_onion import build_failure_onion
    from channel.onion import peel_payment_onion
    from channel.onion_failures import TemporaryNodeFailure
    from channel.payee import Fail
    peeled = peel_payment_onion(onion=entry.onion_routing_packet, node_key=node_secret,
                                payment_hash=entry.payment_hash)
    shared_secret = peeled.shared_secret
    if shared_secret is None:   # a BADONION: the payee's update_fail_malformed_htlc
        return None
    failure = TemporaryNodeFailure()
    return Fail(failure, build_failure_onion(shared_secret=shared_secret, failure=failure))
