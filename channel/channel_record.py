"""The channel record: a JSON-friendly form of a channel's whole durable state.

Pure. :func:`channel_to_record` writes every field of a
:class:`~channel.channel_core.ChannelCore`; :func:`channel_fields_from_record` reads them back as
the keyword arguments of the channel's constructor (:func:`channel.state.channel_from_record`
builds the :class:`~channel.state.Channel`). Keys, parameters, outpoints and HTLCs use the
shared codecs of :mod:`channel.records`, the same as the monitor's record.
"""

from __future__ import annotations

from typing import Any

from channel.channel_core import ChannelCore, ChannelState
from channel.channel_params import ChannelConfig
from channel.htlc_log import FeeUpdate, HtlcEntry, Removal, UpdateLog
from channel.keys import PerCommitmentPoint
from channel.records import (
    channel_keys_from_record,
    channel_keys_to_record,
    memo_record,
    outpoint_from_record,
    outpoint_to_record,
    party_params_from_record,
    party_params_to_record,
)
from channel.shachain import RevocationStore
from channel.types import CommitmentFormat, Side

__all__ = ["channel_fields_from_record", "channel_to_record"]

_RECORD_VERSION = 1


def _sides(d: dict[Side, int | None]) -> dict[str, int | None]:
    return {side.value: value for side, value in d.items()}


def _sides_from(d: dict[str, int | None]) -> dict[Side, int | None]:
    return {Side(k): v for k, v in d.items()}


def _opt_hex(value: bytes | None) -> str | None:
    return None if value is None else value.hex()


def _opt_bytes(value: str | None) -> bytes | None:
    return None if value is None else bytes.fromhex(value)


def _htlc_record(h: HtlcEntry) -> dict[str, Any]:
    return {"offerer": h.offerer.value, "htlc_id": h.htlc_id, "amount_msat": h.amount_msat,
            "payment_hash": h.payment_hash.hex(), "cltv_expiry": h.cltv_expiry,
            "onion": h.onion_routing_packet.hex(), "added_at": _sides(h.added_at),
            "removal": h.removal.value if h.removal else None,
            "payment_preimage": _opt_hex(h.payment_preimage),
            "fail_reason": _opt_hex(h.fail_reason), "removed_at": _sides(h.removed_at)}


def _htlc_from(rec: dict[str, Any]) -> HtlcEntry:
    return HtlcEntry(
        offerer=Side(rec["offerer"]), htlc_id=rec["htlc_id"], amount_msat=rec["amount_msat"],
        payment_hash=bytes.fromhex(rec["payment_hash"]), cltv_expiry=rec["cltv_expiry"],
        onion_routing_packet=bytes.fromhex(rec["onion"]), added_at=_sides_from(rec["added_at"]),
        removal=Removal(rec["removal"]) if rec["removal"] else None,
        payment_preimage=_opt_bytes(rec["payment_preimage"]),
        fail_reason=_opt_bytes(rec["fail_reason"]), removed_at=_sides_from(rec["removed_at"]))


def _log_record(log: UpdateLog) -> dict[str, Any]:
    return {
        "opener": log.opener.value,
        "base_balance_msat": _sides(dict(log.base_balance_msat)),
        "base_feerate_per_kw": log.base_feerate_per_kw,
        "htlcs": [_htlc_record(h) for h in log.htlcs.values()],
        "fee_updates": [[u.feerate_per_kw, _sides(u.included_at)] for u in log.fee_updates],
        "next_htlc_id": _sides(dict(log.next_htlc_id)),
    }


def _log_from(lrec: dict[str, Any]) -> UpdateLog:
    htlcs = [_htlc_from(h) for h in lrec["htlcs"]]
    base = _sides_from(lrec["base_balance_msat"])
    next_id = _sides_from(lrec["next_htlc_id"])
    return UpdateLog(
        opener=Side(lrec["opener"]),
        base_balance_msat={s: int(v or 0) for s, v in base.items()},
        base_feerate_per_kw=lrec["base_feerate_per_kw"],
        htlcs={(h.offerer, h.htlc_id): h for h in htlcs},
        fee_updates=[FeeUpdate(feerate_per_kw=f, included_at=_sides_from(at))
                     for f, at in lrec["fee_updates"]],
        next_htlc_id={s: int(v or 0) for s, v in next_id.items()})


def _config_record(config: ChannelConfig) -> dict[str, Any]:
    return {name: getattr(config, name) for name in ChannelConfig.__dataclass_fields__}


def channel_to_record(chan: ChannelCore) -> dict[str, Any]:
    """Everything needed to resume ``chan`` after a restart (contains secrets: store 0600)."""
    return {
        "version": _RECORD_VERSION,
        "state": chan.state.value, "opener": chan.opener.value,
        "keys": channel_keys_to_record(chan.keys),
        "config": memo_record(chan.config, _config_record),
        "commitment_format": chan.commitment_format.value, "funding_sat": chan.funding_sat,
        "push_msat": chan.push_msat, "temporary_channel_id": chan.temporary_channel_id.hex(),
        "holder_params": party_params_to_record(chan.holder_params),
        "counterparty_params": party_params_to_record(chan.counterparty_params)
        if chan.counterparty_params else None,
        "minimum_depth": chan.minimum_depth,
        "funding_outpoint": outpoint_to_record(chan.funding_outpoint)
        if chan.funding_outpoint else None,
        "channel_id": _opt_hex(chan.channel_id),
        "log": None if chan.log is None else _log_record(chan.log),
        "holder_commitment_number": chan.holder_commitment_number,
        "counterparty_commitment_number": chan.counterparty_commitment_number,
        "awaiting_revoke_and_ack": chan.awaiting_revoke_and_ack,
        "commitment_signed_sent_last": chan.commitment_signed_sent_last,
        "counterparty_points": {str(n): p.hex() for n, p in chan.counterparty_points.items()},
        "counterparty_secrets": chan.counterparty_secrets.to_bytes().hex(),
        "holder_commitment_signature": chan.holder_commitment_signature.hex(),
        "holder_htlc_signatures": [s.hex() for s in chan.holder_htlc_signatures],
        "channel_ready_sent": chan.channel_ready_sent,
        "channel_ready_received": chan.channel_ready_received,
        "holder_shutdown_script": _opt_hex(chan.holder_shutdown_script),
        "counterparty_shutdown_script": _opt_hex(chan.counterparty_shutdown_script),
        "closing_fee_sent_sat": chan.closing_fee_sent_sat,
        "closing_tx": _opt_hex(chan.closing_tx),
        "lost_state": chan.lost_state,
    }


def channel_fields_from_record(rec: dict[str, Any]) -> dict[str, Any]:
    """The channel constructor's keyword arguments stored by :func:`channel_to_record`."""
    if rec.get("version") != _RECORD_VERSION:
        raise ValueError(f"unsupported channel record version {rec.get('version')}")
    fo = rec["funding_outpoint"]
    return dict(
        state=ChannelState(rec["state"]), opener=Side(rec["opener"]),
        keys=channel_keys_from_record(rec["keys"]), config=ChannelConfig(**rec["config"]),
        commitment_format=CommitmentFormat(rec["commitment_format"]),
        funding_sat=rec["funding_sat"], push_msat=rec["push_msat"],
        temporary_channel_id=bytes.fromhex(rec["temporary_channel_id"]),
        holder_params=party_params_from_record(rec["holder_params"]),
        counterparty_params=party_params_from_record(rec["counterparty_params"])
        if rec["counterparty_params"] else None,
        minimum_depth=rec["minimum_depth"],
        funding_outpoint=outpoint_from_record(fo) if fo else None,
        channel_id=_opt_bytes(rec["channel_id"]),
        log=None if rec["log"] is None else _log_from(rec["log"]),
        holder_commitment_number=rec["holder_commitment_number"],
        counterparty_commitment_number=rec["counterparty_commitment_number"],
        awaiting_revoke_and_ack=rec["awaiting_revoke_and_ack"],
        commitment_signed_sent_last=rec["commitment_signed_sent_last"],
        counterparty_points={int(n): PerCommitmentPoint(bytes.fromhex(p))
                             for n, p in rec["counterparty_points"].items()},
        counterparty_secrets=RevocationStore.from_bytes(
            bytes.fromhex(rec["counterparty_secrets"])),
        holder_commitment_signature=bytes.fromhex(rec["holder_commitment_signature"]),
        holder_htlc_signatures=tuple(bytes.fromhex(s) for s in rec["holder_htlc_signatures"]),
        channel_ready_sent=rec["channel_ready_sent"],
        channel_ready_received=rec["channel_ready_received"],
        holder_shutdown_script=_opt_bytes(rec["holder_shutdown_script"]),
        counterparty_shutdown_script=_opt_bytes(rec["counterparty_shutdown_script"]),
        closing_fee_sent_sat=rec["closing_fee_sent_sat"], closing_tx=_opt_bytes(rec["closing_tx"]),
        lost_state=bool(rec.get("lost_state", False)))
