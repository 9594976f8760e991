"""A channel's HTLC deadlines, read off its monitor: when to go on chain, what failed there.

Pure. Two questions a node asks of a channel monitor (BOLT 2 "Requirements" on HTLC
deadlines, BOLT 5 "HTLC Output Handling"):

* :meth:`HtlcDeadlines.htlc_deadline` — must the channel be failed (our commitment broadcast)
  now? Yes when an HTLC we offered is still in a current commitment ``OFFERED_HTLC_GRACE_BLOCKS``
  after its ``cltv_expiry`` (the peer neither fulfilled nor failed it: only the chain can take
  it back before the incoming HTLC it pays for expires), or when an HTLC offered to us whose
  preimage we gave is still there ``FULFILL_SAFETY_BLOCKS`` before its ``cltv_expiry`` (the peer
  did not take our fulfil: claim it on chain while the peer cannot yet time it out).
* :meth:`HtlcDeadlines.offered_htlc_failed` — is an HTLC we offered failed for good on chain?
  Yes once the commitment that spent the funding is final (``ANTI_REORG_DELAY`` deep) and
  either has no output for it (trimmed, or never in that commitment) or our timeout spend of its
  output is final: the incoming HTLC it pays for can then be failed upstream.
"""

from __future__ import annotations

from channel.monitor_claims import ClaimPlanner
from channel.monitor_events import ClaimKind, CloseKind
from channel.transactions import CommitmentTransaction
from channel.types import HtlcDirection

__all__ = ["FULFILL_SAFETY_BLOCKS", "OFFERED_HTLC_GRACE_BLOCKS", "HtlcDeadlines"]

#: BOLT 2: an offered HTLC's deadline is G blocks after its cltv_expiry, "1 or 2 blocks is
#: reasonable" (the peer's last chance to fulfil off chain; our HTLC-timeout is valid from
#: cltv_expiry on, so it leaves with our commitment)
OFFERED_HTLC_GRACE_BLOCKS = 1
#: BOLT 2: a fulfilled HTLC's deadline is G blocks before its cltv_expiry, "7 blocks is
#: reasonable" (our commitment and HTLC-success must confirm before the peer's timeout is valid)
FULFILL_SAFETY_BLOCKS = 7

_TIMEOUT_SPENDS = (ClaimKind.HTLC_TIMEOUT, ClaimKind.HTLC_TIMEOUT_CLAIM)


class HtlcDeadlines(ClaimPlanner):
    """The deadline half of :class:`channel.monitor.ChannelMonitor`."""

    def htlc_deadline(self, height: int) -> str | None:
        """Why the channel must go on chain at ``height`` (BOLT 2 deadlines), or None.

        Only while the funding output is unspent: once a commitment is out, the claims
        (:mod:`channel.monitor_claims`) take over."""
        if self._plan.close is not None or self._holder is None:
            return None
        # (HTLC, whether we offered it) in our current commitment and the peer's current ones
        # (two while its revoke_and_ack is outstanding)
        htlcs = [(h, h.direction is HtlcDirection.OFFERED) for h in self._holder.state.htlcs]
        htlcs += [(h, h.direction is HtlcDirection.RECEIVED)
                  for entry in self._counterparty.values() for h in entry.state.htlcs]
        for htlc, ours in htlcs:
            if ours and height >= htlc.cltv_expiry + OFFERED_HTLC_GRACE_BLOCKS:
                return (f"HTLC #{htlc.htlc_id} we offered ({htlc.amount_msat} msat) expired at "
                        f"height {htlc.cltv_expiry} and {self.peer_name} has not removed it: "
                        "going on chain to time it out (BOLT 2 offered-HTLC deadline)")
            if not ours and htlc.payment_hash in self._preimages and \
                    height >= htlc.cltv_expiry - FULFILL_SAFETY_BLOCKS:
                return (f"HTLC #{htlc.htlc_id} offered to us ({htlc.amount_msat} msat) is "
                        f"fulfilled but {self.peer_name} has not removed it, and it expires at "
                        f"height {htlc.cltv_expiry}: going on chain to claim it with its "
                        "preimage (BOLT 2 fulfilled-HTLC deadline)")
        return None

    def offered_htlc_failed(self, htlc_id: int) -> bool:
        """Our offered HTLC ``htlc_id`` can no longer be claimed by the peer: the commitment on
        chain is final and has no output for it, or our timeout spend of it is final."""
        close = self._plan.close
        if close is None or not self._is_deep(close.height):
            return False
        c: CommitmentTransaction | None = None
        if close.kind is CloseKind.HOLDER_COMMITMENT:
            c, ours = self._holder_commitment(), HtlcDirection.OFFERED
        elif close.kind is CloseKind.COUNTERPARTY_COMMITMENT:
            c = next((self._counterparty_commitment(e) for e in self._counterparty.values()
                      if e.txid == close.txid), None)
            ours = HtlcDirection.RECEIVED   # the peer's commitment: it received what we offered
        if c is None:
            return False   # revoked (the penalty's business) or unknown: nothing to conclude
        output = next((o for o in c.htlc_outputs
                       if o.htlc.direction is ours and o.htlc.htlc_id == htlc_id), None)
        if output is None:
            return True    # BOLT 5: a committed HTLC with no output in the final commitment
        spent = c.outpoint(output.vout)
        return any(p.claim.kind in _TIMEOUT_SPENDS and spent in p.claim.spends and
                   self._is_deep(p.height) for p in self._plan.claims.values())
