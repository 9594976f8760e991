"""The plain channel -> monitor records, their one codec, and the one commitment assembler."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from chanpair import CLTV, FUNDING_OUTPOINT, FUNDING_SAT, Pair, preimage

from channel.commitment import assemble_commitment
from channel.monitor import ChannelMonitor
from channel.records import (
    CounterpartyCommitmentSigned,
    HolderCommitmentSigned,
    channel_keys_from_record,
    channel_keys_to_record,
    monitor_update_from_record,
    monitor_update_to_record,
    party_params_from_record,
)
from channel.state import Channel, channel_from_record, channel_to_record
from channel.types import CommitmentFormat, Side

_LONG = {"o": "offered", "r": "received"}


def _offer(p: Pair, amount_msat: int, tag: str) -> None:
    """Alice offers Bob an HTLC, not yet signed (Pair.add would sign it at once)."""
    p.bob.on_update_add_htlc(p.alice.add_htlc(
        amount_msat=amount_msat, payment_hash=hashlib.sha256(preimage(tag)).digest(),
        cltv_expiry=CLTV, onion_routing_packet=bytes(1366)))


def _pair_with_htlcs() -> Pair:
    p = Pair(CommitmentFormat.ANCHORS)
    p.pay(p.alice, 40_000_000, "paid")
    p.add(p.alice, 25_000_000, "pending")
    p.add(p.bob, 3_000_000, "back")
    p.flush()
    p.sync()
    return p


def test_monitor_and_channel_records_share_one_codec() -> None:
    """The party parameters and keys are stored in the same form in the channel record and in
    the monitor record, and both round-trip through JSON unchanged."""
    p = _pair_with_htlcs()
    chan_rec = json.loads(json.dumps(channel_to_record(p.bob)))
    mon_rec = json.loads(json.dumps(p.bob_monitor.to_record()))
    assert mon_rec["holder_params"] == chan_rec["holder_params"]
    assert mon_rec["counterparty_params"] == chan_rec["counterparty_params"]
    assert mon_rec["keys"] == chan_rec["keys"]
    assert channel_to_record(channel_from_record(chan_rec)) == chan_rec
    assert ChannelMonitor.from_record(mon_rec).to_record() == mon_rec
    assert party_params_from_record(chan_rec["holder_params"]) == p.bob.holder_params
    assert channel_keys_from_record(channel_keys_to_record(p.bob.keys)) == p.bob.keys


def test_records_in_the_older_forms_still_load() -> None:
    """A monitor record with list-form keys and basepoints, and monitor updates with spelled-out
    HTLC directions (as written before the codecs were unified) load to the same values."""
    p = _pair_with_htlcs()
    rec = json.loads(json.dumps(p.bob_monitor.to_record()))
    old = dict(rec)
    old["keys"] = [rec["keys"][k] for k in (
        "funding_key", "revocation_basepoint_secret", "payment_basepoint_secret",
        "delayed_payment_basepoint_secret", "htlc_basepoint_secret", "per_commitment_seed")]
    for side in ("holder_params", "counterparty_params"):
        bp = rec[side]["basepoints"]
        old[side] = {**rec[side], "basepoints": [bp[k] for k in (
            "funding_pubkey", "revocation_basepoint", "payment_basepoint",
            "delayed_payment_basepoint", "htlc_basepoint")]}
    assert ChannelMonitor.from_record(old).to_record() == rec

    _offer(p, 7_000_000, "more")
    p.bob.on_commitment_signed(p.alice.sign_commitment())
    updates = p.alice.drain_monitor_updates() + p.bob.drain_monitor_updates()
    assert any(isinstance(u, HolderCommitmentSigned) for u in updates)
    for update in updates:
        new: dict[str, Any] = monitor_update_to_record(update)
        assert monitor_update_from_record(new) == update
        if "h" in new:
            assert new["h"] and {h[0] for h in new["h"]} == {"o", "r"}
            older = {**new, "h": [[_LONG[h[0]], *h[1:]] for h in new["h"]]}
            assert monitor_update_from_record(older) == update


def test_channel_and_monitor_assemble_the_same_commitments() -> None:
    """From the plain records alone, assemble_commitment rebuilds exactly the commitment the
    channel signed (the peer's) and the one it holds (its own): one assembler for both."""
    p = _pair_with_htlcs()
    _offer(p, 9_000_000, "next")
    signed = p.alice.sign_commitment()
    [theirs] = [u for u in p.alice.drain_monitor_updates()
                if isinstance(u, CounterpartyCommitmentSigned)]
    p.bob.on_commitment_signed(signed)
    [ours] = [u for u in p.bob.drain_monitor_updates() if isinstance(u, HolderCommitmentSigned)]
    assert ours.commitment_number == theirs.commitment_number and len(ours.htlcs) == 3

    def static(chan: Channel) -> dict[str, Any]:
        assert chan.counterparty_params is not None
        return {"funding_outpoint": FUNDING_OUTPOINT, "funding_sat": FUNDING_SAT,
                "commitment_format": chan.commitment_format, "opener": chan.opener,
                "holder_params": chan.holder_params,
                "counterparty_params": chan.counterparty_params}

    by_alice = assemble_commitment(side=Side.COUNTERPARTY, state=theirs.state,
                                   point=theirs.per_commitment_point, **static(p.alice))
    by_bob = assemble_commitment(
        side=Side.HOLDER, state=ours.state,
        point=p.bob.keys.per_commitment_point(ours.commitment_number), **static(p.bob))
    assert by_alice.txid == theirs.txid == by_bob.txid
    assert by_bob.tx.serialize() == by_alice.tx.serialize()
