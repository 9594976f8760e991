"""The watchtower as its own process: uploads over BOLT 8, and breaches punished by the tower alone.

Every tower here is a real ``chanlab tower start`` process and every node a real ``chanlab node
start`` process (``regtest.cluster``). The breach matrix runs ``regtest.tower_drills.breach_tower``
(the ``chanlab demo breach-tower`` drill) with the victim's node offline, then checks the chain
again here: who spent what, each fee, and the victim's wallet to the satoshi. The protocol tests
speak to the tower process directly with our own BOLT 8 client.
"""

from __future__ import annotations

import asyncio
import secrets

import pytest
from bitcoin.core import CTransaction

from channel.keys import PrivateKey
from channel.messages import decode_message, encode_message
from channel.node import COMMITMENT_FEERATE_PER_KW
from channel.tower import SignedUpload, TowerClient
from channel.tower_wire import (
    TOWER_ACK,
    AckStatus,
    TowerAck,
    decode_tower_message,
    encode_tower_upload,
)
from channel.transport import Transport, connect
from channel.types import OutPoint
from channel.wire import Features, Init
from regtest.cluster import Cluster, NodeProcess, TowerProcess
from regtest.demo import Narrator
from regtest.drills import owned_by
from regtest.tower_drills import (
    CHANNEL_SAT,
    HTLC_SAT,
    TowerBreachOutcome,
    breach_tower,
    broadcast_all,
    stage_tower_channel,
    wait_tower_height,
)
from regtest.wait import wait_for

#: BOLT 3 "Fee Calculation": a static_remotekey commitment weighs 724 + 172 per HTLC output.
COMMITMENT_WEIGHT = 724
HTLC_OUTPUT_WEIGHT = 172


def _names() -> tuple[str, str, str]:
    """Node names unique in the run (each is a wallet on the shared bitcoind), and a tower."""
    tag = secrets.token_hex(3)
    return f"alice-{tag}", f"bob-{tag}", f"tower-{tag}"


class _Quiet(Narrator):
    def step(self, text: str) -> None:
        return None

    def detail(self, text: str) -> None:
        return None


def _tx(cluster: Cluster, txid: str) -> CTransaction:
    return CTransaction.deserialize(cluster.miner.get_transaction(txid))


def _check_punished(cluster: Cluster, out: TowerBreachOutcome, *, htlc_outputs: int,
                    second_stage: bool = False) -> None:
    """The chain after a breach the tower punished alone, checked from the transactions."""
    bob = cluster.nodes[next(n for n in cluster.nodes if n.startswith("bob-"))]
    s = out.settlement
    breach = _tx(cluster, out.breach_txid)
    # the breach is Alice's revoked state: BOLT 3 fee paid by her (the opener), Bob's
    # to_remote exactly his balance in that state
    commitment_fee = (COMMITMENT_WEIGHT + HTLC_OUTPUT_WEIGHT * htlc_outputs) * \
        COMMITMENT_FEERATE_PER_KW // 1000
    assert s.fee_sat[out.breach_txid] == commitment_fee
    values = sorted(int(o.nValue) for o in breach.vout)
    expected = sorted([out.balances_msat[0] // 1000 - commitment_fee,
                       out.balances_msat[1] // 1000] + [HTLC_SAT] * htlc_outputs)
    assert values == expected
    # the tower's justice txs are on chain with the fees it reported, paying Bob's wallet
    justice = {j["txid"]: j for j in out.justice}
    for txid, j in justice.items():
        tx = _tx(cluster, txid)
        assert s.fee_sat[txid] == j["fee_sat"]
        assert len(tx.vout) == 1 and int(tx.vout[0].nValue) == j["amount_sat"]
        assert owned_by(bob.wallet, bytes(tx.vout[0].scriptPubKey))
    spent_by_tower = {str(OutPoint(txid=bytes(_tx(cluster, t).vin[0].prevout.hash),
                                   vout=int(_tx(cluster, t).vin[0].prevout.n)))
                      for t in justice}
    # Bob's node (offline during the breach) added only the to_remote sweep; the rest of the
    # tree is the breach, the tower's justice and (second stage) Alice's HTLC tx
    others = [t for t in s.order if t != out.breach_txid and t not in justice]
    bob_sweeps = [t for t in others if owned_by(bob.wallet, bytes(_tx(cluster, t).vout[0]
                                                                 .scriptPubKey))]
    assert len(bob_sweeps) == 1
    sweep = _tx(cluster, bob_sweeps[0])
    to_remote = next(i for i, o in enumerate(breach.vout)
                     if int(o.nValue) == out.balances_msat[1] // 1000)
    assert [(bytes(i.prevout.hash)[::-1].hex(), int(i.prevout.n)) for i in sweep.vin] == \
        [(out.breach_txid, to_remote)]
    htlc_txs = [t for t in others if t not in bob_sweeps]
    assert htlc_txs == ([out.second_stage_txid] if second_stage else [])
    revocable = [f"{out.breach_txid}:{i}" for i in range(len(breach.vout)) if i != to_remote]
    if second_stage:
        revocable = [op for op in revocable
                     if not any(f"{bytes(i.prevout.hash)[::-1].hex()}:{i.prevout.n}" == op
                                for i in _tx(cluster, htlc_txs[0]).vin)]
        revocable.append(f"{htlc_txs[0]}:0")
    assert spent_by_tower == set(revocable)
    # Bob's wallet: the whole channel minus every fee on the way, and Alice got nothing
    fees = commitment_fee + sum(s.fee_sat[t] for t in justice) + s.fee_sat[bob_sweeps[0]] + \
        sum(s.fee_sat[t] for t in htlc_txs)
    assert fees == s.total_fees_sat
    assert out.wallet_delta_sat == {next(n for n in cluster.nodes if n.startswith("alice-")): 0,
                                    bob.name: CHANNEL_SAT - fees}
    assert s.foreign_inputs_sat == 0


def test_tower_alone_punishes_a_revoked_commitment_without_htlcs(cluster: Cluster) -> None:
    """With the victim offline, its tower takes the revoked to_local; the victim's wallet ends
    with the whole channel minus the commitment, justice and to_remote sweep fees."""
    out = breach_tower(cluster, _Quiet(), names=_names())
    assert len(out.justice) == 1
    _check_punished(cluster, out, htlc_outputs=0)


def test_tower_alone_punishes_a_revoked_commitment_with_an_offered_htlc(
        cluster: Cluster) -> None:
    """A revoked state holding an HTLC the cheater offered: the tower takes to_local and the
    HTLC output, each with its own justice tx."""
    out = breach_tower(cluster, _Quiet(), names=_names(), htlc="offered")
    assert len(out.justice) == 2 and out.htlc_sat == HTLC_SAT
    _check_punished(cluster, out, htlc_outputs=1)


def test_tower_alone_punishes_a_revoked_commitment_with_a_received_htlc(
        cluster: Cluster) -> None:
    """A revoked state holding an HTLC the cheater received: the tower takes to_local and the
    HTLC output."""
    out = breach_tower(cluster, _Quiet(), names=_names(), htlc="received")
    assert len(out.justice) == 2
    _check_punished(cluster, out, htlc_outputs=1)


def test_tower_restarted_after_a_crash_punishes_the_cheaters_htlc_success_output(
        cluster: Cluster) -> None:
    """kill -9 of the tower loses no blob; restarted after the cheater's commitment and
    HTLC-success tx confirmed, it reads the missed blocks and takes to_local and the HTLC tx's
    output (second-stage signature, static_remotekey)."""
    out = breach_tower(cluster, _Quiet(), names=_names(), htlc="received", second_stage=True)
    assert out.blobs_before_restart is not None and out.blobs_before_restart >= 4
    assert out.blobs_after_restart == out.blobs_before_restart
    assert len(out.justice) == 2
    _check_punished(cluster, out, htlc_outputs=1, second_stage=True)


def test_tower_alone_punishes_the_cheaters_htlc_timeout_output(cluster: Cluster) -> None:
    """With victim and tower down, the cheater confirms a revoked commitment holding the HTLC it
    offered, then (after cltv_expiry) its HTLC-timeout tx; the restarted tower alone takes
    to_local and the HTLC-timeout tx's output (second-stage signature, static_remotekey)."""
    out = breach_tower(cluster, _Quiet(), names=_names(), htlc="offered", second_stage=True)
    assert out.blobs_before_restart is not None and out.blobs_before_restart >= 4
    assert out.blobs_after_restart == out.blobs_before_restart
    assert len(out.justice) == 2 and out.htlc_sat == HTLC_SAT
    chain = cluster.miner
    assert out.second_stage_txid is not None and out.cltv_expiry is not None
    timeout_tx = _tx(cluster, out.second_stage_txid)
    # an HTLC-timeout (nLockTime = cltv_expiry, BOLT 3), not valid with the commitment
    assert timeout_tx.nLockTime == out.cltv_expiry
    timeout_height = chain.height() - chain.confirmations(out.second_stage_txid) + 1
    assert out.breach_height < timeout_height and timeout_height > out.cltv_expiry
    # the tower's second-stage justice spends the HTLC-timeout output by the revocation path
    second = next(j for j in out.justice if j["spends"] == f"{out.second_stage_txid}:0")
    assert _tx(cluster, second["txid"]).wit.vtxinwit[0].scriptWitness.stack[1] == b"\x01"
    _check_punished(cluster, out, htlc_outputs=1, second_stage=True)


def test_tower_follows_a_reorg_of_its_justice_and_sees_it_confirm_again(
        cluster: Cluster) -> None:
    """When the block carrying its justice is reorganised out for one without it, the tower
    marks the justice unconfirmed, keeps it broadcast, and records it at its new height."""
    staged = stage_tower_channel(cluster, _Quiet(), names=_names())
    tower, chain = staged.tower, cluster.miner
    staged.bob.stop()
    breach = str(staged.alice.call("cheat", channel=staged.channel,
                                   state=staged.state)["revoked_commitment_txid"])
    justice = wait_for(lambda: broadcast_all(tower, breach), timeout=10, what="justice")
    assert len(justice) == 1 and chain.in_mempool(justice[0]["txid"])
    txid = justice[0]["txid"]
    address = chain.new_address()
    first = chain.rpc.generateblock(address, [breach, txid])
    height = chain.height()
    wait_tower_height(tower, height)

    def status() -> str:
        return str(next(j["status"] for j in tower.call("justice") if j["txid"] == txid))

    assert status() == f"confirmed at height {height}"
    chain.rpc.invalidateblock(first)
    replacement = chain.rpc.generateblock(address, [breach])   # the breach, not the justice
    assert chain.height() == height and replacement != first
    wait_for(lambda: status() == "broadcast", timeout=10,
             what="the tower to see its justice reorganised out")
    assert chain.in_mempool(txid) and chain.confirmations(breach) == 1
    cluster.mine(1)
    wait_for(lambda: status() == f"confirmed at height {height + 1}", timeout=10,
             what="the justice to confirm again")
    assert chain.confirmations(txid) == 1


def _open_with_history(cluster: Cluster, alice: NodeProcess, bob: NodeProcess,
                       payments: int) -> None:
    cluster.open_channel(alice, bob, CHANNEL_SAT)
    for _ in range(payments):
        assert cluster.pay(alice, bob, 10_000_000)["status"] == "succeeded"


def _revoked_states(node: NodeProcess) -> int:
    """How many of its peer's commitments ``node`` holds revoked (numbers 0..n-1)."""
    return int(node.call("channels")[0]["counterparty_commitment_number"])


def test_an_unregistered_node_is_refused_until_the_operator_registers_it(
        cluster: Cluster) -> None:
    """A node the operator never registered gets every upload refused (the tower stores
    nothing); once registered, its queued states are all uploaded."""
    a, b, t = _names()
    tower = cluster.start_tower(t)
    alice = cluster.start_node(a, funds_sat=2_000_000)
    bob = cluster.start_node(b)
    _open_with_history(cluster, alice, bob, payments=2)
    bob.call("add-tower", address=tower.address)

    def refused() -> bool:
        status = bob.call("towers")[0]
        return "not registered" in status["last_error"]

    wait_for(refused, timeout=15, what="the tower to refuse the unregistered node")
    info = tower.call("info")
    assert info["blobs"] == 0 and info["uploads"]["unregistered"] >= 1
    assert info["uploads"]["accepted"] == 0 and bob.call("towers")[0]["pending"] > 0
    tower.register(bob)
    wait_for(lambda: bob.call("towers")[0]["pending"] == 0, timeout=15,
             what="bob's queued states to reach the tower")
    assert tower.call("info")["blobs"] == _revoked_states(bob)


def test_uploads_queued_while_the_tower_is_down_survive_a_node_kill(cluster: Cluster) -> None:
    """States revoked while the tower is down are uploaded after it returns, even across a
    kill -9 of the node in between: nothing is lost, nothing stored twice."""
    a, b, t = _names()
    tower = cluster.start_tower(t)
    alice = cluster.start_node(a, funds_sat=2_000_000)
    bob = cluster.start_node(b, towers=(tower,))
    _open_with_history(cluster, alice, bob, payments=1)
    wait_for(lambda: bob.call("towers")[0]["pending"] == 0, timeout=15, what="first uploads")
    stored = tower.call("info")["blobs"]
    tower.kill()
    wait_for(lambda: not bob.call("towers")[0]["connected"], timeout=10,
             what="bob's node to notice the tower hung up")
    for _ in range(3):
        assert cluster.pay(alice, bob, 10_000_000)["status"] == "succeeded"
    assert bob.call("towers")[0]["pending"] == _revoked_states(bob) - stored > 0
    bob.kill()
    bob.start()
    tower.start()
    wait_for(lambda: bob.call("towers")[0]["pending"] == 0, timeout=15,
             what="bob's queued states to reach the restarted tower")
    info = tower.call("info")
    assert info["blobs"] == _revoked_states(bob)
    assert info["uploads"]["accepted"] == _revoked_states(bob) - stored


# ---------------------------------------------------------------------------------------------
# The protocol, spoken by hand


async def _dial(tower: TowerProcess, key: PrivateKey) -> Transport:
    """Connect to ``tower`` as ``key`` (BOLT 8) and exchange init."""
    tower_id, _, addr = tower.address.partition("@")
    host, _, port = addr.rpartition(":")
    transport = await connect(host, int(port), local_static=key.secret,
                              remote_static_pubkey=bytes.fromhex(tower_id))
    try:
        await transport.send(encode_message(Init.ours(Features())))
        assert isinstance(decode_message(await transport.recv()), Init)
    except BaseException:
        await transport.close()
        raise
    return transport


async def _session(tower: TowerProcess, key: PrivateKey,
                   uploads: list[SignedUpload | bytes]) -> list[TowerAck]:
    """Connect as ``key``, exchange init, send each upload (or raw message), read the acks."""
    transport = await _dial(tower, key)
    try:
        acks = []
        for upload in uploads:
            await transport.send(upload if isinstance(upload, bytes)
                                 else encode_tower_upload(upload))
            raw = await asyncio.wait_for(transport.recv(), 10)
            assert int.from_bytes(raw[:2], "big") == TOWER_ACK
            ack = decode_tower_message(TOWER_ACK, raw[2:])
            assert isinstance(ack, TowerAck)
            acks.append(ack)
        return acks
    finally:
        await transport.close()


def test_tower_protocol_authenticates_clients_and_keeps_blobs_across_a_crash(
        cluster: Cluster) -> None:
    """Uploads are refused from an unregistered key, signed by another key than the BOLT 8
    one, badly signed or conflicting; accepted ones survive kill -9 (a re-upload is then a
    duplicate)."""
    tower = cluster.start_tower(_names()[2])
    me, other = PrivateKey(secrets.token_bytes(32)), PrivateKey(secrets.token_bytes(32))
    client, stranger = TowerClient(me), TowerClient(other)
    hint, blob = secrets.token_bytes(16), secrets.token_bytes(200)
    good = client.upload(hint, blob)

    first = asyncio.run(_session(tower, me, [good]))
    assert [a.status for a in first] == [AckStatus.UNREGISTERED]
    assert first[0].hint == hint
    tower.call("register", client_id=me.pubkey.hex())

    forged = SignedUpload(client_pubkey=me.pubkey, hint=hint, blob=blob,
                          signature=other.sign(bytes(32)))
    conflicting = client.upload(hint, secrets.token_bytes(200))
    acks = asyncio.run(_session(tower, me, [
        stranger.upload(hint, blob), forged, good, good, conflicting]))
    assert [a.status for a in acks] == [AckStatus.REFUSED, AckStatus.REFUSED,
                                        AckStatus.ACCEPTED, AckStatus.DUPLICATE,
                                        AckStatus.REFUSED]
    assert "another key" in acks[0].reason and "signature" in acks[1].reason
    assert "different blob" in acks[4].reason
    assert tower.call("info")["blobs"] == 1

    tower.kill()
    tower.start()
    assert tower.call("info")["blobs"] == 1
    again = asyncio.run(_session(tower, me, [good]))
    assert [a.status for a in again] == [AckStatus.DUPLICATE]


def test_tower_answers_a_short_upload_with_a_warning_and_hangs_up(cluster: Cluster) -> None:
    """A ``tower_upload`` too short to parse gets a BOLT 1 warning and the connection closes;
    the tower keeps serving others."""
    tower = cluster.start_tower(_names()[2])
    key = PrivateKey(secrets.token_bytes(32))

    async def run() -> bytes:
        transport = await _dial(tower, key)
        try:
            await transport.send(b"\x80\x01" + bytes(20))   # tower_upload, 20 bytes
            warning = await asyncio.wait_for(transport.recv(), 10)
            with pytest.raises((EOFError, ConnectionError, asyncio.IncompleteReadError)):
                await asyncio.wait_for(transport.recv(), 10)
            return warning
        finally:
            await transport.close()

    warning = asyncio.run(run())
    assert int.from_bytes(warning[:2], "big") == 1   # BOLT 1 warning
    good = TowerClient(key).upload(secrets.token_bytes(16), secrets.token_bytes(100))
    assert [a.status for a in asyncio.run(_session(tower, key, [good]))] == \
        [AckStatus.UNREGISTERED]
