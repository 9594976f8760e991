"""The intermediate node: HTLCs forwarded from one channel to another (BOLT 4 + BOLT 2).

Pure. An incoming HTLC, once irrevocably committed, is peeled; a forward payload is checked
by :func:`~channel.forwarding.decide_forward` against this node's :class:`NodePolicy` for the
outgoing channel (named by its ``short_channel_id``), then offered there with the next onion.
The pair is a :class:`ForwardLink`, persisted (a :class:`~channel.store.ForwardRow`) in the
same flight as the two channels' HTLC state, so a restart finds every forward in flight.

The incoming HTLC is resolved only after its outgoing one (BOLT 4 "Returning Errors", BOLT 2
"Removing an HTLC"): a preimage from downstream is passed upstream at once (it can only help
us); a downstream failure only once its removal is irrevocably committed on the outgoing
channel (before that, the downstream peer could still claim the HTLC on chain). Every
decision is re-derived by :meth:`Forwarder.settle` from the links and the channels' logs, so a
fulfil or fail lost with a connection (BOLT 2 drops unsigned updates) is simply sent again.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from channel.effects import ChannelHandle, Effects
from channel.errors import RejectedUpdate
from channel.failure_onion import build_failure_onion, wrap_failure_onion
from channel.forwarding import (
    ForwardHtlc,
    IncomingHtlc,
    OutgoingChannel,
    decide_forward,
)
from channel.htlc_log import HtlcEntry, Removal
from channel.node_policy import (
    DEFAULT_CLTV_EXPIRY_DELTA,
    DEFAULT_FEE_BASE_MSAT,
    DEFAULT_FEE_PROPORTIONAL_MILLIONTHS,
    NodePolicy,
)
from channel.onion import OnionRejected, PeeledFinal, PeeledForward, peel_payment_onion
from channel.onion_failures import (
    FailureFlag,
    OnionFailure,
    PermanentChannelFailure,
    TemporaryChannelFailure,
    malformed_failure,
)
from channel.payer import local_short_channel_id
from channel.state import ChannelState
from channel.store import ForwardRow
from channel.types import Side

if TYPE_CHECKING:
    from channel.monitor_events import CloseOutcome

__all__ = [
    "DEFAULT_CLTV_EXPIRY_DELTA",
    "DEFAULT_FEE_BASE_MSAT",
    "DEFAULT_FEE_PROPORTIONAL_MILLIONTHS",
    "ForwardLink",
    "Forwarder",
    "NodePolicy",
]

@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardLink:
    """One forwarded HTLC: incoming (channel key, htlc id) ↔ outgoing (channel key, htlc id).

    ``shared_secret`` wraps failures back to the payer; ``preimage`` is what fulfils upstream;
    ``downstream_failure`` is the outgoing HTLC's failure, already wrapped with our layer,
    applied upstream once that failure is committed; ``local_failure`` is ours (the outgoing
    HTLC never reached the peer's commitment), already encrypted.
    """

    incoming_key: str
    incoming_htlc_id: int
    outgoing_key: str
    outgoing_htlc_id: int
    payment_hash: bytes
    shared_secret: bytes
    incoming_amount_msat: int
    outgoing_amount_msat: int
    preimage: bytes | None = None
    downstream_failure: bytes | None = None

    @property
    def incoming(self) -> tuple[str, int]:
        return self.incoming_key, self.incoming_htlc_id

    @property
    def fee_msat(self) -> int:
        return self.incoming_amount_msat - self.outgoing_amount_msat

    def to_record(self) -> dict[str, Any]:
        return {"incoming_key": self.incoming_key, "incoming_htlc_id": self.incoming_htlc_id,
                "outgoing_key": self.outgoing_key, "outgoing_htlc_id": self.outgoing_htlc_id,
                "payment_hash": self.payment_hash.hex(), "shared_secret": self.shared_secret.hex(),
                "incoming_amount_msat": self.incoming_amount_msat,
                "outgoing_amount_msat": self.outgoing_amount_msat,
                "preimage": None if self.preimage is None else self.preimage.hex(),
                "downstream_failure": None if self.downstream_failure is None
                else self.downstream_failure.hex()}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> ForwardLink:
        def opt(name: str) -> bytes | None:
            value = record.get(name)
            return None if value is None else bytes.fromhex(value)
        return cls(incoming_key=record["incoming_key"],
                   incoming_htlc_id=int(record["incoming_htlc_id"]),
                   outgoing_key=record["outgoing_key"],
                   outgoing_htlc_id=int(record["outgoing_htlc_id"]),
                   payment_hash=bytes.fromhex(record["payment_hash"]),
                   shared_secret=bytes.fromhex(record["shared_secret"]),
                   incoming_amount_msat=int(record["incoming_amount_msat"]),
                   outgoing_amount_msat=int(record["outgoing_amount_msat"]),
                   preimage=opt("preimage"), downstream_failure=opt("downstream_failure"))


class Forwarder:
    """The forwards in flight through this node, and what to do with each of them."""

    def __init__(self, *, node_secret: bytes, policy: NodePolicy | None = None,
                 links: Iterable[ForwardLink] = ()) -> None:
        self._node_secret = node_secret
        self.policy = policy or NodePolicy()
        # our signed channel_update for an outgoing channel, for BOLT 4 UPDATE failures (the
        # payer applies it and retries); set by the manager, which holds the gossip signer
        self.channel_update: Callable[[ChannelHandle, NodePolicy], bytes] = lambda h, p: b""
        self.links: dict[tuple[str, int], ForwardLink] = {link.incoming: link for link in links}
        self._by_outgoing = {(link.outgoing_key, link.outgoing_htlc_id): link.incoming
                             for link in self.links.values()}
        # incoming channels with a forward waiting for its outgoing channel's reestablish
        self._deferred: set[str] = set()
        # channel key -> incoming HTLC id -> its peeled onion, for HTLCs that are not forwards
        self._final: dict[str, dict[int, PeeledFinal | OnionRejected]] = {}

    # -- lookups -----------------------------------------------------------------------------

    def link_of_outgoing(self, key: str, htlc_id: int) -> ForwardLink | None:
        incoming = self._by_outgoing.get((key, htlc_id))
        return None if incoming is None else self.links.get(incoming)

    @staticmethod
    def channel_by_scid(handles: Iterable[ChannelHandle], scid: bytes) -> ChannelHandle | None:
        """Our channel named ``scid``: its real BOLT 7 scid, or its alias."""
        for handle in handles:
            outpoint = handle.channel.funding_outpoint
            if outpoint is None or handle.channel.state is ChannelState.CLOSED:
                continue
            if scid in (handle.short_channel_id, local_short_channel_id(handle)):
                return handle
        return None

    def report(self, handles: Iterable[ChannelHandle]) -> dict[str, Any]:
        """Our policy, the scids our channels answer to, and the forwards in flight."""
        policy = self.policy
        return {
            "fee_base_msat": policy.fee_base_msat,
            "fee_proportional_millionths": policy.fee_proportional_millionths,
            "cltv_expiry_delta": policy.cltv_expiry_delta,
            "channels": [{"channel": h.key, "peer_id": h.peer_id.hex(),
                          "short_channel_id": None if h.short_channel_id is None
                          else h.short_channel_id.hex(),
                          "alias": local_short_channel_id(h).hex()}
                         for h in handles if h.channel.funding_outpoint is not None],
            "in_flight": [{"incoming": f"{link.incoming_key}:{link.incoming_htlc_id}",
                           "outgoing": f"{link.outgoing_key}:{link.outgoing_htlc_id}",
                           "payment_hash": link.payment_hash.hex(),
                           "amount_msat": link.outgoing_amount_msat, "fee_msat": link.fee_msat,
                           "preimage_known": link.preimage is not None}
                          for link in self.links.values()]}

    def _save(self, link: ForwardLink, fx: Effects) -> None:
        self.links[link.incoming] = link
        self._by_outgoing[(link.outgoing_key, link.outgoing_htlc_id)] = link.incoming
        fx.forwards.append(ForwardRow(incoming_key=link.incoming_key,
                                      incoming_htlc_id=link.incoming_htlc_id,
                                      record=link.to_record()))

    def _forget(self, link: ForwardLink, fx: Effects) -> None:
        self.links.pop(link.incoming, None)
        self._by_outgoing.pop((link.outgoing_key, link.outgoing_htlc_id), None)
        fx.forwards.append(ForwardRow(incoming_key=link.incoming_key,
                                      incoming_htlc_id=link.incoming_htlc_id, record=None))

    # -- incoming HTLCs ----------------------------------------------------------------------

    def forward_incoming(self, handles: Mapping[str, ChannelHandle], handle: ChannelHandle,
                         height: int, fx: Effects) -> None:
        """Forward (or fail) the HTLCs newly locked in on ``handle`` whose onion says forward,
        and those that waited for their outgoing channel to be reestablished.

        Final-hop HTLCs are left alone (the payee's side, :mod:`channel.payments`)."""
        keys = [handle.key, *(key for key in self._deferred if key != handle.key)]
        self._deferred.clear()
        for key in keys:
            incoming = handles.get(key)
            if incoming is not None:
                self._forward_channel(handles, incoming, height, fx)

    def _forward_channel(self, handles: Mapping[str, ChannelHandle], handle: ChannelHandle,
                         height: int, fx: Effects) -> None:
        chan = handle.channel
        # HTLCs already found to be ours (a held invoice waits here for many flights): one
        # ECDH each, not one per flight
        known_final = self._final.get(handle.key, {})
        still_final: dict[int, PeeledFinal | OnionRejected] = {}
        for entry in chan.htlcs_to_settle():
            if (handle.key, entry.htlc_id) in self.links:
                continue
            if entry.htlc_id in known_final:
                still_final[entry.htlc_id] = known_final[entry.htlc_id]
                continue
            peeled = peel_payment_onion(onion=entry.onion_routing_packet,
                                        node_key=self._node_secret,
                                        payment_hash=entry.payment_hash)
            if not isinstance(peeled, PeeledForward):
                still_final[entry.htlc_id] = peeled
                continue
            self._forward(handles, handle, entry, peeled, height, fx)
        self._final[handle.key] = still_final

    def final_peels(self, key: str) -> Mapping[int, PeeledFinal | OnionRejected]:
        """The onions of channel ``key``'s incoming HTLCs that end here, as peeled by the last
        :meth:`forward_incoming`: the payee reads them instead of peeling each onion again
        (one ECDH per HTLC, not two)."""
        return self._final.get(key, {})

    def _forward(self, handles: Mapping[str, ChannelHandle], handle: ChannelHandle,
                 entry: HtlcEntry, peeled: PeeledForward, height: int, fx: Effects) -> None:
        out = self.channel_by_scid(handles.values(), peeled.short_channel_id)
        if out is not None and out.channel.reestablish_pending and \
                out.channel.state is ChannelState.NORMAL:
            # after a restart the peers come back one by one: wait for this one rather than
            # fail a payment that may go through a moment later
            self._deferred.add(handle.key)
            return
        outgoing = None if out is None or out is handle else OutgoingChannel(
            policy=self.policy.for_channel(out),
            available_msat=out.channel.available_to_send_msat())
        decision = decide_forward(
            incoming=IncomingHtlc(amount_msat=entry.amount_msat, cltv_expiry=entry.cltv_expiry),
            forward=peeled, outgoing=outgoing, current_height=height)
        if isinstance(decision, OnionFailure) and out is not None and outgoing is not None and \
                decision.flags & FailureFlag.UPDATE:
            # the same decision again, now carrying our channel_update (signed only on failure)
            decision = decide_forward(
                incoming=IncomingHtlc(amount_msat=entry.amount_msat,
                                      cltv_expiry=entry.cltv_expiry),
                forward=peeled, current_height=height,
                outgoing=replace(outgoing, channel_update=self.channel_update(out, self.policy)))
        if isinstance(decision, OnionFailure):
            self._fail_local(handle, entry, peeled.shared_secret, decision, fx)
            return
        assert out is not None and isinstance(decision, ForwardHtlc)
        try:
            add = out.channel.add_htlc(amount_msat=decision.amount_msat,
                                       payment_hash=entry.payment_hash,
                                       cltv_expiry=decision.cltv_expiry,
                                       onion_routing_packet=decision.onion_routing_packet)
        except RejectedUpdate:
            self._fail_local(handle, entry, peeled.shared_secret, TemporaryChannelFailure(), fx)
            return
        fx.touch(out)
        fx.touch(handle)
        fx.send(out.peer_id, add)
        self._save(ForwardLink(
            incoming_key=handle.key, incoming_htlc_id=entry.htlc_id, outgoing_key=out.key,
            outgoing_htlc_id=add.id, payment_hash=entry.payment_hash,
            shared_secret=peeled.shared_secret, incoming_amount_msat=entry.amount_msat,
            outgoing_amount_msat=decision.amount_msat), fx)

    @staticmethod
    def _fail_local(handle: ChannelHandle, entry: HtlcEntry, shared_secret: bytes,
                    failure: OnionFailure, fx: Effects) -> None:
        """BOLT 4 "Returning Errors": we are the erring node; the payer reads ``failure``."""
        reason = build_failure_onion(shared_secret=shared_secret, failure=failure)
        fx.touch(handle)
        fx.send(handle.peer_id, handle.channel.fail_htlc(entry.htlc_id, reason))

    # -- outcomes from downstream ------------------------------------------------------------

    def outgoing_fulfilled(self, key: str, htlc_id: int, preimage: bytes,
                           fx: Effects) -> bool:
        """The next hop revealed the preimage of our HTLC ``htlc_id`` on channel ``key``: it
        is ours to claim upstream. False when that HTLC is no forward of ours."""
        link = self.link_of_outgoing(key, htlc_id)
        if link is not None and link.preimage is None:
            self._save(replace(link, preimage=preimage), fx)
        return link is not None

    def outgoing_failed(self, key: str, htlc_id: int, reason: bytes, fx: Effects) -> bool:
        """The next hop failed the HTLC: add our layer; applied once the failure is committed.
        False when that HTLC is no forward of ours."""
        link = self.link_of_outgoing(key, htlc_id)
        if link is not None and link.preimage is None:
            wrapped = wrap_failure_onion(shared_secret=link.shared_secret, packet=reason)
            self._save(replace(link, downstream_failure=wrapped), fx)
        return link is not None

    def outgoing_malformed(self, key: str, htlc_id: int, failure_code: int,
                           sha256_of_onion: bytes, fx: Effects) -> bool:
        """BOLT 4: the next hop could not read its onion; we turn it into a failure of ours.
        False when that HTLC is no forward of ours."""
        link = self.link_of_outgoing(key, htlc_id)
        if link is not None and link.preimage is None:
            failure = malformed_failure(failure_code, sha256_of_onion)
            self._save(replace(link, downstream_failure=build_failure_onion(
                shared_secret=link.shared_secret, failure=failure)), fx)
        return link is not None

    def settle(self, handles: Mapping[str, ChannelHandle],
               fx: Effects) -> list[tuple[ChannelHandle, bytes]]:
        """Resolve every incoming HTLC whose outgoing one is resolved; the preimages sent
        upstream, by incoming channel (its monitor must learn them)."""
        released: list[tuple[ChannelHandle, bytes]] = []
        for link in list(self.links.values()):
            incoming = handles.get(link.incoming_key)
            out = handles.get(link.outgoing_key)
            if incoming is None or incoming.channel.log is None:
                continue
            if incoming.monitor is not None and \
                    _breach_confirmed(incoming.monitor.close_outcome) and \
                    (out is None or out.channel.log is None or
                     (Side.HOLDER, link.outgoing_htlc_id) not in out.channel.log.htlcs):
                # the upstream peer's revoked commitment is on chain and our penalty takes all
                # of it; the outgoing side is resolved too: nothing is left to settle
                self._forget(link, fx)
                continue
            in_entry = incoming.channel.log.htlcs.get((Side.COUNTERPARTY, link.incoming_htlc_id))
            if in_entry is None:
                self._forget(link, fx)   # resolved upstream and gone from both commitments
                continue
            if in_entry.removal is not None:
                continue                 # our fulfil / fail is on its way
            if incoming.channel.state in _ON_CHAIN:
                released += self._settle_on_chain(link, incoming, out, fx)
                continue
            if incoming.channel.state not in (ChannelState.NORMAL, ChannelState.SHUTTING_DOWN):
                continue
            if in_entry not in incoming.channel.htlcs_to_settle():
                if incoming.channel.reestablish_pending:
                    released += self._preimage_while_away(link, incoming, out, fx)
                continue
            reason = self._failure_to_send(link, out)
            preimage = link.preimage
            if preimage is None and out is not None:
                preimage = self._preimage_downstream(link, out)
            if preimage is not None:
                fx.touch(incoming)
                fx.send(incoming.peer_id, incoming.channel.fulfill_htlc(link.incoming_htlc_id,
                                                                        preimage))
                if link.preimage is None:
                    self._save(replace(link, preimage=preimage), fx)
                released.append((incoming, preimage))
            elif reason is not None:
                fx.touch(incoming)
                fx.send(incoming.peer_id, incoming.channel.fail_htlc(link.incoming_htlc_id,
                                                                     reason))
        return released

    def _settle_on_chain(self, link: ForwardLink, incoming: ChannelHandle,
                         out: ChannelHandle | None,
                         fx: Effects) -> list[tuple[ChannelHandle, bytes]]:
        """The incoming channel went to chain with our HTLC on it (BOLT 5): a preimage from
        downstream goes to its monitor, which claims the HTLC with it (HTLC-success on our
        commitment, a preimage claim on the peer's); a downstream failure leaves it to the peer,
        who takes it back after its timeout. Either way the forward is over for us."""
        preimage = link.preimage
        if preimage is None and out is not None:
            preimage = self._preimage_downstream(link, out)
        if preimage is not None:
            self._forget(link, fx)
            return [(incoming, preimage)]
        if self._failure_to_send(link, out) is not None:
            self._forget(link, fx)
        return []

    def _preimage_while_away(self, link: ForwardLink, incoming: ChannelHandle,
                             out: ChannelHandle | None,
                             fx: Effects) -> list[tuple[ChannelHandle, bytes]]:
        """The upstream peer is away and cannot take our fulfil yet: the incoming channel's
        monitor learns the preimage anyway, so that if the peer stays away the BOLT 2
        fulfilled-HTLC deadline takes the HTLC on chain with it before it expires."""
        preimage = link.preimage
        if preimage is None and out is not None:
            preimage = self._preimage_downstream(link, out)
            if preimage is not None:
                self._save(replace(link, preimage=preimage), fx)   # looked up once
        return [] if preimage is None else [(incoming, preimage)]

    @staticmethod
    def _preimage_downstream(link: ForwardLink, out: ChannelHandle) -> bytes | None:
        """The preimage the next hop gave us off chain, or that its channel's monitor learnt
        on chain (BOLT 5: the peer's HTLC-success, or its claim of our offered output)."""
        if out.channel.log is not None:
            out_entry = out.channel.log.htlcs.get((Side.HOLDER, link.outgoing_htlc_id))
            if out_entry is not None and out_entry.removal is Removal.FULFILLED:
                return out_entry.payment_preimage
        if out.monitor is not None:
            return out.monitor.known_preimages().get(link.payment_hash)
        return None

    def _failure_to_send(self, link: ForwardLink, out: ChannelHandle | None) -> bytes | None:
        """The failure to send upstream now, if the outgoing HTLC has failed for good."""
        if out is None or out.channel.log is None:
            return build_failure_onion(shared_secret=link.shared_secret,
                                       failure=TemporaryChannelFailure())
        if out.monitor is not None and out.monitor.offered_htlc_failed(link.outgoing_htlc_id):
            # BOLT 5: the commitment on chain is final and our HTLC-timeout (or timeout claim)
            # of this HTLC is too, or it has no output there: the peer can never claim it
            return build_failure_onion(shared_secret=link.shared_secret,
                                       failure=PermanentChannelFailure())
        if out.monitor is not None and _breach_confirmed(out.monitor.close_outcome):
            # the peer's revoked commitment is on chain: our penalty takes every output of it,
            # this HTLC's included, so the payment can never complete downstream (a preimage
            # it reveals on chain is used first: settle() prefers it)
            return build_failure_onion(shared_secret=link.shared_secret,
                                       failure=PermanentChannelFailure())
        out_entry = out.channel.log.htlcs.get((Side.HOLDER, link.outgoing_htlc_id))
        if out_entry is None:
            # pruned after a committed failure, or an add the connection dropped unsigned
            return link.downstream_failure or build_failure_onion(
                shared_secret=link.shared_secret, failure=TemporaryChannelFailure())
        if out_entry.removal is Removal.FAILED and out.channel.removal_committed(out_entry):
            if link.downstream_failure is not None:
                return link.downstream_failure
            return wrap_failure_onion(shared_secret=link.shared_secret,
                                      packet=out_entry.fail_reason or b"")
        return None


#: the channel's funding output is spent (or our commitment sent): HTLCs resolve on chain
_ON_CHAIN = (ChannelState.FORCE_CLOSING, ChannelState.CLOSED)


def _breach_confirmed(close: CloseOutcome | None) -> bool:
    """The channel's funding output is spent by the peer's revoked commitment, confirmed."""
    if close is None:
        return False
    # a close outcome comes from the channel's monitor, so its module is loaded already: an
    # idle node does not load the monitor's (see tests/integration/test_idle_footprint.py)
    from channel.monitor_events import CloseKind
    return close.kind is CloseKind.REVOKED_COMMITMENT and close.height is not None
