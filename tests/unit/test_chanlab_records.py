"""chanlab's typed answers: a node's JSON answers become frozen records, its errors one line."""

from __future__ import annotations

import dataclasses

import pytest

from chanlab import ChannelRecord, InvoiceRecord, NodeError, NodeInfo
from chanlab.records import start_failure

CHANNELS_ENTRY = {
    "channel": "ab" * 32, "peer_id": "02" + "cd" * 32, "state": "normal",
    "channel_id": "ef" * 32, "funding_sat": 500_000,
    "funding_outpoint": "12" * 32 + ":1", "opener": "holder",
    "commitment_format": "static_remotekey", "to_self_delay": 10,
    "local_msat": 475_000_000, "remote_msat": 25_000_000, "htlcs": 0,
    "holder_commitment_number": 2, "counterparty_commitment_number": 2,
}


def test_channel_record_reads_a_channels_entry() -> None:
    """A ``channels`` entry becomes a ChannelRecord with its funding txid split out."""
    record = ChannelRecord.from_answer(CHANNELS_ENTRY)
    assert record.funding_txid == "12" * 32
    assert (record.local_msat, record.remote_msat) == (475_000_000, 25_000_000)
    assert record.closing_txid is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.state = "closed"  # type: ignore[misc]


def test_channel_record_before_funding_has_no_balances() -> None:
    """Before the funding is signed a channel has no outpoint and no balances: None, not 0."""
    entry = {k: v for k, v in CHANNELS_ENTRY.items()
             if k not in ("local_msat", "remote_msat", "htlcs", "holder_commitment_number",
                          "counterparty_commitment_number")}
    record = ChannelRecord.from_answer({**entry, "funding_outpoint": None,
                                        "state": "awaiting_accept"})
    assert record.funding_txid is None and record.local_msat is None


def test_node_info_and_invoice_records() -> None:
    """``info`` lists peers as a tuple; an invoice record prints as the invoice text."""
    info = NodeInfo.from_answer({"name": "alice", "node_id": "02" + "00" * 32,
                                 "address": "02" + "00" * 32 + "@127.0.0.1:9735",
                                 "chain": "regtest", "height": 101, "peers": ["03" + "11" * 32],
                                 "channels": 1})
    assert info.peers == ("03" + "11" * 32,) and info.channel_count == 1
    invoice = InvoiceRecord.from_answer({"invoice": "lnbcrt250u1p...", "payment_hash": "aa" * 32,
                                         "amount_msat": 25_000_000, "hold": False})
    assert str(invoice) == "lnbcrt250u1p..."


def test_node_error_keeps_one_line() -> None:
    """A multi-line reason is cut to its first line, after the node's name."""
    error = NodeError("bob", "RejectedUpdate: no channel 1234\n  Traceback...\n")
    assert str(error) == "bob: RejectedUpdate: no channel 1234"
    assert error.node == "bob"


def test_a_start_failure_keeps_the_first_and_last_lines() -> None:
    """A node that would not start: the headline and the process's last words, on one line."""
    exc = RuntimeError("node carol exited at start:\nTraceback (most recent call last):\n"
                       "  File ...\nSetupError: no bitcoind.json: start a regtest bitcoind\n")
    assert str(start_failure("carol", exc)) == (
        "carol: did not start: node carol exited at start: ... "
        "SetupError: no bitcoind.json: start a regtest bitcoind")
