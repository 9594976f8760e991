"""``trace``: every message chanlab sends decodes to its BOLT field names and human values.

The field names are checked against the spec's own field lists, copied into tests/vectors/
(``bolt1.csv``, ``bolt2.csv``: lightning/bolts at a3772650d8ebc06acf457fcadf97968ebfc4dfff,
made with the spec's ``tools/extract-formats.py``).
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from channel.keys import ChannelKeys, PrivateKey
from channel.messages import (
    MESSAGE_TYPES,
    UpdateFailMalformedHtlc,
    decode_message,
    encode_message,
)
from channel.scripts import p2wpkh
from channel.state import Channel, ChannelConfig
from channel.tower import TowerClient
from channel.tower_wire import (
    TOWER_ACK,
    TOWER_UPLOAD,
    AckStatus,
    TowerAck,
    encode_tower_ack,
    encode_tower_upload,
)
from channel.trace import (
    MESSAGE_NAMES,
    Direction,
    TracedMessage,
    TraceEntry,
    render_trace,
    render_trace_log,
    trace_bytes,
    trace_message,
)
from channel.types import OutPoint
from channel.wire import (
    ErrorMessage,
    Init,
    Message,
    Ping,
    UnknownMessage,
    WarningMessage,
    our_features,
    pong_for,
)

VECTORS = Path(__file__).parent.parent / "vectors"
ALICE_DEST = p2wpkh(PrivateKey(b"\x0a" * 32).pubkey)
BOB_DEST = p2wpkh(PrivateKey(b"\x0b" * 32).pubkey)
FUNDING_OUTPOINT = OutPoint(txid=hashlib.sha256(b"funding").digest(), vout=0)


@dataclass(frozen=True)
class SpecMessage:
    type: int
    fields: tuple[str, ...]        # fixed fields, without the length-only ones
    tlvs: frozenset[str]


def _spec() -> dict[str, SpecMessage]:
    rows: list[list[str]] = []
    for name in ("bolt1.csv", "bolt2.csv"):
        with (VECTORS / name).open(newline="") as f:
            rows += [row for row in csv.reader(f) if row]
    types = {r[1]: int(r[2]) for r in rows if r[0] == "msgtype"}
    out: dict[str, SpecMessage] = {}
    for msg, msg_type in types.items():
        data = [r for r in rows if r[0] == "msgdata" and r[1] == msg]
        lengths = {r[4] for r in data if len(r) > 4 and r[4]}
        streams = {r[3] for r in data if r[2] == "tlvs"}
        fields = tuple(r[2] for r in data if r[2] != "tlvs" and r[2] not in lengths)
        tlvs = frozenset(r[2] for r in rows if r[0] == "tlvtype" and r[1] in streams)
        out[msg] = SpecMessage(type=msg_type, fields=fields, tlvs=tlvs)
    return out


SPEC = _spec()


def _channel_life() -> list[Message]:
    """Every message two real channels exchange: open, two payments (one fulfilled, one
    failed), a fee update, a reestablish, and a cooperative close; plus the BOLT 1 ones."""
    sent: list[Message] = []
    cfg = ChannelConfig(to_self_delay=6)
    a, open_msg = Channel.open_outbound(
        keys=ChannelKeys.from_seed(b"alice".ljust(32, b".")), config=cfg, funding_sat=1_000_000,
        push_msat=0, feerate_per_kw=2000, temporary_channel_id=b"t" * 32)
    b, accept = Channel.accept_inbound(keys=ChannelKeys.from_seed(b"bob".ljust(32, b".")),
                                       config=cfg, msg=open_msg)
    a.on_accept_channel(accept)
    created = a.funding_created(FUNDING_OUTPOINT)
    signed = b.on_funding_created(created)
    a.on_funding_signed(signed)
    ready_a, ready_b = a.funding_locked(), b.funding_locked()
    b.on_channel_ready(ready_a)
    a.on_channel_ready(ready_b)
    sent += [open_msg, accept, created, signed, ready_a, ready_b]

    def flush() -> None:
        while a.can_sign() or b.can_sign():
            for x, y in ((a, b), (b, a)):
                if x.can_sign():
                    cs = x.sign_commitment()
                    raa = y.on_commitment_signed(cs)
                    x.on_revoke_and_ack(raa)
                    sent.extend((cs, raa))

    for tag in (b"paid", b"failed"):
        preimage = hashlib.sha256(tag).digest()
        add = a.add_htlc(amount_msat=5_000_000, payment_hash=hashlib.sha256(preimage).digest(),
                         cltv_expiry=500, onion_routing_packet=bytes(1366))
        b.on_update_add_htlc(add)
        sent.append(add)
        flush()
        if tag == b"paid":
            fulfill = b.fulfill_htlc(add.id, preimage)
            a.on_update_fulfill_htlc(fulfill)
            sent.append(fulfill)
        else:
            fail = b.fail_htlc(add.id, b"no route")
            a.on_update_fail_htlc(fail)
            sent.append(fail)
        flush()
    fee = a.update_fee(2500)
    b.on_update_fee(fee)
    sent.append(fee)
    flush()
    sent.append(a.channel_reestablish())
    shutdown_a = a.shutdown(ALICE_DEST)
    shutdown_b = b.on_shutdown(shutdown_a, BOB_DEST)
    assert shutdown_b is not None
    a.on_shutdown(shutdown_b, ALICE_DEST)
    proposal = a.propose_closing()
    reply, _ = b.on_closing_signed(proposal)
    sent += [shutdown_a, shutdown_b, proposal]
    if reply is not None:
        sent.append(reply)
    channel_id = bytes(proposal.channel_id)
    ping = Ping(num_pong_bytes=4, ignored=bytes(3))
    pong = pong_for(ping)
    assert pong is not None
    sent += [
        Init.ours(our_features()),
        ErrorMessage.with_text(channel_id, "bad <signature>"),
        WarningMessage.with_text(channel_id, "fee too low"),
        ping, pong,
        UpdateFailMalformedHtlc(channel_id=channel_id, id=1, sha256_of_onion=bytes(32),
                                failure_code=0xC005),
    ]
    return sent


MESSAGES = _channel_life()


def test_the_channel_life_sends_every_message_type() -> None:
    """The sample covers every BOLT 1 and BOLT 2 type chanlab knows, so the tests below
    trace each of them."""
    assert {m.TYPE for m in MESSAGES} == {t for t in MESSAGE_TYPES if t < 256}  # not gossip


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: f"{m.NAME}")
def test_trace_round_trips_with_the_spec_field_names(message: Message) -> None:
    """Encoded, then traced from bytes: the BOLT name and type, fixed fields exactly the CSV's
    (without length fields) in wire order, TLV records named as the CSV names them."""
    traced = trace_bytes(encode_message(message))
    assert traced == trace_message(decode_message(encode_message(message)))
    spec = SPEC[message.NAME]
    assert (traced.name, traced.type) == (message.NAME, spec.type)
    names = [f.name for f in traced.fields]
    assert tuple(names[:len(spec.fields)]) == spec.fields
    assert set(names[len(spec.fields):]) <= spec.tlvs
    assert "error" not in names


def _by_name(name: str) -> TracedMessage:
    (message,) = [m for m in MESSAGES if m.NAME == name][:1]
    return trace_bytes(encode_message(message))


def test_values_carry_their_units() -> None:
    """Amounts with sat/msat, feerates in sat/kw, delays in blocks, features by BOLT 9 name."""
    opened = _by_name("open_channel")
    assert opened.field("funding_satoshis") == "1,000,000 sat"
    assert opened.field("push_msat") == "0 msat"
    assert opened.field("feerate_per_kw") == "2,000 sat/kw (8 sat/vB)"
    assert opened.field("to_self_delay") == "6 blocks"
    assert opened.field("chain_hash") == "regtest (06226e46…910f)"
    assert opened.field("channel_type") == "option_static_remotekey (required, bit 12) [0x1000]"
    point = opened.field("funding_pubkey")
    assert point is not None and point.endswith(" (33 bytes)") and "…" in point
    add = _by_name("update_add_htlc")
    assert add.field("amount_msat") == "5,000,000 msat"
    assert add.field("cltv_expiry") == "block height 500"
    assert add.field("onion_routing_packet") == "1,366 bytes (BOLT 4 onion, version 0)"
    assert _by_name("error").field("data") == "'bad <signature>'"
    assert _by_name("update_fail_malformed_htlc").field("failure_code") == "0xc005"
    assert "var_onion_optin (required, bit 8)" in (_by_name("init").field("features") or "")
    funding = _by_name("funding_created").field("funding_txid")
    assert funding is not None and funding.startswith(FUNDING_OUTPOINT.txid_hex[:16])


def test_tower_messages_are_traced() -> None:
    """tower_upload and tower_ack decode to their fields."""
    upload = TowerClient(PrivateKey(b"\x07" * 32)).upload(bytes(range(16)), b"k" * 200)
    traced = trace_bytes(encode_tower_upload(upload))
    assert (traced.name, traced.type) == ("tower_upload", TOWER_UPLOAD)
    assert [f.name for f in traced.fields] == ["client_pubkey", "hint", "signature", "blob"]
    assert traced.field("blob") == "200 bytes (encrypted justice kit)"
    ack = trace_bytes(encode_tower_ack(TowerAck(hint=bytes(range(16)), status=AckStatus.REFUSED,
                                                reason="too big")))
    assert (ack.name, ack.type, ack.field("status"), ack.field("reason")) == \
        ("tower_ack", TOWER_ACK, "refused", "'too big'")
    assert MESSAGE_NAMES[TOWER_ACK] == "tower_ack"


def test_bad_and_unknown_messages_are_traced_not_raised() -> None:
    """A truncated open_channel is traced with the reason; an unknown odd type by number."""
    bad = trace_bytes(b"\x00\x20" + bytes(5))
    assert bad.name == "open_channel" and (bad.field("error") or "").startswith("does not parse")
    unknown = trace_bytes(b"\x80\x05" + b"\x01\x02")
    assert (unknown.name, unknown.field("payload")) == ("unknown_32773", "0102")
    assert trace_message(UnknownMessage(type=32773, payload=b"")).field("payload") == "(empty)"


def test_render_prints_a_header_and_aligned_fields() -> None:
    """One header line with arrow, direction, name, type and peer; one indented line a field."""
    text = render_trace(_by_name("update_fee"), Direction.SENT, peer="bob")
    lines = text.splitlines()
    assert lines[0] == "→ sent update_fee (type 134) to bob"
    assert lines[2] == "    feerate_per_kw  2,500 sat/kw (10 sat/vB)"
    assert lines[1].startswith("    channel_id      ")
    received = render_trace(_by_name("ping"), Direction.RECEIVED, peer="alice")
    assert received.splitlines() == ["← received ping (type 18) from alice",
                                     "    num_pong_bytes  4", "    ignored         3 bytes"]


def test_trace_log_renders_recorded_entries_in_order() -> None:
    """A node's record of sent and received bytes renders as one block per message, in order."""
    opened, accepted = MESSAGES[0], MESSAGES[1]
    log = render_trace_log([
        TraceEntry(direction=Direction.SENT, peer="bob", data=encode_message(opened)),
        TraceEntry(direction=Direction.RECEIVED, peer="bob", data=encode_message(accepted)),
    ])
    blocks = log.split("\n\n")
    assert [b.splitlines()[0] for b in blocks] == [
        "→ sent open_channel (type 32) to bob", "← received accept_channel (type 33) from bob"]
    assert blocks[0] + "\n" == render_trace(trace_bytes(encode_message(opened)), Direction.SENT,
                                            "bob")
