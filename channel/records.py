"""The plain records a channel hands its monitor, and their one JSON-friendly serialisation.

Pure. The dependency runs one way, as in LDK: :mod:`channel.state` produces these records
(what each new commitment holds, which secrets the peer revealed), :mod:`channel.monitor` and the
watchtower consume them; neither consumer knows the channel. Every record that is persisted
(by the channel record, the monitor record and the node's incremental monitor updates) is
written by the codecs below, so one party parameter set or one HTLC has exactly one stored form.

The readers also accept the older forms (lists instead of named fields, spelled-out HTLC
directions), so records written before the codecs were unified still load.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

from channel.keys import (
    Basepoints,
    ChannelKeys,
    DelayedPaymentBasepoint,
    FundingPubkey,
    HtlcBasepoint,
    PaymentBasepoint,
    PerCommitmentPoint,
    PrivateKey,
    RevocationBasepoint,
)
from channel.types import CommitmentFormat, CommitmentHtlc, HtlcDirection, OutPoint, Side

_R = TypeVar("_R")

__all__ = [
    "CommitmentState",
    "CounterpartyCommitmentSigned",
    "CounterpartySecretRevealed",
    "HolderCommitmentSigned",
    "MonitorSetup",
    "MonitorUpdate",
    "PartyParams",
    "basepoints_from_record",
    "basepoints_to_record",
    "channel_keys_from_record",
    "channel_keys_to_record",
    "htlcs_from_record",
    "htlcs_to_record",
    "memo_record",
    "monitor_update_from_record",
    "monitor_update_to_record",
    "outpoint_from_record",
    "outpoint_to_record",
    "party_params_from_record",
    "party_params_to_record",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class PartyParams:
    """What one party announced in its open_channel / accept_channel."""

    dust_limit_sat: int
    max_htlc_value_in_flight_msat: int
    channel_reserve_sat: int
    htlc_minimum_msat: int
    to_self_delay: int
    max_accepted_htlcs: int
    basepoints: Basepoints


@dataclass(frozen=True, slots=True, kw_only=True)
class CommitmentState:
    """Enough to rebuild one commitment: balances before fees, feerate, HTLCs (trimmed too)."""

    commitment_number: int
    to_broadcaster_msat: int
    to_countersignatory_msat: int
    feerate_per_kw: int
    htlcs: tuple[CommitmentHtlc, ...]


# -- monitor updates (LDK's ChannelMonitorUpdateStep): what the chain watcher must learn ------


@dataclass(frozen=True, slots=True, kw_only=True)
class HolderCommitmentSigned:
    """Our newest commitment, which the peer signed: what a force-close broadcasts."""

    commitment_number: int
    to_broadcaster_msat: int
    to_countersignatory_msat: int
    feerate_per_kw: int
    htlcs: tuple[CommitmentHtlc, ...]
    counterparty_signature: bytes
    counterparty_htlc_signatures: tuple[bytes, ...]

    @property
    def state(self) -> CommitmentState:
        return CommitmentState(
            commitment_number=self.commitment_number,
            to_broadcaster_msat=self.to_broadcaster_msat,
            to_countersignatory_msat=self.to_countersignatory_msat,
            feerate_per_kw=self.feerate_per_kw, htlcs=self.htlcs)


@dataclass(frozen=True, slots=True, kw_only=True)
class CounterpartyCommitmentSigned:
    """A commitment we signed for the peer: enough to rebuild it if it is ever broadcast."""

    commitment_number: int
    per_commitment_point: PerCommitmentPoint
    to_broadcaster_msat: int
    to_countersignatory_msat: int
    feerate_per_kw: int
    htlcs: tuple[CommitmentHtlc, ...]
    txid: bytes

    @property
    def state(self) -> CommitmentState:
        return CommitmentState(
            commitment_number=self.commitment_number,
            to_broadcaster_msat=self.to_broadcaster_msat,
            to_countersignatory_msat=self.to_countersignatory_msat,
            feerate_per_kw=self.feerate_per_kw, htlcs=self.htlcs)


@dataclass(frozen=True, slots=True, kw_only=True)
class CounterpartySecretRevealed:
    """The peer revoked its commitment ``commitment_number``: from now on it is a breach."""

    commitment_number: int
    per_commitment_secret: bytes


MonitorUpdate = HolderCommitmentSigned | CounterpartyCommitmentSigned | CounterpartySecretRevealed


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorSetup:
    """A funded channel's static data, handed to a new monitor (plus the preimages known)."""

    funding_outpoint: OutPoint
    funding_sat: int
    commitment_format: CommitmentFormat
    opener: Side
    holder_params: PartyParams
    counterparty_params: PartyParams
    keys: ChannelKeys
    preimages: tuple[bytes, ...]


# -- codecs --------------------------------------------------------------------------------

_BASEPOINT_NAMES = ("funding_pubkey", "revocation_basepoint", "payment_basepoint",
                    "delayed_payment_basepoint", "htlc_basepoint")

_KEY_NAMES = ("funding_key", "revocation_basepoint_secret", "payment_basepoint_secret",
              "delayed_payment_basepoint_secret", "htlc_basepoint_secret")

_DIRECTION_CODE = {HtlcDirection.OFFERED: "o", HtlcDirection.RECEIVED: "r"}
_DIRECTION_FROM = {**{v: k for k, v in _DIRECTION_CODE.items()},
                   **{d.value: d for d in HtlcDirection}}     # the older, spelled-out form


_MEMO: dict[int, tuple[object, Any]] = {}
_MEMO_MAX = 4096


def memo_record(obj: object, build: Callable[[Any], _R]) -> _R:
    """``build(obj)`` for a frozen ``obj``, built once per object: a channel's static parts
    (keys, parameters) go into every flight's channel record, and rebuilding them was a tenth
    of a payment's bookkeeping. The answer is shared: callers must not change it."""
    hit = _MEMO.get(id(obj))
    if hit is not None and hit[0] is obj:
        return cast(_R, hit[1])
    built = build(obj)
    if len(_MEMO) >= _MEMO_MAX:
        _MEMO.clear()
    _MEMO[id(obj)] = (obj, built)   # holding obj keeps its id from being reused
    return built


def basepoints_to_record(bp: Basepoints) -> dict[str, str]:
    return {name: getattr(bp, name).hex() for name in _BASEPOINT_NAMES}


def basepoints_from_record(rec: dict[str, str] | list[str]) -> Basepoints:
    values = rec if isinstance(rec, list) else [rec[name] for name in _BASEPOINT_NAMES]
    f, r, p, d, h = (bytes.fromhex(v) for v in values)
    return Basepoints(funding_pubkey=FundingPubkey(f), revocation_basepoint=RevocationBasepoint(r),
                      payment_basepoint=PaymentBasepoint(p),
                      delayed_payment_basepoint=DelayedPaymentBasepoint(d),
                      htlc_basepoint=HtlcBasepoint(h))


def party_params_to_record(params: PartyParams) -> dict[str, Any]:
    return memo_record(params, _party_params_record)


def _party_params_record(params: PartyParams) -> dict[str, Any]:
    rec: dict[str, Any] = {name: getattr(params, name)
                           for name in PartyParams.__dataclass_fields__}
    rec["basepoints"] = basepoints_to_record(params.basepoints)
    return rec


def party_params_from_record(rec: dict[str, Any]) -> PartyParams:
    return PartyParams(**{**rec, "basepoints": basepoints_from_record(rec["basepoints"])})


def channel_keys_to_record(keys: ChannelKeys) -> dict[str, str]:
    """The channel's secrets (store the record 0600)."""
    return memo_record(keys, _channel_keys_record)


def _channel_keys_record(keys: ChannelKeys) -> dict[str, str]:
    rec = {name: getattr(keys, name).secret.hex() for name in _KEY_NAMES}
    rec["per_commitment_seed"] = keys.per_commitment_seed.hex()
    return rec


def channel_keys_from_record(rec: dict[str, str] | list[str]) -> ChannelKeys:
    values = rec if isinstance(rec, list) else \
        [rec[name] for name in (*_KEY_NAMES, "per_commitment_seed")]
    raw = [bytes.fromhex(v) for v in values]
    return ChannelKeys(**{name: PrivateKey(k) for name, k in zip(_KEY_NAMES, raw[:5],
                                                                 strict=True)},
                       per_commitment_seed=raw[5])


def outpoint_to_record(outpoint: OutPoint) -> list[Any]:
    return [outpoint.txid.hex(), outpoint.vout]


def outpoint_from_record(rec: list[Any]) -> OutPoint:
    return OutPoint(txid=bytes.fromhex(rec[0]), vout=rec[1])


def htlcs_to_record(htlcs: tuple[CommitmentHtlc, ...]) -> list[list[Any]]:
    """One HTLC as ``[o|r, amount_msat, payment_hash, cltv_expiry, htlc_id]``."""
    return [[_DIRECTION_CODE[h.direction], h.amount_msat, h.payment_hash.hex(), h.cltv_expiry,
             h.htlc_id] for h in htlcs]


def htlcs_from_record(rec: list[list[Any]]) -> tuple[CommitmentHtlc, ...]:
    return tuple(CommitmentHtlc(direction=_DIRECTION_FROM[d], amount_msat=a,
                                payment_hash=bytes.fromhex(h), cltv_expiry=c, htlc_id=i)
                 for d, a, h, c, i in rec)


def commitment_state_to_record(s: CommitmentState) -> list[Any]:
    """``[number, to_broadcaster_msat, to_countersignatory_msat, feerate, [htlc...]]``."""
    return [s.commitment_number, s.to_broadcaster_msat, s.to_countersignatory_msat,
            s.feerate_per_kw, htlcs_to_record(s.htlcs)]


def commitment_state_from_record(rec: list[Any]) -> CommitmentState:
    number, to_b, to_c, feerate, htlcs = rec
    return CommitmentState(commitment_number=number, to_broadcaster_msat=to_b,
                           to_countersignatory_msat=to_c, feerate_per_kw=feerate,
                           htlcs=htlcs_from_record(htlcs))


def monitor_update_to_record(update: MonitorUpdate) -> dict[str, Any]:
    """A JSON-friendly form of one monitor update (the node persists updates incrementally)."""
    if isinstance(update, HolderCommitmentSigned):
        return {"kind": "holder", "n": update.commitment_number,
                "b": update.to_broadcaster_msat, "c": update.to_countersignatory_msat,
                "f": update.feerate_per_kw, "h": htlcs_to_record(update.htlcs),
                "sig": update.counterparty_signature.hex(),
                "hsigs": [s.hex() for s in update.counterparty_htlc_signatures]}
    if isinstance(update, CounterpartyCommitmentSigned):
        return {"kind": "counterparty", "n": update.commitment_number,
                "p": update.per_commitment_point.hex(), "b": update.to_broadcaster_msat,
                "c": update.to_countersignatory_msat, "f": update.feerate_per_kw,
                "h": htlcs_to_record(update.htlcs), "txid": update.txid.hex()}
    return {"kind": "secret", "n": update.commitment_number,
            "s": update.per_commitment_secret.hex()}


def monitor_update_from_record(rec: dict[str, Any]) -> MonitorUpdate:
    """The inverse of :func:`monitor_update_to_record`."""
    kind = rec["kind"]
    if kind == "holder":
        return HolderCommitmentSigned(
            commitment_number=rec["n"], to_broadcaster_msat=rec["b"],
            to_countersignatory_msat=rec["c"], feerate_per_kw=rec["f"],
            htlcs=htlcs_from_record(rec["h"]), counterparty_signature=bytes.fromhex(rec["sig"]),
            counterparty_htlc_signatures=tuple(bytes.fromhex(s) for s in rec["hsigs"]))
    if kind == "counterparty":
        return CounterpartyCommitmentSigned(
            commitment_number=rec["n"], per_commitment_point=PerCommitmentPoint(
                bytes.fromhex(rec["p"])), to_broadcaster_msat=rec["b"],
            to_countersignatory_msat=rec["c"], feerate_per_kw=rec["f"],
            htlcs=htlcs_from_record(rec["h"]), txid=bytes.fromhex(rec["txid"]))
    if kind == "secret":
        return CounterpartySecretRevealed(commitment_number=rec["n"],
                                          per_commitment_secret=bytes.fromhex(rec["s"]))
    raise ValueError(f"unknown monitor update kind {kind!r}")
