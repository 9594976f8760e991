"""Label a channel's on-chain outputs from its keys: owner, amount, script kind, spend paths.

Pure. An output is classified by matching its scriptPubKey against the BOLT 3 scripts the
channel's keys give (:mod:`channel.scripts`): for a commitment, the keys of
:class:`channel.transactions.CommitmentKeys` (derived from the broadcaster's
``per_commitment_point``), ``to_self_delay`` and the HTLCs it carries; for the funding output,
the two funding pubkeys; for wallets, the caller's map of scriptPubKey to owner. An output
that matches nothing is labelled UNKNOWN rather than guessed.

The spend paths follow BOLT 3 (anchors add a 1-block CSV to to_remote and the HTLC paths):

    to_local          broadcaster after to_self_delay (CSV), delayed key | countersignatory,
                      revocation key
    to_remote         countersignatory, payment key (anchors: after 1 block)
    offered HTLC      broadcaster from cltv_expiry via the HTLC-timeout tx | countersignatory
                      with the preimage | countersignatory, revocation key
    received HTLC     broadcaster with the preimage via the HTLC-success tx | countersignatory
                      from cltv_expiry | countersignatory, revocation key
    anchor            its owner, funding key | anyone after 16 blocks
    HTLC-tx output    as to_local
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from bitcoin.core import CTransaction

from channel.keys import Basepoints, FundingPubkey, PerCommitmentPoint
from channel.scripts import (
    anchor_script,
    funding_script,
    htlc_output_script,
    offered_htlc_script,
    p2wsh,
    received_htlc_script,
    to_local_script,
    to_remote_script_pubkey,
)
from channel.transactions import CommitmentKeys, CommitmentTransaction
from channel.types import CommitmentFormat, CommitmentHtlc, HtlcDirection
from regtest.txgraph import OutputLabel, ScriptKind, SpendPath, TxRecord, TxRole

__all__ = [
    "CommitmentView",
    "commitment_record",
    "funding_record",
    "htlc_tx_record",
    "label_commitment",
    "label_funding",
    "label_htlc_tx",
    "label_wallet_outputs",
    "wallet_record",
]

REVOCATION_KEY = "the revocation key"


@dataclass(frozen=True, slots=True, kw_only=True)
class CommitmentView:
    """What it takes to label one commitment's outputs (and its HTLC transactions').

    ``broadcaster`` holds the commitment and may publish it, ``countersignatory`` is the
    other party (names as people should read them). ``to_self_delay`` is the delay on the
    broadcaster's to_local (the value the countersignatory asked for). ``htlcs`` are the
    HTLCs on this commitment, ``direction`` from the broadcaster's view (trimmed ones may be
    included: they match no output).
    """

    broadcaster: str
    countersignatory: str
    commitment_number: int
    keys: CommitmentKeys
    to_self_delay: int
    commitment_format: CommitmentFormat
    htlcs: tuple[CommitmentHtlc, ...] = ()
    revoked: bool = False

    def __post_init__(self) -> None:
        if self.broadcaster == self.countersignatory:
            raise ValueError("CommitmentView: broadcaster and countersignatory must differ")
        if not 0 < self.to_self_delay <= 0xFFFF:
            raise ValueError(f"CommitmentView: to_self_delay out of range: {self.to_self_delay}")

    @classmethod
    def from_basepoints(cls, *, broadcaster: str, countersignatory: str, commitment_number: int,
                        broadcaster_basepoints: Basepoints,
                        countersignatory_basepoints: Basepoints,
                        per_commitment_point: PerCommitmentPoint, to_self_delay: int,
                        commitment_format: CommitmentFormat,
                        htlcs: Sequence[CommitmentHtlc] = (),
                        revoked: bool = False) -> CommitmentView:
        """From what ``open_channel``/``accept_channel`` announced and the broadcaster's
        ``per_commitment_point`` for ``commitment_number`` (BOLT 3 "Keys")."""
        keys = CommitmentKeys.derive(per_commitment_point=per_commitment_point,
                                     broadcaster=broadcaster_basepoints,
                                     countersignatory=countersignatory_basepoints)
        return cls(broadcaster=broadcaster, countersignatory=countersignatory,
                   commitment_number=commitment_number, keys=keys, to_self_delay=to_self_delay,
                   commitment_format=commitment_format, htlcs=tuple(htlcs), revoked=revoked)

    @classmethod
    def from_commitment(cls, commitment: CommitmentTransaction, *, broadcaster: str,
                        countersignatory: str, revoked: bool = False) -> CommitmentView:
        """From a commitment built by :func:`channel.transactions.build_commitment_transaction`."""
        htlcs = tuple(o.htlc for o in commitment.htlc_outputs) + commitment.trimmed_htlcs
        return cls(broadcaster=broadcaster, countersignatory=countersignatory,
                   commitment_number=commitment.commitment_number, keys=commitment.keys,
                   to_self_delay=commitment.to_self_delay,
                   commitment_format=commitment.commitment_format, htlcs=htlcs, revoked=revoked)

    @property
    def _anchors_csv(self) -> int:
        return 1 if self.commitment_format is CommitmentFormat.ANCHORS else 0

    def _revocation_path(self) -> SpendPath:
        if self.revoked:
            return SpendPath(spender=self.countersignatory, key=REVOCATION_KEY,
                             needs="the revealed secret (this state is revoked)")
        return SpendPath(spender=self.countersignatory, key=REVOCATION_KEY,
                         only_if=f"{self.broadcaster} revokes this state")

    def delayed_label(self, amount_sat: int, kind: ScriptKind) -> OutputLabel:
        """A to_local-shaped output: the broadcaster's after the delay, unless revoked."""
        return OutputLabel(
            owner=self.broadcaster, amount_sat=amount_sat, kind=kind,
            paths=(SpendPath(spender=self.broadcaster, key="the delayed key",
                             csv_blocks=self.to_self_delay), self._revocation_path()))

    def htlc_label(self, htlc: CommitmentHtlc) -> OutputLabel:
        """An HTLC output; owner reads "payer→payee"."""
        b, c, csv = self.broadcaster, self.countersignatory, self._anchors_csv
        note = (f"HTLC #{htlc.htlc_id} {htlc.amount_msat:,} msat, payment_hash "
                f"{htlc.payment_hash[:4].hex()}…, cltv_expiry {htlc.cltv_expiry}")
        if htlc.direction is HtlcDirection.OFFERED:
            return OutputLabel(
                owner=f"{b}→{c}", amount_sat=htlc.amount_sat, kind=ScriptKind.OFFERED_HTLC,
                note=note, paths=(
                    SpendPath(spender=c, key="the HTLC key", csv_blocks=csv,
                              needs="the payment preimage"),
                    SpendPath(spender=b, key=f"the HTLC-timeout tx {c} pre-signed",
                              csv_blocks=csv, cltv_expiry=htlc.cltv_expiry),
                    self._revocation_path()))
        return OutputLabel(
            owner=f"{c}→{b}", amount_sat=htlc.amount_sat, kind=ScriptKind.RECEIVED_HTLC,
            note=note, paths=(
                SpendPath(spender=b, key=f"the HTLC-success tx {c} pre-signed", csv_blocks=csv,
                          needs="the payment preimage"),
                SpendPath(spender=c, key="the HTLC key", csv_blocks=csv,
                          cltv_expiry=htlc.cltv_expiry),
                self._revocation_path()))

    def _htlc_script_pubkey(self, htlc: CommitmentHtlc) -> bytes:
        k = self.keys
        if htlc.direction is HtlcDirection.OFFERED:
            script = offered_htlc_script(
                revocation_pubkey=k.revocation_pubkey,
                broadcaster_htlc_pubkey=k.broadcaster_htlc_pubkey,
                countersignatory_htlc_pubkey=k.countersignatory_htlc_pubkey,
                payment_hash=htlc.payment_hash, commitment_format=self.commitment_format)
        else:
            script = received_htlc_script(
                revocation_pubkey=k.revocation_pubkey,
                broadcaster_htlc_pubkey=k.broadcaster_htlc_pubkey,
                countersignatory_htlc_pubkey=k.countersignatory_htlc_pubkey,
                payment_hash=htlc.payment_hash, cltv_expiry=htlc.cltv_expiry,
                commitment_format=self.commitment_format)
        return p2wsh(script)

    def second_stage_script_pubkey(self) -> bytes:
        """The scriptPubKey of this commitment's HTLC-success/-timeout outputs."""
        k = self.keys
        return p2wsh(htlc_output_script(k.revocation_pubkey, self.to_self_delay,
                                        k.broadcaster_delayed_pubkey))


def _unknown(amount_sat: int, owner: str = "?") -> OutputLabel:
    return OutputLabel(owner=owner, amount_sat=amount_sat, kind=ScriptKind.UNKNOWN)


def _wallet(owner: str, amount_sat: int) -> OutputLabel:
    return OutputLabel(owner=owner, amount_sat=amount_sat, kind=ScriptKind.WALLET,
                       paths=(SpendPath(spender=owner, key="a wallet key"),))


def _outputs(tx: CTransaction) -> list[tuple[bytes, int]]:
    return [(bytes(o.scriptPubKey), int(o.nValue)) for o in tx.vout]


def label_commitment(tx: CTransaction, view: CommitmentView) -> tuple[OutputLabel, ...]:
    """One label per output of the commitment ``tx`` described by ``view``."""
    k, b, c = view.keys, view.broadcaster, view.countersignatory
    anchors = view.commitment_format is CommitmentFormat.ANCHORS
    remote_paths = (SpendPath(spender=c, key="the payment key", csv_blocks=view._anchors_csv),)
    singles: dict[bytes, tuple[str, ScriptKind, tuple[SpendPath, ...]]] = {
        to_remote_script_pubkey(k.countersignatory_payment_pubkey, view.commitment_format):
            (c, ScriptKind.TO_REMOTE, remote_paths),
    }
    if anchors:
        for owner, pubkey in ((b, k.broadcaster_funding_pubkey),
                              (c, k.countersignatory_funding_pubkey)):
            singles[p2wsh(anchor_script(pubkey))] = (owner, ScriptKind.ANCHOR, (
                SpendPath(spender=owner, key="the funding key"),
                SpendPath(spender="anyone", key="no key", csv_blocks=16)))
    to_local = p2wsh(to_local_script(k.revocation_pubkey, view.to_self_delay,
                                     k.broadcaster_delayed_pubkey))
    htlcs: dict[tuple[bytes, int], list[CommitmentHtlc]] = {}
    for htlc in view.htlcs:
        htlcs.setdefault((view._htlc_script_pubkey(htlc), htlc.amount_sat), []).append(htlc)
    labels: list[OutputLabel] = []
    for spk, amount in _outputs(tx):
        twins = htlcs.get((spk, amount))
        if spk == to_local:
            labels.append(view.delayed_label(amount, ScriptKind.TO_LOCAL))
        elif twins:
            labels.append(view.htlc_label(twins.pop(0)))
        elif spk in singles:
            owner, kind, paths = singles[spk]
            labels.append(OutputLabel(owner=owner, amount_sat=amount, kind=kind, paths=paths))
        else:
            labels.append(_unknown(amount))
    return tuple(labels)


def label_htlc_tx(tx: CTransaction, view: CommitmentView,
                  owners: Mapping[bytes, str] | None = None) -> tuple[OutputLabel, ...]:
    """Labels of an HTLC-success/-timeout tx spending ``view``'s commitment: its to_local-shaped
    output, and (anchors, fee inputs added) a change output looked up in ``owners``."""
    second = view.second_stage_script_pubkey()
    labels: list[OutputLabel] = []
    for spk, amount in _outputs(tx):
        if spk == second:
            labels.append(view.delayed_label(amount, ScriptKind.HTLC_TX_OUTPUT))
        else:
            labels.append(_owned(spk, amount, owners or {}, view.broadcaster))
    return tuple(labels)


def _owned(spk: bytes, amount: int, owners: Mapping[bytes, str],
           default: str | None) -> OutputLabel:
    owner = owners.get(spk, default)
    return _wallet(owner, amount) if owner is not None else _unknown(amount)


def label_funding(tx: CTransaction, *, funding_pubkeys: tuple[FundingPubkey, FundingPubkey],
                  names: tuple[str, str],
                  owners: Mapping[bytes, str] | None = None) -> tuple[OutputLabel, ...]:
    """Labels of the funding tx: the 2-of-2 (``funding_pubkeys`` belong to ``names`` in that
    order), other outputs (the opener's change) looked up in ``owners``."""
    spk = p2wsh(funding_script(*funding_pubkeys))
    together = SpendPath(spender=f"{names[0]} and {names[1]} together",
                         key="both funding keys (2-of-2)")
    labels = []
    for out_spk, amount in _outputs(tx):
        if out_spk == spk:
            labels.append(OutputLabel(owner=f"{names[0]}+{names[1]}", amount_sat=amount,
                                      kind=ScriptKind.FUNDING, paths=(together,)))
        else:
            labels.append(_owned(out_spk, amount, owners or {}, None))
    return tuple(labels)


def label_wallet_outputs(tx: CTransaction, owners: Mapping[bytes, str],
                         default_owner: str | None = None) -> tuple[OutputLabel, ...]:
    """Labels of a sweep, penalty or closing tx: each output's owner from ``owners``
    (scriptPubKey → name), else ``default_owner``, else UNKNOWN."""
    return tuple(_owned(spk, amount, owners, default_owner) for spk, amount in _outputs(tx))


# --- records ------------------------------------------------------------------------------


def commitment_record(tx: CTransaction, view: CommitmentView, *,
                      confirmation_height: int | None = None,
                      broadcast: bool = True) -> TxRecord:
    """The :class:`TxRecord` of a commitment, labelled from ``view``."""
    return TxRecord(raw=tx.serialize(), role=TxRole.COMMITMENT,
                    outputs=label_commitment(tx, view), confirmation_height=confirmation_height,
                    broadcast=broadcast, revoked=view.revoked, holder=view.broadcaster,
                    commitment_number=view.commitment_number)


def htlc_tx_record(tx: CTransaction, view: CommitmentView, *, timeout: bool,
                   confirmation_height: int | None = None, broadcast: bool = True,
                   owners: Mapping[bytes, str] | None = None) -> TxRecord:
    """The :class:`TxRecord` of an HTLC-timeout (``timeout``) or HTLC-success tx."""
    return TxRecord(raw=tx.serialize(),
                    role=TxRole.HTLC_TIMEOUT if timeout else TxRole.HTLC_SUCCESS,
                    outputs=label_htlc_tx(tx, view, owners),
                    confirmation_height=confirmation_height, broadcast=broadcast,
                    revoked=view.revoked, holder=view.broadcaster)


def funding_record(tx: CTransaction, *, funding_pubkeys: tuple[FundingPubkey, FundingPubkey],
                   names: tuple[str, str], opener: str, fee_sat: int | None = None,
                   owners: Mapping[bytes, str] | None = None,
                   confirmation_height: int | None = None) -> TxRecord:
    """The :class:`TxRecord` of the funding tx (``fee_sat``: its wallet inputs are not in the
    graph, so the caller knows the fee, or leaves it unknown)."""
    return TxRecord(raw=tx.serialize(), role=TxRole.FUNDING,
                    outputs=label_funding(tx, funding_pubkeys=funding_pubkeys, names=names,
                                          owners=owners),
                    confirmation_height=confirmation_height, holder=opener, fee_sat=fee_sat)


def wallet_record(tx: CTransaction, *, role: TxRole, holder: str, owners: Mapping[bytes, str],
                  default_owner: str | None = None, confirmation_height: int | None = None,
                  broadcast: bool = True, fee_sat: int | None = None) -> TxRecord:
    """The :class:`TxRecord` of a sweep, penalty or closing tx paying to wallets."""
    return TxRecord(raw=tx.serialize(), role=role,
                    outputs=label_wallet_outputs(tx, owners, default_owner),
                    confirmation_height=confirmation_height, broadcast=broadcast, holder=holder,
                    fee_sat=fee_sat)
