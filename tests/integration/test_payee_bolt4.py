"""A node process as payee and payer against a hostile peer: BOLT 11 in, BOLT 4 errors out.

The hostile peer (``hostile_peer.HostilePeer``) pays the node's BOLT 11 invoices with HTLCs it
builds itself — twice, short, or expiring too soon — and reads the node's encrypted failure
onions; then it is the payee and fails the node's HTLC with a failure onion of its own, which
the node must decrypt and report with the hop that sent it.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
from test_channel_nodes import HOSTILE_PUSH_MSAT, Attack, _height, _name, _rpc

from channel.bolt11 import Bolt11Invoice, Network, sign_invoice
from channel.errors import ChanlabError
from channel.failure_onion import build_failure_onion, decrypt_failure_onion
from channel.messages import (
    CommitmentSigned,
    RevokeAndAck,
    UpdateAddHtlc,
    UpdateFailHtlc,
    UpdateFailMalformedHtlc,
    UpdateFulfillHtlc,
)
from channel.onion import PeeledFinal, peel_payment_onion, sha256_of_onion
from channel.onion_failures import FailureCode, IncorrectOrUnknownPaymentDetails
from channel.route import Route, RouteHop, RouteOnion, build_route_onion
from regtest.cluster import Cluster, NodeProcess
from regtest.node import BitcoindNode
from regtest.wallet import Wallet

AMOUNT_MSAT = 20_000_000
DETAILS = int(FailureCode.INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS)


@pytest.fixture(scope="module")
def target(bitcoind: BitcoindNode, miner: Wallet,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, NodeProcess]]:
    with Cluster.running(bitcoind, tmp_path_factory.mktemp("payee"), miner) as nodes:
        yield nodes, nodes.start_node(_name("payee"), funds_sat=3_000_000)


def _run(target: tuple[Cluster, NodeProcess], bitcoind: BitcoindNode, attack: Any) -> None:
    async def scenario() -> None:
        cluster, node = target
        this = Attack(cluster, node, bitcoind)
        try:
            await this.open()
            await attack(this)
            await this.assert_serving()
        finally:
            await this.peer.close()

    asyncio.run(scenario())


def _funding_scid(a: Attack) -> str:
    """BOLT 7 ``BLOCKxTXxOUTPUT`` of the channel's funding output, read from bitcoind."""
    txid, vout = a.outpoint
    block_hash = _rpc(a.bitcoind, "getrawtransaction", txid, 1)["blockhash"]
    block = _rpc(a.bitcoind, "getblock", block_hash)
    return f"{block['height']}x{block['tx'].index(txid)}x{vout}"


async def _invoice(a: Attack) -> Bolt11Invoice:
    scid = _funding_scid(a)
    await a.wait(lambda: a.node_channel().get("short_channel_id") == scid,
                 "the node to learn the channel's short_channel_id")
    answer = await asyncio.to_thread(a.node.call, "invoice", amount_msat=AMOUNT_MSAT,
                                     description="hostile test")
    # the channel is unannounced: the invoice names it in a route hint, by its real scid
    assert {"node_id": a.peer.node_id.hex(), "short_channel_id": scid} in \
        [hop for hint in answer["route_hints"] for hop in hint]
    invoice = Bolt11Invoice.decode(answer["invoice"])
    assert answer["invoice"].startswith("lnbcrt200u1")
    assert invoice.payee_node_id == a.node_id
    assert (invoice.amount_msat, invoice.min_final_cltv_expiry_delta) == (AMOUNT_MSAT, 18)
    assert answer["payment_hash"] == invoice.payment_hash.hex()
    return invoice


async def _offer(a: Attack, invoice: Bolt11Invoice, *, amount_msat: int = AMOUNT_MSAT,
                 final_cltv_delta: int = 18) -> tuple[Any, RouteOnion, int]:
    """Pay ``invoice`` to the node with an HTLC built here, run the commitment dance, and
    return the node's answer (fulfil, fail or fail_malformed), our onion and the height."""
    chan = a.peer.channel
    assert chan is not None
    height = _height(a.bitcoind)
    route = Route(hops=(RouteHop(node_id=a.node_id, short_channel_id=bytes(8)),))
    built = build_route_onion(route, payment_hash=invoice.payment_hash,
                              payment_secret=invoice.payment_secret, total_msat=amount_msat,
                              final_cltv=height + final_cltv_delta,
                              session_key=secrets.token_bytes(32))
    add = chan.add_htlc(amount_msat=built.amount_msat, payment_hash=invoice.payment_hash,
                        cltv_expiry=built.cltv_expiry, onion_routing_packet=built.onion)
    await a.peer.send(add, chan.sign_commitment())
    chan.on_revoke_and_ack(await a.peer.expect(RevokeAndAck))
    await a.peer.send(chan.on_commitment_signed(await a.peer.expect(CommitmentSigned)))
    answer: Any = await a.peer.expect(UpdateFulfillHtlc | UpdateFailHtlc |  # type: ignore[arg-type]
                                      UpdateFailMalformedHtlc)
    if isinstance(answer, UpdateFulfillHtlc):
        chan.on_update_fulfill_htlc(answer)
    else:
        chan.on_update_fail_htlc(answer if isinstance(answer, UpdateFailHtlc) else UpdateFailHtlc(
            channel_id=answer.channel_id, id=answer.id, reason=b"malformed"))
    await a.peer.send(chan.on_commitment_signed(await a.peer.expect(CommitmentSigned)),
                      chan.sign_commitment())
    chan.on_revoke_and_ack(await a.peer.expect(RevokeAndAck))
    return answer, built, height


def _assert_details(answer: Any, built: RouteOnion, htlc_msat: int, height: int) -> None:
    """An encrypted incorrect_or_unknown_payment_details(htlc_msat, height) from the payee."""
    assert isinstance(answer, UpdateFailHtlc), answer
    decrypted = decrypt_failure_onion(shared_secrets=built.shared_secrets, packet=answer.reason)
    assert decrypted.hop_index == 0
    assert decrypted.failure == IncorrectOrUnknownPaymentDetails(htlc_msat=htlc_msat,
                                                                 height=height)


def _no_fulfil(a: Attack, count: int) -> None:
    assert sum(isinstance(m, UpdateFulfillHtlc) for m in a.peer.received) == count


def test_an_htlc_for_an_already_paid_invoice_is_failed_without_the_preimage(
        target: tuple[Cluster, NodeProcess], bitcoind: BitcoindNode) -> None:
    """The node's invoice is paid once (fulfilled with its preimage); a second HTLC for it gets
    incorrect_or_unknown_payment_details and no update_fulfill_htlc: the preimage is not
    released again and the node's balance grows once."""
    async def attack(a: Attack) -> None:
        invoice = await _invoice(a)
        first, _, _ = await _offer(a, invoice)
        assert isinstance(first, UpdateFulfillHtlc)
        second, built, height = await _offer(a, invoice)
        _assert_details(second, built, AMOUNT_MSAT, height)
        _no_fulfil(a, 1)
        assert a.node_channel()["remote_msat"] == HOSTILE_PUSH_MSAT - AMOUNT_MSAT

    _run(target, bitcoind, attack)


def test_an_underpaying_htlc_is_failed_with_incorrect_or_unknown_payment_details(
        target: tuple[Cluster, NodeProcess], bitcoind: BitcoindNode) -> None:
    """1 msat less than the invoice: failed with the HTLC's amount and the node's height."""
    async def attack(a: Attack) -> None:
        invoice = await _invoice(a)
        answer, built, height = await _offer(a, invoice, amount_msat=AMOUNT_MSAT - 1)
        _assert_details(answer, built, AMOUNT_MSAT - 1, height)
        _no_fulfil(a, 0)
        assert a.node_channel()["remote_msat"] == HOSTILE_PUSH_MSAT

    _run(target, bitcoind, attack)


def test_a_too_soon_final_expiry_is_failed(
        target: tuple[Cluster, NodeProcess], bitcoind: BitcoindNode) -> None:
    """A final HTLC expiring 5 blocks above the tip (the invoice asks 18): failed."""
    async def attack(a: Attack) -> None:
        invoice = await _invoice(a)
        answer, built, height = await _offer(a, invoice, final_cltv_delta=5)
        _assert_details(answer, built, AMOUNT_MSAT, height)
        _no_fulfil(a, 0)

    _run(target, bitcoind, attack)


def test_an_unreadable_onion_gets_update_fail_malformed_htlc(
        target: tuple[Cluster, NodeProcess], bitcoind: BitcoindNode) -> None:
    """An onion with a bad HMAC: update_fail_malformed_htlc with BADONION and its SHA256."""
    async def attack(a: Attack) -> None:
        chan = a.peer.channel
        assert chan is not None
        invoice = await _invoice(a)
        onion = b"\x00" + bytes.fromhex("02" + "11" * 32) + secrets.token_bytes(1366 - 34)
        add = chan.add_htlc(amount_msat=AMOUNT_MSAT, payment_hash=invoice.payment_hash,
                            cltv_expiry=_height(a.bitcoind) + 40, onion_routing_packet=onion)
        await a.peer.send(add, chan.sign_commitment())
        chan.on_revoke_and_ack(await a.peer.expect(RevokeAndAck))
        await a.peer.send(chan.on_commitment_signed(await a.peer.expect(CommitmentSigned)))
        answer = await a.peer.expect(UpdateFailMalformedHtlc)
        assert answer.sha256_of_onion == sha256_of_onion(onion)
        assert answer.failure_code & 0x8000
        _no_fulfil(a, 0)

    _run(target, bitcoind, attack)


def test_the_node_as_payer_reports_the_decoded_failure_and_the_hop(
        target: tuple[Cluster, NodeProcess], bitcoind: BitcoindNode) -> None:
    """The node pays the hostile peer's BOLT 11 invoice (c = 147, as Electrum writes): its HTLC
    expires 147 blocks up; the peer fails it with an encrypted failure onion, and `pay`
    answers with the decoded code, the hop and one line naming both."""
    async def attack(a: Attack) -> None:
        chan = a.peer.channel
        assert chan is not None
        invoice = sign_invoice(
            node_secret=a.peer.secret, network=Network.REGTEST, amount_msat=3_000_000,
            timestamp=int(time.time()), payment_hash=secrets.token_bytes(32),
            payment_secret=secrets.token_bytes(32), description="hostile payee",
            min_final_cltv_expiry_delta=147)
        paying = asyncio.ensure_future(asyncio.to_thread(a.node.call, "pay",
                                                         invoice=invoice.encode()))
        add = await a.peer.expect(UpdateAddHtlc)
        height = _height(a.bitcoind)
        assert (add.amount_msat, add.cltv_expiry) == (3_000_000, height + 147)
        chan.on_update_add_htlc(add)
        await a.peer.send(chan.on_commitment_signed(await a.peer.expect(CommitmentSigned)),
                          chan.sign_commitment())
        chan.on_revoke_and_ack(await a.peer.expect(RevokeAndAck))
        final = peel_payment_onion(onion=add.onion_routing_packet, node_key=a.peer.secret,
                                   payment_hash=invoice.payment_hash)
        assert isinstance(final, PeeledFinal)
        assert final.payment_data is not None
        assert (final.payment_data.payment_secret, final.payment_data.total_msat) == \
            (invoice.payment_secret, 3_000_000)
        failure = IncorrectOrUnknownPaymentDetails(htlc_msat=3_000_000, height=height)
        reason = build_failure_onion(shared_secret=final.shared_secret, failure=failure)
        await a.peer.send(chan.fail_htlc(add.id, reason), chan.sign_commitment())
        chan.on_revoke_and_ack(await a.peer.expect(RevokeAndAck))
        await a.peer.send(chan.on_commitment_signed(await a.peer.expect(CommitmentSigned)))
        result = await paying
        assert result["status"] == "failed"
        assert (result["failure_code"], result["hop_index"], result["node_id"]) == \
            (DETAILS, 0, a.peer.node_id.hex())
        assert result["reason"].startswith(
            f"the payee ({a.peer.node_id.hex()[:16]}…, reached over ")
        assert failure.describe() in result["reason"]
        assert [att["failure_code"] for att in result["attempts"]] == [DETAILS]

    _run(target, bitcoind, attack)


def test_pay_refuses_expired_and_wrong_network_invoices_with_one_line(
        target: tuple[Cluster, NodeProcess]) -> None:
    """An invoice past its expiry, or one for testnet, is refused before any HTLC, in one
    line saying what to do."""
    _, node = target
    common: dict[str, Any] = {
        "node_secret": secrets.token_bytes(32), "amount_msat": 1_000,
        "payment_hash": secrets.token_bytes(32), "payment_secret": secrets.token_bytes(32),
        "description": "old"}
    expired = sign_invoice(network=Network.REGTEST, timestamp=int(time.time()) - 7200,
                           expiry_seconds=3600, **common)
    with pytest.raises(ChanlabError, match=r"invoice expired \d+ s ago: ask the payee for a "
                       r"new one"):
        node.call("pay", invoice=expired.encode())
    testnet = sign_invoice(network=Network.TESTNET, timestamp=int(time.time()), **common)
    with pytest.raises(ChanlabError, match=r"invoice is for testnet \(lntb\), we pay on "
                       r"regtest \(lnbcrt\)"):
        node.call("pay", invoice=testnet.encode())
