"""What to claim after a channel's funding output is spent (BOLT 5 "On-chain Transaction
Handling").

Pure. :class:`ClaimPlanner` recomputes, from everything the monitor knows, the *plan*: how the
channel closed, the signed claims (sweeps, HTLC transactions, penalties) with the height from
which each is valid, the balances still pending and the peer's spends worth reporting. The
claim transactions come from the shared builders of :mod:`channel.sweeps` and
:mod:`channel.transactions`, which the watchtower uses too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from bitcoin.core import CTransaction

from channel.keys import (
    PrivateKey,
    derive_delayed_pubkey,
    derive_revocation_pubkey,
    static_payment_pubkey,
)
from channel.monitor_core import (
    MonitorCore,
    _CounterpartyState,
    _htlc_word,
    _Plan,
    _Planned,
    _Seen,
    _short,
)
from channel.monitor_events import (
    BalanceStatus,
    Claim,
    ClaimableBalance,
    ClaimKind,
    CloseKind,
    CloseOutcome,
    CounterpartySpend,
    HtlcFeeBump,
)
from channel.scripts import (
    htlc_output_script,
    p2wsh,
    to_local_script,
    to_remote_anchors_script,
    to_remote_script_pubkey,
)
from channel.sweeps import (
    SEQUENCE_NO_RELATIVE_LOCK,
    SpendableOutput,
    WitnessKind,
    build_sweep_transaction,
    delayed_output,
    find_preimages,
    remote_offered_htlc_output,
    remote_received_htlc_output,
    revoked_htlc_output,
    revoked_second_stage_output,
    revoked_to_local_output,
    second_stage_output,
    to_remote_output,
)
from channel.transactions import (
    CommitmentTransaction,
    HtlcOutput,
    build_htlc_transaction,
    commitment_number_from_tx,
    finalize_htlc_transaction,
)
from channel.types import CommitmentFormat, HtlcDirection, OutPoint

__all__ = ["ClaimPlanner"]

_FINAL_SEQUENCE = 0xFFFFFFFF


class ClaimPlanner(MonitorCore):
    """The planning half of :class:`channel.monitor.ChannelMonitor`."""

    def _make_plan(self) -> _Plan:
        plan = _Plan()
        funding = self._spender(self.funding_outpoint)
        if funding is None:
            return plan
        tx, h = funding.tx, funding.height
        number = commitment_number_from_tx(tx, self._factor)
        if self._holder is not None and self._holder_commitment().txid == funding.txid:
            self._plan_holder(plan, funding)
            return plan
        for entry in self._counterparty.values():
            if entry.txid == funding.txid:
                self._plan_counterparty(plan, funding, entry)
                return plan
        if number is not None and number in self._revoked:
            revoked = self._rebuild_revoked(self._revoked[number])
            if revoked.txid == funding.txid:
                self._plan_revoked(plan, funding, revoked)
                return plan
        if number is not None and self._is_own_old_commitment(tx, number):
            plan.close = CloseOutcome(
                kind=CloseKind.HOLDER_REVOKED_COMMITMENT, txid=funding.txid, height=h,
                commitment_number=number,
                description=f"our own revoked commitment #{number} {_short(funding.txid)} "
                            f"{self._where(h)} (a cheat): {self.peer_name} holds its revocation "
                            "secret and can take the whole channel with a penalty")
            return plan
        if tx.vin[0].nSequence == _FINAL_SEQUENCE and tx.nLockTime == 0:
            ours = sum(int(o.nValue) for o in tx.vout
                       if bytes(o.scriptPubKey) == self.destination_script_pubkey)
            plan.close = CloseOutcome(
                kind=CloseKind.COOPERATIVE, txid=funding.txid, height=h, commitment_number=None,
                description=f"cooperative close {_short(funding.txid)} "
                            f"{self._where(h)}: the outputs already pay each side's shutdown "
                            "script, nothing to claim")
            if ours and not self._is_deep(h):
                plan.balances.append(self._confirming_balance(
                    ours, h, "our output of the cooperative close"))
            return plan
        plan.close = CloseOutcome(
            kind=CloseKind.UNKNOWN, txid=funding.txid, height=h, commitment_number=number,
            description=f"ALERT: the funding output was spent by {_short(funding.txid)}, which "
                        "is none of the commitments we know: keys leaked, or our state is stale")
        self._plan_static_to_remote(plan, funding)
        return plan

    def _pays_us(self, tx: CTransaction) -> bool:
        return len(tx.vout) == 1 and \
            bytes(tx.vout[0].scriptPubKey) == self.destination_script_pubkey

    def _is_live(self, seen: _Seen) -> bool:
        """No input of ``seen`` went to another (preferred) transaction."""
        return all(self._spender(OutPoint(txid=bytes(i.prevout.hash), vout=int(i.prevout.n)))
                   is seen for i in seen.tx.vin)

    def _carrier(self, claim: Claim) -> tuple[_Seen | None, _Seen | None]:
        """(the tx of ours that carries ``claim``, spending exactly its inputs, if seen;
        a tx not ours that took one of its inputs, if any)."""
        second_stage = claim.kind in (ClaimKind.HTLC_TIMEOUT, ClaimKind.HTLC_SUCCESS)
        spenders = [self._spender(op) for op in claim.spends]
        for s in spenders:
            if s is None or s.txid == claim.txid or self._pays_us(s.tx):
                continue
            # A fee-bumped HTLC tx of ours keeps output 0 and gains inputs.
            if not (second_stage and s.tx.vout[0] == claim.tx.vout[0]):
                return None, s
        carrier = spenders[0]
        if carrier is None or any(s is not carrier for s in spenders) or \
                not self._is_live(carrier):
            return None, None
        spent = {OutPoint(txid=bytes(i.prevout.hash), vout=int(i.prevout.n))
                 for i in carrier.tx.vin}
        if spent != set(claim.spends) and not (second_stage and spent >= set(claim.spends)):
            return None, None   # an older grouping of ours, now conflicted: re-plan without it
        return carrier, None

    def _add_claim(self, plan: _Plan, claim: Claim) -> None:
        """Add ``claim``; its status comes from the tx of ours that spends its inputs."""
        carrier, taken = self._carrier(claim)
        if taken is not None:
            self._note_spend(plan, taken, f"an output we meant to claim "
                             f"({claim.kind.value}) went to {_short(taken.txid)}")
            return
        height: int | None = None
        in_mempool = False
        if carrier is not None:
            if carrier.txid != claim.txid:
                # Ours, built differently (another feerate, or fee inputs added): follow it.
                claim = dataclasses.replace(claim, tx=carrier.tx, txid=carrier.txid,
                                            amount_sat=int(carrier.tx.vout[0].nValue),
                                            fee_bump=None)
            height = carrier.height
            in_mempool = carrier.height is None
        key = (claim.kind.value, tuple(sorted(claim.spends, key=lambda o: (o.txid, o.vout))))
        plan.claims[key] = _Planned(claim=claim, height=height, in_mempool=in_mempool)
        if self._is_deep(height):
            return   # final: nothing left to get
        if height is not None:
            plan.balances.append(self._confirming_balance(
                claim.amount_sat, height, f"{claim.kind.value} {_short(claim.txid)}"))
        elif in_mempool:
            plan.balances.append(ClaimableBalance(
                status=BalanceStatus.AWAITING_CONFIRMATIONS, amount_sat=claim.amount_sat,
                claimable_from_height=None,
                description=f"{claim.kind.value} {_short(claim.txid)} in the mempool: "
                            f"{claim.amount_sat} sat"))
        else:
            status = BalanceStatus.CONTESTED if claim.kind in (
                ClaimKind.PENALTY, ClaimKind.SECOND_STAGE_PENALTY,
                ClaimKind.HTLC_TIMEOUT_CLAIM, ClaimKind.HTLC_TIMEOUT) else BalanceStatus.CLAIMABLE
            plan.balances.append(ClaimableBalance(
                status=status, amount_sat=claim.amount_sat,
                claimable_from_height=claim.broadcastable_at_height,
                description=claim.description))

    def _sweep(self, plan: _Plan, kind: ClaimKind, inputs: list[SpendableOutput],
               at: int, description: str) -> Claim | None:
        try:
            sweep = build_sweep_transaction(
                inputs, destination_script_pubkey=self.destination_script_pubkey,
                feerate_per_kw=self.sweep_feerate_per_kw)
        except ValueError as exc:  # the output would be dust: not worth a transaction
            plan.balances.append(ClaimableBalance(
                status=BalanceStatus.UNECONOMIC, amount_sat=sum(i.amount_sat for i in inputs),
                claimable_from_height=None, description=f"{description}: not worth it, {exc}"))
            return None
        claim = Claim(kind=kind, tx=sweep.tx, txid=sweep.txid,
                      spends=tuple(s.outpoint for s in inputs),
                      amount_sat=sweep.output_amount_sat, fee_sat=sweep.fee_sat,
                      broadcastable_at_height=at,
                      description=f"{description} -> {sweep.output_amount_sat} sat to us "
                                  f"after a {sweep.fee_sat} sat fee")
        self._add_claim(plan, claim)
        return claim

    def _awaiting_parent(self, plan: _Plan, amount: int, what: str) -> None:
        plan.open_items += 1
        plan.balances.append(ClaimableBalance(
            status=BalanceStatus.AWAITING_PARENT, amount_sat=amount, claimable_from_height=None,
            description=f"{what}: {amount} sat, once the transaction it spends confirms"))

    def _note_spend(self, plan: _Plan, seen: _Seen, description: str) -> None:
        plan.spends.setdefault(seen.txid, CounterpartySpend(
            txid=seen.txid, height=seen.height, description=description))
        if not self._is_deep(seen.height):
            plan.open_items += 1

    def _learn_preimages(self, plan: _Plan, seen: _Seen, hashes: Sequence[bytes]) -> None:
        for payment_hash, preimage in find_preimages(seen.tx, hashes).items():
            plan.preimages[payment_hash] = preimage

    # ---- our commitment on chain

    def _is_own_old_commitment(self, tx: CTransaction, number: int) -> bool:
        """``tx`` is a commitment of ours older than the latest: it pays the peer's to_remote
        key, or has our to_local at our per-commitment point ``number`` (BOLT 3)."""
        if self._holder is None or number >= self._holder.state.commitment_number:
            return False
        theirs = to_remote_script_pubkey(
            static_payment_pubkey(self.counterparty_params.basepoints.payment_basepoint),
            self.commitment_format)
        point = self.keys.per_commitment_point(number)
        to_local = p2wsh(to_local_script(
            derive_revocation_pubkey(self.counterparty_params.basepoints.revocation_basepoint,
                                     point),
            self.counterparty_params.to_self_delay,
            derive_delayed_pubkey(self.keys.basepoints().delayed_payment_basepoint, point)))
        return any(bytes(o.scriptPubKey) in (theirs, to_local) for o in tx.vout)

    def _plan_holder(self, plan: _Plan, funding: _Seen) -> None:
        assert self._holder is not None
        c = self._holder_commitment()
        h = funding.height
        anchors = self.commitment_format is CommitmentFormat.ANCHORS
        delay = c.to_self_delay
        htlc_note = f"; {_htlc_word(len(c.htlc_outputs))} to resolve" if c.htlc_outputs else ""
        plan.close = CloseOutcome(
            kind=CloseKind.HOLDER_COMMITMENT, txid=c.txid, height=h,
            commitment_number=c.commitment_number,
            description=f"our commitment #{c.commitment_number} ({_short(c.txid)}) is "
                        f"{self._where(h)}: our to_local {c.to_local_amount_sat} sat waits "
                        f"{delay} blocks (to_self_delay){htlc_note}")
        if c.to_local_vout is not None:
            spend = delayed_output(c, self.keys.delayed_payment_privkey(
                c.keys.per_commitment_point))
            if h is None:
                self._awaiting_parent(plan, spend.amount_sat, "our to_local")
            else:
                self._sweep(plan, ClaimKind.TO_LOCAL_SWEEP, [spend], h + delay - 1,
                            f"sweep our to_local {spend.amount_sat} sat of commitment "
                            f"#{c.commitment_number}, valid {delay} blocks after it confirmed "
                            f"(height {h + delay - 1} on)")
        htlc_key = self.keys.htlc_privkey(c.keys.per_commitment_point)
        sigs = dict(zip((o.vout for o in c.htlc_outputs),
                        self._holder.counterparty_htlc_signatures, strict=True))
        for ho in c.htlc_outputs:
            self._plan_holder_htlc(plan, c, ho, funding, htlc_key, sigs[ho.vout], anchors)

    def _plan_holder_htlc(self, plan: _Plan, c: CommitmentTransaction, ho: HtlcOutput,
                          funding: _Seen, htlc_key: PrivateKey, their_sig: bytes,
                          anchors: bool) -> None:
        h = funding.height
        htlc = ho.htlc
        htx = build_htlc_transaction(c, ho)
        second_spk = p2wsh(htx.output_script)
        spender = self._spender(c.outpoint(ho.vout))
        offered = htlc.direction is HtlcDirection.OFFERED
        label = f"HTLC #{htlc.htlc_id} ({ho.amount_sat} sat, " + \
            ("we offered" if offered else f"{self.peer_name} offered") + ")"
        if spender is not None and bytes(spender.tx.vout[0].scriptPubKey) != second_spk:
            if offered:
                self._learn_preimages(plan, spender, [htlc.payment_hash])
                self._note_spend(plan, spender, f"{self.peer_name} claimed our {label} with its "
                                 f"preimage in {_short(spender.txid)}: the payment succeeded")
            else:
                self._note_spend(plan, spender, f"{self.peer_name} took back its {label} after "
                                 f"its timeout in {_short(spender.txid)}")
            return
        preimage = None if offered else self._preimages.get(htlc.payment_hash)
        if not offered and preimage is None and spender is None:
            plan.open_items += 1
            plan.balances.append(ClaimableBalance(
                status=BalanceStatus.HTLC_PENDING, amount_sat=ho.amount_sat,
                claimable_from_height=None,
                description=f"{label}: ours only with its preimage; {self.peer_name} takes it "
                            f"back from height {htlc.cltv_expiry}"))
            return
        if anchors and h is None:
            self._awaiting_parent(plan, ho.amount_sat, label)
            return
        if offered:
            at = max(htlc.cltv_expiry, h or 0) if anchors else htlc.cltv_expiry
            kind = ClaimKind.HTLC_TIMEOUT
            what = f"HTLC-timeout for {label}, valid from height {at}"
        else:
            at = (h or 0) if anchors else 0
            kind = ClaimKind.HTLC_SUCCESS
            what = f"HTLC-success for {label} with its preimage"
        our_sig = htlc_key.sign(htx.broadcaster_sighash())
        signed = finalize_htlc_transaction(htx, countersignatory_signature=their_sig,
                                           broadcaster_signature=our_sig,
                                           payment_preimage=preimage)
        bump = None
        if anchors:
            bump = HtlcFeeBump(htlc_tx=htx, countersignatory_signature=their_sig,
                               broadcaster_htlc_privkey=htlc_key, payment_preimage=preimage)
            what += " (zero-fee: attach fee inputs)"
        claim = Claim(kind=kind, tx=signed, txid=htx.txid, spends=(c.outpoint(ho.vout),),
                      amount_sat=htx.output_amount_sat, fee_sat=htx.fee_sat,
                      broadcastable_at_height=at,
                      description=f"{what}; its output is ours {c.to_self_delay} blocks after "
                                  "it confirms", fee_bump=bump)
        self._add_claim(plan, claim)   # follows a fee-bumped second stage of ours, too
        if spender is None:
            return
        amount = int(spender.tx.vout[0].nValue)
        out = OutPoint(txid=spender.txid, vout=0)
        if spender.height is None:
            self._awaiting_parent(plan, amount, f"output of our {kind.value} tx")
            return
        delay = c.to_self_delay
        taker = self._spender(out)
        if taker is not None and not self._pays_us(taker.tx):
            self._note_spend(plan, taker, f"the output of our {kind.value} tx was spent by "
                             f"{_short(taker.txid)} (revocation path: we broadcast a revoked "
                             "state?)")
            return
        spend = second_stage_output(
            outpoint=out, amount_sat=amount, output_script=htx.output_script,
            to_self_delay=delay,
            delayed_privkey=self.keys.delayed_payment_privkey(c.keys.per_commitment_point))
        self._sweep(plan, ClaimKind.SECOND_STAGE_SWEEP, [spend], spender.height + delay - 1,
                    f"sweep the output of our {kind.value} tx for {label}, valid from height "
                    f"{spender.height + delay - 1}")

    # ---- the peer's current commitment on chain

    def _plan_counterparty(self, plan: _Plan, funding: _Seen, entry: _CounterpartyState) -> None:
        c = self._counterparty_commitment(entry)
        h = funding.height
        anchors = self.commitment_format is CommitmentFormat.ANCHORS
        when = "after 1 block (anchors)" if anchors else "at once"
        plan.close = CloseOutcome(
            kind=CloseKind.COUNTERPARTY_COMMITMENT, txid=c.txid, height=h,
            commitment_number=c.commitment_number,
            description=f"{self.peer_name} force-closed with its current commitment "
                        f"#{c.commitment_number} ({_short(c.txid)}), {self._where(h)}: our "
                        f"to_remote {c.to_remote_amount_sat} sat is ours {when}"
                        + (f"; {_htlc_word(len(c.htlc_outputs))} to resolve"
                           if c.htlc_outputs else ""))
        self._plan_to_remote(plan, c, h)
        htlc_key = self.keys.htlc_privkey(c.keys.per_commitment_point)
        for ho in c.htlc_outputs:
            htlc = ho.htlc
            op = c.outpoint(ho.vout)
            spender = self._spender(op)
            theirs = htlc.direction is HtlcDirection.OFFERED
            label = f"HTLC #{htlc.htlc_id} ({ho.amount_sat} sat, " + \
                (f"{self.peer_name} offered" if theirs else "we offered") + ")"
            if spender is not None and not self._pays_us(spender.tx):
                if theirs:
                    self._note_spend(plan, spender, f"{self.peer_name} took back its {label} "
                                     f"with its HTLC-timeout tx {_short(spender.txid)}")
                else:
                    self._learn_preimages(plan, spender, [htlc.payment_hash])
                    self._note_spend(plan, spender, f"{self.peer_name} claimed our {label} with "
                                     f"its HTLC-success tx {_short(spender.txid)}: paid")
                continue
            if anchors and h is None:
                self._awaiting_parent(plan, ho.amount_sat, label)
                continue
            if theirs:
                preimage = self._preimages.get(htlc.payment_hash)
                if preimage is None:
                    plan.open_items += 1
                    plan.balances.append(ClaimableBalance(
                        status=BalanceStatus.HTLC_PENDING, amount_sat=ho.amount_sat,
                        claimable_from_height=None,
                        description=f"{label}: ours only with its preimage; {self.peer_name} "
                                    f"takes it back from height {htlc.cltv_expiry}"))
                    continue
                spend = remote_offered_htlc_output(c, ho, htlc_key, preimage)
                self._sweep(plan, ClaimKind.HTLC_PREIMAGE_CLAIM, [spend],
                            (h or 0) if anchors else 0,
                            f"claim {label} on {self.peer_name}'s commitment with its preimage")
            else:
                spend = remote_received_htlc_output(c, ho, htlc_key)
                at = max(htlc.cltv_expiry, h or 0) if anchors else htlc.cltv_expiry
                self._sweep(plan, ClaimKind.HTLC_TIMEOUT_CLAIM, [spend], at,
                            f"take back {label} after its timeout, valid from height {at}")

    def _plan_to_remote(self, plan: _Plan, c: CommitmentTransaction, h: int | None) -> None:
        if c.to_remote_vout is None:
            return
        spend = to_remote_output(c, self.keys.payment_privkey())
        anchors = self.commitment_format is CommitmentFormat.ANCHORS
        if anchors and h is None:
            self._awaiting_parent(plan, spend.amount_sat, "our to_remote")
            return
        self._sweep(plan, ClaimKind.TO_REMOTE_SWEEP, [spend], (h or 0) if anchors else 0,
                    f"sweep our to_remote {spend.amount_sat} sat from {self.peer_name}'s "
                    f"commitment #{c.commitment_number}")

    def _plan_static_to_remote(self, plan: _Plan, funding: _Seen) -> None:
        """Our to_remote on a commitment of the peer's we never saw (our state is stale).

        The point of ``option_static_remotekey``: our to_remote pays the same untweaked key in
        every commitment of the peer's, so a node restored from an old backup, which must not
        broadcast its own (revoked) commitment, still finds and sweeps its latest balance.
        """
        pubkey = static_payment_pubkey(self.keys.basepoints().payment_basepoint)
        anchors = self.commitment_format is CommitmentFormat.ANCHORS
        script_pubkey = to_remote_script_pubkey(pubkey, self.commitment_format)
        for vout, out in enumerate(funding.tx.vout):
            if bytes(out.scriptPubKey) != script_pubkey:
                continue
            amount = int(out.nValue)
            if anchors and funding.height is None:
                self._awaiting_parent(plan, amount, "our to_remote")
                continue
            spend = SpendableOutput(
                outpoint=OutPoint(txid=funding.txid, vout=vout), amount_sat=amount,
                kind=WitnessKind.SIG_ONLY if anchors else WitnessKind.P2WPKH,
                witness_script=to_remote_anchors_script(pubkey) if anchors else None,
                signing_key=self.keys.payment_privkey(),
                sequence=1 if anchors else SEQUENCE_NO_RELATIVE_LOCK)
            self._sweep(plan, ClaimKind.TO_REMOTE_SWEEP, [spend],
                        (funding.height or 0) if anchors else 0,
                        f"sweep our to_remote {amount} sat from {self.peer_name}'s commitment "
                        f"{_short(funding.txid)}, newer than our state")

    # ---- the peer's revoked commitment on chain

    def _plan_revoked(self, plan: _Plan, funding: _Seen, c: CommitmentTransaction) -> None:
        h = funding.height
        rk = self.revocation_privkey(c.commitment_number)
        second_spk = p2wsh(htlc_output_script(c.keys.revocation_pubkey, c.to_self_delay,
                                              c.keys.broadcaster_delayed_pubkey))
        revocable: list[SpendableOutput] = []
        # Outputs a live tx of ours already takes (ours earlier, or our tower's per-output
        # justice txs paying the same script) are followed as they are, not re-grouped.
        adopted: dict[bytes, tuple[_Seen, list[SpendableOutput]]] = {}
        second_stage: list[tuple[HtlcOutput, _Seen]] = []
        to_local_sat = 0
        htlc_count = 0
        htlc_sat = 0
        lost: list[str] = []
        candidates: list[tuple[SpendableOutput, HtlcOutput | None]] = []
        if c.to_local_vout is not None:
            candidates.append((revoked_to_local_output(c, rk), None))
        candidates += [(revoked_htlc_output(c, ho, rk), ho) for ho in c.htlc_outputs]
        for spend, ho in candidates:
            spender = self._spender(spend.outpoint)
            if spender is not None and self._pays_us(spender.tx) and self._is_live(spender):
                adopted.setdefault(spender.txid, (spender, []))[1].append(spend)
            elif spender is None or self._pays_us(spender.tx):
                revocable.append(spend)   # unspent, or a grouping of ours that lost an input
            elif ho is None:
                lost.append(f"to_local {c.to_local_amount_sat} sat")
                self._note_spend(plan, spender, f"{self.peer_name} swept its revoked to_local "
                                 f"({c.to_local_amount_sat} sat) in {_short(spender.txid)}: the "
                                 "penalty came too late")
                continue
            elif bytes(spender.tx.vout[0].scriptPubKey) == second_spk:
                second_stage.append((ho, spender))
                continue
            else:
                lost.append(f"HTLC #{ho.htlc.htlc_id} {ho.amount_sat} sat")
                self._note_spend(plan, spender, f"HTLC #{ho.htlc.htlc_id} of the revoked "
                                 f"commitment went to {_short(spender.txid)}")
                continue
            if ho is None:
                to_local_sat = c.to_local_amount_sat
            else:
                htlc_count += 1
                htlc_sat += ho.amount_sat
        takes = []
        if to_local_sat:
            takes.append(f"to_local {to_local_sat} sat")
        if htlc_count:
            takes.append(f"{_htlc_word(htlc_count)} ({htlc_sat} sat)")
        plan.close = CloseOutcome(
            kind=CloseKind.REVOKED_COMMITMENT, txid=c.txid, height=h,
            commitment_number=c.commitment_number,
            description=f"{self.peer_name} broadcast REVOKED commitment #{c.commitment_number} "
                        f"({_short(c.txid)}), {self._where(h)}: it gave us that state's "
                        "per-commitment secret when it revoked it, so our revocation key spends "
                        "its outputs at once, before its to_self_delay of "
                        f"{c.to_self_delay} blocks runs out"
                        + (f"; penalty takes {' and '.join(takes)}" if takes else "")
                        + (f"; lost: {', '.join(lost)}" if lost else ""))
        for seen, spends in adopted.values():
            taken = sum(sp.amount_sat for sp in spends)
            out = int(seen.tx.vout[0].nValue)
            self._add_claim(plan, Claim(
                kind=ClaimKind.PENALTY, tx=seen.tx, txid=seen.txid,
                spends=tuple(OutPoint(txid=bytes(i.prevout.hash), vout=int(i.prevout.n))
                             for i in seen.tx.vin),
                amount_sat=out, fee_sat=taken - out, broadcastable_at_height=0,
                description=f"penalty {_short(seen.txid)} for revoked commitment "
                            f"#{c.commitment_number} takes {len(spends)} output(s), "
                            f"{taken} sat -> {out} sat to us"))
        if revocable:
            self._sweep(plan, ClaimKind.PENALTY, revocable, 0,
                        f"penalty for revoked commitment #{c.commitment_number}: "
                        f"{' and '.join(takes)} with the revocation key")
        for ho, spender in second_stage:
            self._plan_second_stage_penalty(plan, c, ho, spender, rk)
        self._plan_to_remote(plan, c, h)

    def _plan_second_stage_penalty(self, plan: _Plan, c: CommitmentTransaction, ho: HtlcOutput,
                                   spender: _Seen, rk: PrivateKey) -> None:
        kind = "HTLC-timeout" if ho.htlc.direction is HtlcDirection.OFFERED else "HTLC-success"
        self._learn_preimages(plan, spender, [ho.htlc.payment_hash])
        self._note_spend(plan, spender, f"{self.peer_name} raced the penalty: its {kind} tx "
                         f"{_short(spender.txid)} spent HTLC #{ho.htlc.htlc_id} of revoked "
                         f"commitment #{c.commitment_number}; its output is still revocable")
        out = OutPoint(txid=spender.txid, vout=0)
        amount = int(spender.tx.vout[0].nValue)
        taker = self._spender(out)
        if taker is not None and not self._pays_us(taker.tx):
            self._note_spend(plan, taker, f"{self.peer_name} swept the output of its {kind} tx "
                             f"in {_short(taker.txid)}: too late to penalise it")
            return
        script = htlc_output_script(c.keys.revocation_pubkey, c.to_self_delay,
                                    c.keys.broadcaster_delayed_pubkey)
        spend = revoked_second_stage_output(outpoint=out, amount_sat=amount,
                                            output_script=script, revocation_privkey=rk)
        self._sweep(plan, ClaimKind.SECOND_STAGE_PENALTY, [spend], 0,
                    f"second-stage penalty: the output of {self.peer_name}'s {kind} tx "
                    f"({amount} sat) with the revocation key")

