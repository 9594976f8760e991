"""Teaching aids without I/O beyond a temp folder: the trace file, channel prefixes, the facts
a node exports for its pictures, and the client's printing of amounts."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from test_manager import Net

from channel.channel_facts import channel_facts
from channel.errors import RejectedUpdate
from channel.manager import find_channel
from channel.messages import encode_message
from channel.trace import Direction, trace_bytes
from channel.trace_log import FLUSH_AFTER_S, TraceLog
from channel.wire import Ping
from regtest.client_views import format_msat, human_answer


@pytest.fixture
def net() -> Net:
    return Net()


def test_trace_log_keeps_the_latest_messages_in_order_and_stays_bounded(
        tmp_path: Path) -> None:
    """25 messages with room for 10: the last 10 at least are read back in order, with their
    way, peer and bytes; no more than 20 lines are on disk; numbering survives a reopen."""
    path = tmp_path / "trace.log"
    log = TraceLog(path, keep=10)
    peer = bytes.fromhex("02" + "11" * 32)
    for n in range(25):
        log.record(peer, n % 2 == 0, encode_message(Ping(num_pong_bytes=n, ignored=b"")))
    log.close()
    again = TraceLog(path, keep=10)
    latest = again.read(10)
    assert [r.seq for r in latest] == list(range(16, 26))
    assert latest[-1].direction is Direction.SENT and latest[-1].peer_id == peer
    assert trace_bytes(latest[-1].data).field("num_pong_bytes") == "24"
    lines = sum(len(p.read_text().splitlines()) for p in tmp_path.iterdir())
    assert lines <= 20
    again.record(peer, False, encode_message(Ping(num_pong_bytes=99, ignored=b"")))
    assert [r.seq for r in again.read(0, since=24)] == [25, 26]
    assert again.read(1)[0].direction is Direction.RECEIVED


def test_trace_log_in_a_running_node_writes_a_flight_once_and_reads_it_at_once(
        tmp_path: Path) -> None:
    """Under an event loop, recorded lines reach the file FLUSH_AFTER_S later in one write,
    while read() (the node's `trace` command) sees every one of them at once."""
    path = tmp_path / "trace.log"
    peer = bytes.fromhex("02" + "22" * 32)

    async def flight() -> tuple[list[int], str, str]:
        log = TraceLog(path)
        for n in range(3):
            log.record(peer, True, encode_message(Ping(num_pong_bytes=n, ignored=b"")))
        on_disk_at_once = path.read_text()
        seen = [r.seq for r in log.read(0)]
        log.record(peer, False, encode_message(Ping(num_pong_bytes=9, ignored=b"")))
        await asyncio.sleep(FLUSH_AFTER_S * 3)
        on_disk_later = path.read_text()
        log.close()
        return seen, on_disk_at_once, on_disk_later

    seen, at_once, later = asyncio.run(flight())
    assert seen == [1, 2, 3]
    assert at_once == ""
    assert [line.split()[0] for line in later.splitlines()] == ["1", "2", "3", "4"]
    assert later.splitlines()[3].split()[2:4] == ["R", peer.hex()]


def test_a_channel_is_found_by_any_unique_prefix_of_either_id(net: Net) -> None:
    """A key or channel_id prefix of any length finds its channel; a prefix shared by two
    channels, an unknown one and a non-hex one are refused with one line."""
    alice, bob = net.add("alice"), net.add("bob")
    net.connect(alice, bob)
    keys = [net.open(alice, bob) for _ in range(17)]   # 17 > 16: two share a first digit
    handles = list(alice.handles.values())
    for handle in handles:
        for full in (handle.key, (handle.channel.channel_id or b"").hex()):
            unique = next(full[:n] for n in range(1, 65) if sum(
                any(i.startswith(full[:n]) for i in (h.key, (h.channel.channel_id or b"").hex()))
                for h in handles) == 1)
            assert find_channel(handles, unique) is handle
            assert alice.find(unique.upper()) is handle
    first_digits = [k[0] for k in keys]
    shared = next(d for d in first_digits if first_digits.count(d) > 1)
    with pytest.raises(RejectedUpdate, match=rf"^{shared} is the start of \d+ channels' ids"):
        find_channel(handles, shared)
    with pytest.raises(RejectedUpdate, match="no channel starts with"):
        find_channel(handles, "f" * 64 if not any(k.startswith("f" * 64) for k in keys)
                     else "0" * 64)
    with pytest.raises(RejectedUpdate, match="is not a channel id"):
        find_channel(handles, "bob")


def test_channel_facts_carry_both_commitments_and_the_held_one(net: Net) -> None:
    """After a payment, the facts name the funding outpoint, both parties' basepoints, the
    current commitments of both sides (not revoked) and our held, signed commitment."""
    alice, bob = net.add("alice"), net.add("bob")
    net.connect(alice, bob)
    key = net.open(alice, bob)
    net.pay(alice, bob, 5_000_000)
    handle = alice.handles[key]
    facts = channel_facts(handle)
    assert facts["channel"] == key and facts["opener"] == "holder"
    outpoint = handle.channel.funding_outpoint
    assert outpoint is not None
    assert (facts["funding_txid"], facts["funding_vout"]) == (outpoint.txid_hex, outpoint.vout)
    assert facts["holder_basepoints"]["funding_pubkey"] == \
        handle.channel.holder_params.basepoints.funding_pubkey.hex()
    sides = sorted((c["broadcaster"], c["revoked"]) for c in facts["commitments"])
    assert sides == [("counterparty", False), ("holder", False)]
    assert all(c["to_self_delay"] == 10 for c in facts["commitments"])
    held = [t for t in facts["transactions"] if not t["broadcast"]]
    assert len(held) == 1 and held[0]["height"] is None
    holder = next(c for c in facts["commitments"] if c["broadcaster"] == "holder")
    assert held[0]["txid"] == holder["txid"]


def test_the_client_prints_amounts_with_units_and_the_invoice_hash() -> None:
    """msat amounts print as msat with the sat value beside; an invoice prints its hash."""
    assert format_msat(25_000_000) == "25,000,000 msat (25,000 sat)"
    assert format_msat(1_500) == "1,500 msat (1.500 sat)"
    text = human_answer("invoice", {"invoice": "lnbcrt1x", "payment_hash": "ab" * 32,
                                    "amount_msat": 2_000, "hold": False})
    assert text.splitlines() == ["lnbcrt1x", f"payment_hash: {'ab' * 32}",
                                 "amount: 2,000 msat (2 sat)"]
    assert human_answer("balance", {"onchain_sat": 1_000, "offchain_msat": 5_000}) == \
        "on chain:  1,000 sat\noff chain: 5,000 msat (5 sat)"
    assert "sent     succeeded 7,000 msat (7 sat)  fee 0 msat (0 sat)" in human_answer(
        "payments", [{"payment_hash": "cd" * 32, "direction": "sent", "status": "succeeded",
                      "amount_msat": 7_000, "fee_msat": 0}])


def test_trace_log_writes_a_flood_before_its_flush_is_due(tmp_path: Path) -> None:
    """Under an event loop, MAX_PENDING recorded messages are written at once, not held in
    memory until the flush timer (a flood of messages keeps memory bounded)."""
    from channel.trace_log import MAX_PENDING
    path = tmp_path / "trace.log"
    peer = bytes.fromhex("02" + "22" * 32)

    async def flood() -> int:
        log = TraceLog(path)
        for n in range(MAX_PENDING):
            log.record(peer, True, encode_message(Ping(num_pong_bytes=n % 100, ignored=b"")))
        written = len(path.read_text().splitlines())
        log.close()
        return written

    assert asyncio.run(flood()) == MAX_PENDING   # the last one filled the buffer: all written
