"""Watch one channel's funding output on chain and decide what to claim (BOLT 5).

Pure. LDK's ChannelMonitor idea: a :class:`ChannelMonitor` is built from the channel's static
data, learns each new state from the channel's monitor updates (plain records of
:mod:`channel.records`; the monitor never knows the channel), and is fed
the chain (transactions in the mempool or in blocks, reorgs). It answers with events
(:data:`MonitorEvent`) and keeps a current set of claims (:class:`Claim`): signed transactions
to broadcast, each with the chain height from which bitcoind accepts it. It never broadcasts,
sleeps or reads a clock; its caller (the node) does.

Decisions are a function of (static data, updates, preimages, the transactions seen and their
heights). After every input the monitor recomputes its *plan* and reports the difference to the
previous one as events, so feeding the same transaction twice changes nothing, and a reorg
simply moves transactions back to the mempool and re-plans.

What it does, per BOLT 5 case (X = us, Y = the peer)::

    funding spent by                  claims (height = when bitcoind accepts the claim)
    ------------------------------    --------------------------------------------------------
    the cooperative closing tx        none: the outputs already pay the shutdown scripts
    our latest commitment             to_local after to_self_delay (conf + delay - 1);
                                      HTLC-timeout at cltv_expiry, HTLC-success with the preimage,
                                      then their outputs after to_self_delay
    Y's current commitment            to_remote at once (static_remotekey) / after 1 block
                                      (anchors); HTLCs Y offered: with the preimage;
                                      HTLCs we offered: after cltv_expiry
    Y's REVOKED commitment            penalty at once: to_local and every HTLC output with the
                                      revocation key; to_remote as above; if Y's HTLC-success /
                                      -timeout tx takes an HTLC output first, a second-stage
                                      penalty on its output (``<revocation_sig> 1``)
    anything else                     an alert (keys leaked, or our state is stale); if
                                      it pays our static to_remote key, that output
                                      as above (the peer's commitment newer than ours)

Storage is compact: a revoked peer state keeps only its number, balances, feerate and HTLCs;
the per-commitment secret comes from the shachain store (49 slots at most).

The work is split by job: :mod:`channel.monitor_core` keeps the inputs (states, secrets, the
transactions seen), :mod:`channel.monitor_claims` decides the claims,
:mod:`channel.monitor_deadlines` reads the HTLC deadlines (when to go on chain, what failed
there), :mod:`channel.monitor_events` holds the values handed out; this module is the monitor
itself and its persistence.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

from bitcoin.core import CTransaction

from channel.errors import ChanlabError
from channel.keys import PerCommitmentPoint
from channel.monitor_core import _CounterpartyState, _HolderState, _outpoint_key, _Seen
from channel.monitor_deadlines import HtlcDeadlines
from channel.monitor_events import (
    ANTI_REORG_DELAY,
    BalanceStatus,
    ChannelResolved,
    Claim,
    ClaimableBalance,
    ClaimConfirmed,
    ClaimKind,
    ClaimRequested,
    ClaimWithdrawn,
    CloseKind,
    CloseOutcome,
    CounterpartySpend,
    FundingSpent,
    HtlcFeeBump,
    MonitorEvent,
    PreimageLearned,
)
from channel.records import (
    MonitorSetup,
    channel_keys_from_record,
    channel_keys_to_record,
    commitment_state_from_record,
    commitment_state_to_record,
    outpoint_from_record,
    outpoint_to_record,
    party_params_from_record,
    party_params_to_record,
)
from channel.shachain import RevocationStore
from channel.types import CommitmentFormat, Side

__all__ = [
    "ANTI_REORG_DELAY",
    "BalanceStatus",
    "ChannelMonitor",
    "ChannelResolved",
    "Claim",
    "ClaimConfirmed",
    "ClaimKind",
    "ClaimRequested",
    "ClaimWithdrawn",
    "ClaimableBalance",
    "CloseKind",
    "CloseOutcome",
    "CounterpartySpend",
    "FundingSpent",
    "HtlcFeeBump",
    "MonitorEvent",
    "PreimageLearned",
]

_RECORD_VERSION = 1


class MonitoredChannel(Protocol):
    """What :meth:`ChannelMonitor.from_channel` needs of a channel: its plain static records."""

    def monitor_setup(self) -> MonitorSetup: ...


class ChannelMonitor(HtlcDeadlines):
    """The chain watcher of one channel (mutable; persist it with :meth:`to_record`).

    Feed it, in any order the node sees them: :meth:`apply_update` (from
    ``Channel.drain_monitor_updates()``), :meth:`provide_payment_preimage`,
    :meth:`transaction_seen`, :meth:`block_connected`, :meth:`block_disconnected`. Each returns
    the events the input caused. Ask it :meth:`claims_to_broadcast` at every new tip.
    """

    @classmethod
    def from_setup(cls, setup: MonitorSetup, destination_script_pubkey: bytes,
                   sweep_feerate_per_kw: int, *, peer_name: str = "the peer"
                   ) -> ChannelMonitor:
        """A monitor for a funded channel's static records. Create it before draining the
        channel's first monitor updates, then :meth:`apply_update` every drained update."""
        monitor = cls(
            funding_outpoint=setup.funding_outpoint, funding_sat=setup.funding_sat,
            commitment_format=setup.commitment_format, opener=setup.opener,
            holder_params=setup.holder_params, counterparty_params=setup.counterparty_params,
            keys=setup.keys, destination_script_pubkey=destination_script_pubkey,
            sweep_feerate_per_kw=sweep_feerate_per_kw, peer_name=peer_name)
        for preimage in setup.preimages:
            monitor._preimages[hashlib.sha256(preimage).digest()] = preimage
        return monitor

    @classmethod
    def from_channel(cls, channel: MonitoredChannel, destination_script_pubkey: bytes,
                     sweep_feerate_per_kw: int, *, peer_name: str = "the peer"
                     ) -> ChannelMonitor:
        """:meth:`from_setup` with ``channel.monitor_setup()`` (funding outpoint known)."""
        try:
            setup = channel.monitor_setup()
        except ChanlabError as exc:
            raise ValueError(f"from_channel: {exc}") from exc
        return cls.from_setup(setup, destination_script_pubkey, sweep_feerate_per_kw,
                              peer_name=peer_name)

    # -- persistence ----------------------------------------------------------------------------

    def to_record(self) -> dict[str, Any]:
        """A JSON-friendly record (contains the channel's secrets: store it 0600)."""
        return {
            "version": _RECORD_VERSION,
            "funding_outpoint": outpoint_to_record(self.funding_outpoint),
            "funding_sat": self.funding_sat,
            "commitment_format": self.commitment_format.value,
            "opener": self.opener.value,
            "holder_params": party_params_to_record(self.holder_params),
            "counterparty_params": party_params_to_record(self.counterparty_params),
            "keys": channel_keys_to_record(self.keys),
            "destination_script_pubkey": self.destination_script_pubkey.hex(),
            "sweep_feerate_per_kw": self.sweep_feerate_per_kw,
            "peer_name": self.peer_name,
            "holder": None if self._holder is None else [
                commitment_state_to_record(self._holder.state),
                self._holder.counterparty_signature.hex(),
                [s.hex() for s in self._holder.counterparty_htlc_signatures]],
            "counterparty": [[commitment_state_to_record(e.state), e.per_commitment_point.hex(),
                              e.txid.hex()] for e in self._counterparty.values()],
            "revoked": [commitment_state_to_record(s) for s in self._revoked.values()],
            "secrets": self._secrets.to_bytes().hex(),
            "preimages": [p.hex() for p in self._preimages.values()],
            "txs": [[s.tx.serialize().hex(), s.height, s.depth]
                    for s in sorted(self._seen.values(), key=lambda s: s.order)],
            "tip_height": self._tip_height,
            "resolved_reported": self._resolved_reported,
        }

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> ChannelMonitor:
        """The inverse of :meth:`to_record` (no events: the plan is recomputed silently)."""
        if rec.get("version") != _RECORD_VERSION:
            raise ValueError(f"unsupported monitor record version {rec.get('version')}")
        monitor = cls(
            funding_outpoint=outpoint_from_record(rec["funding_outpoint"]),
            funding_sat=rec["funding_sat"],
            commitment_format=CommitmentFormat(rec["commitment_format"]),
            opener=Side(rec["opener"]),
            holder_params=party_params_from_record(rec["holder_params"]),
            counterparty_params=party_params_from_record(rec["counterparty_params"]),
            keys=channel_keys_from_record(rec["keys"]),
            destination_script_pubkey=bytes.fromhex(rec["destination_script_pubkey"]),
            sweep_feerate_per_kw=rec["sweep_feerate_per_kw"], peer_name=rec["peer_name"])
        if rec["holder"] is not None:
            state, sig, htlc_sigs = rec["holder"]
            monitor._holder = _HolderState(
                state=commitment_state_from_record(state),
                counterparty_signature=bytes.fromhex(sig),
                counterparty_htlc_signatures=tuple(bytes.fromhex(s) for s in htlc_sigs))
        for state, point, txid in rec["counterparty"]:
            entry = _CounterpartyState(state=commitment_state_from_record(state),
                                       per_commitment_point=PerCommitmentPoint.from_hex(point),
                                       txid=bytes.fromhex(txid))
            monitor._counterparty[entry.state.commitment_number] = entry
        for state in rec["revoked"]:
            s = commitment_state_from_record(state)
            monitor._revoked[s.commitment_number] = s
        monitor._secrets = RevocationStore.from_bytes(bytes.fromhex(rec["secrets"]))
        for p in rec["preimages"]:
            preimage = bytes.fromhex(p)
            monitor._preimages[hashlib.sha256(preimage).digest()] = preimage
        for raw, height, depth in rec["txs"]:
            tx = CTransaction.deserialize(bytes.fromhex(raw))
            txid = bytes(tx.GetTxid())
            monitor._seen[txid] = _Seen(tx=tx, txid=txid, height=height,
                                        order=monitor._next_order, depth=depth)
            monitor._next_order += 1
            for txin in tx.vin:
                key = _outpoint_key(bytes(txin.prevout.hash), int(txin.prevout.n))
                monitor._spenders.setdefault(key, []).append(txid)
        monitor._tip_height = rec["tip_height"]
        monitor._plan = monitor._make_plan()
        monitor._resolved_reported = rec["resolved_reported"]
        return monitor
