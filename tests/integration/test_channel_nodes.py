"""Two chanlab node processes on regtest: open, pay, close, force-close, kill -9, hostile peers.

Every node here is a real ``chanlab node start`` process (``regtest.cluster``); the tests
drive them through their control sockets and check the chain with bitcoind's RPC. Amounts are
exact: a closing or commitment output is compared with the channel balance it must carry
minus the fee BOLT 3 says it pays, never with "about right".

The hostile-peer tests put a peer of our own making (``hostile_peer.HostilePeer``) in this
process: it speaks the protocol honestly through ``channel.state.Channel`` until it lies.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from bitcoin.core import CTransaction
from hostile_peer import HostilePeer, p2wpkh

from channel.errors import ChanlabError
from channel.keys import PrivateKey
from channel.messages import (
    ChannelReestablish,
    CommitmentSigned,
    RevokeAndAck,
    UpdateAddHtlc,
    UpdateFailMalformedHtlc,
)
from channel.node import COMMITMENT_FEERATE_PER_KW
from channel.wire import ErrorMessage, Ping, Pong, WarningMessage
from regtest.chain import address_of
from regtest.cluster import Cluster, NodeProcess
from regtest.node import BitcoindNode
from regtest.wait import wait_for as blocking_wait_for
from regtest.wallet import Wallet

WaitFor = Callable[..., object]

FUNDING_SAT = 1_000_000
#: BOLT 3 "Fee Calculation": a static_remotekey commitment weighs 724 + 172 per HTLC output.
COMMITMENT_WEIGHT = 724
HTLC_OUTPUT_WEIGHT = 172


def _name(role: str) -> str:
    """A node name unique in the run (it is also the node's wallet name on the shared bitcoind)."""
    return f"{role}-{secrets.token_hex(3)}"


def _commitment_fee_sat(htlc_outputs: int = 0) -> int:
    return (COMMITMENT_WEIGHT + HTLC_OUTPUT_WEIGHT * htlc_outputs) * \
        COMMITMENT_FEERATE_PER_KW // 1000


def _rpc(bitcoind: BitcoindNode, method: str, *params: Any, wallet: str | None = None) -> Any:
    """A bitcoind RPC whose JSON answer the caller knows the shape of."""
    client = bitcoind.rpc if wallet is None else bitcoind.rpc.wallet(wallet)
    result: Any = client.call(method, *params)
    return result


def _height(bitcoind: BitcoindNode) -> int:
    return int(_rpc(bitcoind, "getblockcount"))


def _tx(bitcoind: BitcoindNode, txid: str) -> CTransaction:
    return CTransaction.deserialize(bytes.fromhex(str(_rpc(bitcoind, "getrawtransaction", txid))))


def _txid(tx: CTransaction) -> str:
    return bytes(tx.GetTxid())[::-1].hex()


def _outpoint(channel: dict[str, Any]) -> tuple[str, int]:
    txid, vout = str(channel["funding_outpoint"]).split(":")
    return txid, int(vout)


def _spends(tx: CTransaction, outpoint: tuple[str, int]) -> bool:
    return any(bytes(i.prevout.hash)[::-1].hex() == outpoint[0] and i.prevout.n == outpoint[1]
               for i in tx.vin)


def _is_mine(bitcoind: BitcoindNode, wallet: str, script_pubkey: bytes) -> bool:
    info = _rpc(bitcoind, "getaddressinfo", address_of(script_pubkey, "regtest"),
                wallet=wallet)
    return bool(info["ismine"])


def _unspent_sat(bitcoind: BitcoindNode, wallet: str, txid: str, vout: int) -> int | None:
    """The value of ``txid:vout`` if the wallet ``wallet`` holds it unspent (else None)."""
    for utxo in _rpc(bitcoind, "listunspent", 0, wallet=wallet):
        if utxo["txid"] == txid and utxo["vout"] == vout:
            return round(float(utxo["amount"]) * 100_000_000)
    return None


def _mempool_spender(bitcoind: BitcoindNode, outpoint: tuple[str, int]) -> CTransaction | None:
    for txid in _rpc(bitcoind, "getrawmempool"):
        tx = _tx(bitcoind, str(txid))
        if _spends(tx, outpoint):
            return tx
    return None


def _witness_script(tx: CTransaction, index: int = 0) -> bytes:
    return bytes(tx.wit.vtxinwit[index].scriptWitness.stack[-1])


def _check_funding_script(script_pubkey: bytes, witness_script: bytes) -> None:
    """BOLT 3 funding output: P2WSH of ``2 <pubkey1> <pubkey2> 2 OP_CHECKMULTISIG``, keys sorted."""
    assert script_pubkey == b"\x00\x20" + hashlib.sha256(witness_script).digest()
    assert len(witness_script) == 71
    assert witness_script[0] == 0x52 and witness_script[1] == 33 and witness_script[35] == 33
    assert witness_script[69:] == b"\x52\xae"
    assert witness_script[2:35] < witness_script[36:69]


class Pair:
    """Two nodes with one channel from ``opener`` to ``accepter``, and their expected balances."""

    def __init__(self, cluster: Cluster, opener: NodeProcess, accepter: NodeProcess,
                 opened: dict[str, Any]) -> None:
        self.cluster = cluster
        self.opener = opener
        self.accepter = accepter
        self.opened = opened
        self.funding_txid = str(opened["funding_txid"])
        self.ids = {opener.name: opener.node_id, accepter.name: accepter.node_id}
        self.msat = {opener.name: FUNDING_SAT * 1000, accepter.name: 0}

    def channel(self, node: NodeProcess) -> dict[str, Any]:
        return self.cluster.channel(node, self.funding_txid)

    def outpoint(self) -> tuple[str, int]:
        return _outpoint(self.channel(self.opener))

    def other(self, node: NodeProcess) -> NodeProcess:
        return self.accepter if node is self.opener else self.opener

    def settled(self, node: NodeProcess) -> bool:
        """``node``'s current commitment shows exactly the expected balances, no HTLC."""
        chan = self.channel(node)
        return bool(chan["state"] == "normal" and chan["htlcs"] == 0
                and chan["local_msat"] == self.msat[node.name]
                and chan["remote_msat"] == self.msat[self.other(node).name])

    def wait_settled(self, wait_for: WaitFor, what: str) -> None:
        for node in (self.opener, self.accepter):
            wait_for(lambda node=node: self.settled(node), timeout=15,
                     what=f"{node.name}'s balances {what}")

    def pay(self, payer: NodeProcess, amount_msat: int, wait_for: WaitFor) -> dict[str, Any]:
        payee = self.other(payer)
        invoice = payee.call("invoice", amount_msat=amount_msat)
        result: dict[str, Any] = payer.call("pay", invoice=invoice["invoice"])
        assert result["status"] == "succeeded", result
        assert result["amount_msat"] == amount_msat
        assert result["payment_hash"] == invoice["payment_hash"]
        assert hashlib.sha256(bytes.fromhex(result["payment_preimage"])).hexdigest() == \
            invoice["payment_hash"]
        self.msat[payer.name] -= amount_msat
        self.msat[payee.name] += amount_msat
        self.wait_settled(wait_for, f"after {payer.name} paid {amount_msat} msat")
        return result

    def cooperative_close(self, bitcoind: BitcoindNode, closer: NodeProcess) -> CTransaction:
        """Close from ``closer``; check the closing tx output by output against the balances."""
        outpoint = self.outpoint()
        funding_spk = bytes(_tx(bitcoind, outpoint[0]).vout[outpoint[1]].scriptPubKey)
        closed = closer.call("close", channel=str(self.opened["channel"]))
        self.cluster.mine(1)
        closing_txid = str(closed["closing_txid"])
        assert self.cluster.miner.confirmations(closing_txid) == 1
        tx = _tx(bitcoind, closing_txid)
        assert len(tx.vin) == 1 and _spends(tx, outpoint)
        _check_funding_script(funding_spk, _witness_script(tx))
        # BOLT 3 closing tx: amounts truncated to the satoshi; the opener pays the fee, which
        # chanlab negotiates at the commitment feerate over the weight with 73-byte signatures.
        signatures = tx.wit.vtxinwit[0].scriptWitness.stack[1:3]
        weight = len(tx.serialize({"include_witness": False})) * 3 + len(tx.serialize())
        fee_sat = (weight + sum(73 - len(sig) for sig in signatures)) * \
            COMMITMENT_FEERATE_PER_KW // 1000
        expected = {self.opener.name: self.msat[self.opener.name] // 1000 - fee_sat,
                    self.accepter.name: self.msat[self.accepter.name] // 1000}
        received: dict[str, int] = {}
        for n, out in enumerate(tx.vout):
            spk = bytes(out.scriptPubKey)
            owners = [node for node in (self.opener, self.accepter)
                      if _is_mine(bitcoind, node.name, spk)]
            assert len(owners) == 1, f"output {n} belongs to {owners}"
            owner = owners[0].name
            assert owner not in received
            received[owner] = out.nValue
            assert _unspent_sat(bitcoind, owner, closing_txid, n) == out.nValue
        assert received == {name: sat for name, sat in expected.items() if sat > 0}
        # what the outputs leave to the miner: the fee, plus the msat the truncation drops
        assert FUNDING_SAT - sum(received.values()) == \
            fee_sat + sum(msat % 1000 for msat in self.msat.values()) // 1000
        for node in (self.opener, self.accepter):
            chan = self.channel(node)
            assert chan["state"] in ("closing", "closed")
            assert chan["closing_txid"] == closing_txid
        return tx


def _open_pair(cluster: Cluster, *, opener_delay: int = 10,
               accepter_delay: int = 10) -> Pair:
    opener = cluster.start_node(_name("alice"), funds_sat=2_000_000,
                                to_self_delay=opener_delay)
    accepter = cluster.start_node(_name("bob"), to_self_delay=accepter_delay)
    opened = cluster.open_channel(opener, accepter, FUNDING_SAT)
    return Pair(cluster, opener, accepter, opened)


# -- open, pay, close ----------------------------------------------------------------------


def test_open_pay_both_ways_and_cooperative_close(
        cluster: Cluster, bitcoind: BitcoindNode, wait_for: WaitFor) -> None:
    """A channel opens with its exact funding output, pays both ways, closes to both wallets."""
    pair = _open_pair(cluster)
    alice, bob = pair.opener, pair.accepter
    funding = _tx(bitcoind, pair.funding_txid)
    outpoint = pair.outpoint()
    assert outpoint[0] == pair.funding_txid
    assert funding.vout[outpoint[1]].nValue == FUNDING_SAT
    assert cluster.miner.confirmations(pair.funding_txid) >= 1
    # alice's wallet paid it: exactly the channel amount, the fee on top
    paid = _rpc(bitcoind, "gettransaction", pair.funding_txid, wallet=alice.name)
    assert round(float(paid["amount"]) * 100_000_000) == -FUNDING_SAT
    assert float(paid["fee"]) < 0
    for node, opener in ((alice, "holder"), (bob, "counterparty")):
        chan = pair.channel(node)
        assert chan["state"] == "normal"
        assert chan["opener"] == opener
        assert chan["funding_sat"] == FUNDING_SAT
        assert chan["peer_id"] == pair.ids[pair.other(node).name]
        assert _outpoint(chan) == outpoint
    pair.wait_settled(wait_for, "after the open")

    for payer, amount_msat in ((alice, 70_000_000), (alice, 5_000_000), (bob, 30_000_000),
                               (alice, 1_234_567), (bob, 1), (bob, 14_999_999)):
        pair.pay(payer, amount_msat, wait_for)

    # more than bob can spend (his balance above the reserve alice imposes) is refused locally
    refused = bob.call("pay", invoice=alice.call("invoice",
                                                  amount_msat=pair.msat[bob.name])["invoice"])
    assert refused["status"] == "failed" and "exceeds" in refused["reason"], refused
    pair.wait_settled(wait_for, "after a refused payment")

    # an invoice pays once: the second HTLC for it is failed back and moves nothing
    invoice = bob.call("invoice", amount_msat=2_000_000)["invoice"]
    first = alice.call("pay", invoice=invoice)
    assert first["status"] == "succeeded"
    pair.msat[alice.name] -= 2_000_000
    pair.msat[bob.name] += 2_000_000
    pair.wait_settled(wait_for, "after the first payment of the invoice")
    second = alice.call("pay", invoice=invoice)
    assert second["status"] == "failed", second
    pair.wait_settled(wait_for, "after the invoice was paid twice")

    pair.cooperative_close(bitcoind, alice)


# -- unilateral close ----------------------------------------------------------------------

OPENER_DELAY = 6      # what the opener imposes on the accepter's to_local
ACCEPTER_DELAY = 4    # what the accepter imposes on the opener's to_local


def _force_close(pair: Pair, bitcoind: BitcoindNode, closer: NodeProcess,
                 wait_for: WaitFor) -> tuple[CTransaction, int, int]:
    """Force-close from ``closer``, mine and check it; return (tx, to_local n, to_remote n)."""
    other = pair.other(closer)
    outpoint = pair.outpoint()
    funding_spk = bytes(_tx(bitcoind, outpoint[0]).vout[outpoint[1]].scriptPubKey)
    result = closer.call("force-close", channel=str(pair.opened["channel"]))
    assert result["to_self_delay"] == (ACCEPTER_DELAY if closer is pair.opener else OPENER_DELAY)
    txid = str(result["commitment_txid"])
    assert bitcoind.rpc.call("getmempoolentry", txid)
    pair.cluster.mine(1)
    assert pair.cluster.miner.confirmations(txid) == 1
    tx = _tx(bitcoind, txid)
    assert len(tx.vin) == 1 and _spends(tx, outpoint)
    _check_funding_script(funding_spk, _witness_script(tx))
    # BOLT 3: the obscured commitment number hides in locktime (0x20 prefix) and sequence (0x80)
    assert tx.nLockTime >> 24 == 0x20 and tx.vin[0].nSequence >> 24 == 0x80
    fee = _commitment_fee_sat()

    def owed(node: NodeProcess) -> int:
        return pair.msat[node.name] // 1000 - (fee if node is pair.opener else 0)

    assert len(tx.vout) == 2
    kinds = {len(out.scriptPubKey): n for n, out in enumerate(tx.vout)}
    to_local, to_remote = kinds[34], kinds[22]      # P2WSH (delayed), P2WPKH (static_remotekey)
    assert tx.vout[to_local].nValue == owed(closer)
    assert tx.vout[to_remote].nValue == owed(other)
    assert FUNDING_SAT - sum(out.nValue for out in tx.vout) == \
        fee + sum(msat % 1000 for msat in pair.msat.values()) // 1000
    for node in (closer, other):
        wait_for(lambda node=node: pair.channel(node)["state"] == "force_closing", timeout=10,
                 what=f"{node.name} to see the commitment on chain")
    assert pair.channel(closer)["closing_txid"] == txid
    return tx, to_local, to_remote


def _paid_pair(cluster: Cluster, wait_for: WaitFor) -> Pair:
    pair = _open_pair(cluster, opener_delay=OPENER_DELAY, accepter_delay=ACCEPTER_DELAY)
    pair.pay(pair.opener, 300_000_001, wait_for)
    pair.pay(pair.accepter, 12_345_678, wait_for)
    return pair


@pytest.mark.parametrize("closer_role", ["opener", "accepter"])
def test_force_close_broadcasts_the_latest_commitment(
        cluster: Cluster, bitcoind: BitcoindNode, wait_for: WaitFor, closer_role: str) -> None:
    """force-close mines the latest commitment: exact to_local and to_remote, the opener pays."""
    pair = _paid_pair(cluster, wait_for)
    closer = pair.opener if closer_role == "opener" else pair.accepter
    _force_close(pair, bitcoind, closer, wait_for)


def _sweep_of(bitcoind: BitcoindNode, outpoint: tuple[str, int]) -> CTransaction | None:
    """The transaction spending ``outpoint``, in the mempool or (via txindex) mined."""
    spender = _mempool_spender(bitcoind, outpoint)
    if spender is not None:
        return spender
    if _rpc(bitcoind, "gettxout", outpoint[0], outpoint[1], True) is not None:
        return None
    best = str(_rpc(bitcoind, "getbestblockhash"))
    for _ in range(20):
        block = _rpc(bitcoind, "getblock", best, 2)
        for entry in block["tx"]:
            tx = CTransaction.deserialize(bytes.fromhex(str(entry["hex"])))
            if _spends(tx, outpoint):
                return tx
        best = str(block["previousblockhash"])
    return None


def _check_sweep(bitcoind: BitcoindNode, sweep: CTransaction, outpoint: tuple[str, int],
                 value_sat: int, owner: NodeProcess) -> None:
    """One input (``outpoint``), one output to ``owner``'s wallet: the value minus a fee."""
    assert len(sweep.vin) == 1 and _spends(sweep, outpoint)
    assert len(sweep.vout) == 1
    out = sweep.vout[0]
    assert _is_mine(bitcoind, owner.name, bytes(out.scriptPubKey))
    fee = value_sat - out.nValue
    vsize = (len(sweep.serialize({"include_witness": False})) * 3 + len(sweep.serialize()) + 3) // 4
    assert vsize <= fee <= 50 * vsize, f"sweep fee {fee} sat for {vsize} vbytes"
    assert _unspent_sat(bitcoind, owner.name, _txid(sweep), 0) == out.nValue


@pytest.mark.parametrize("closer_role", ["opener", "accepter"])
def test_force_close_sweeps_to_remote_at_once_and_to_local_after_the_delay(
        cluster: Cluster, bitcoind: BitcoindNode, wait_for: WaitFor, closer_role: str) -> None:
    """After a force-close the peer sweeps to_remote at once, the closer to_local after the CSV."""
    pair = _paid_pair(cluster, wait_for)
    closer = pair.opener if closer_role == "opener" else pair.accepter
    other = pair.other(closer)
    tx, to_local, to_remote = _force_close(pair, bitcoind, closer, wait_for)
    txid = _txid(tx)
    delay = ACCEPTER_DELAY if closer is pair.opener else OPENER_DELAY
    confirmed_at = _height(bitcoind)

    remote_sweep = wait_for(lambda: _sweep_of(bitcoind, (txid, to_remote)), timeout=10,
                            what=f"{other.name} to sweep its to_remote")
    assert isinstance(remote_sweep, CTransaction)
    pair.cluster.mine(1)
    _check_sweep(bitcoind, remote_sweep, (txid, to_remote), tx.vout[to_remote].nValue, other)

    # to_local: spendable in the block at height confirmed_at + delay, not one block earlier
    while _height(bitcoind) < confirmed_at + delay - 1:
        assert _sweep_of(bitcoind, (txid, to_local)) is None
        pair.cluster.mine(1)
    local_sweep = wait_for(lambda: _sweep_of(bitcoind, (txid, to_local)), timeout=10,
                           what=f"{closer.name} to sweep its to_local")
    assert isinstance(local_sweep, CTransaction)
    assert local_sweep.vin[0].nSequence == delay
    witness_script = _witness_script(local_sweep)
    assert witness_script[0] == 0x63 and witness_script[-1] == 0xAC   # OP_IF ... OP_CHECKSIG
    pair.cluster.mine(1)
    _check_sweep(bitcoind, local_sweep, (txid, to_local), tx.vout[to_local].nValue, closer)


# -- kill -9 mid-payment -------------------------------------------------------------------

KILL_OFFSETS_S = (0.0, 0.002, 0.005, 0.009)
KILL_ROUNDS = len(KILL_OFFSETS_S)
KILL_PAYMENT_MSAT = 1_000_000


class _PayLoop(threading.Thread):
    """Pays ``payee`` from ``payer`` one invoice after another until a payment does not succeed."""

    def __init__(self, payer: NodeProcess, payee: NodeProcess) -> None:
        super().__init__(daemon=True)
        self.payer = payer
        self.payee = payee
        self.succeeded = 0
        self.unresolved = 0      # the payment cut short by the kill: it may or may not settle

    def run(self) -> None:
        while True:
            try:
                invoice = self.payee.call("invoice", amount_msat=KILL_PAYMENT_MSAT)["invoice"]
            except (ChanlabError, OSError):
                return          # the payee is gone before this payment began
            try:
                result = self.payer.call("pay", invoice=invoice, timeout_s=2.0)
            except (ChanlabError, OSError):
                self.unresolved = 1
                return
            if result["status"] != "succeeded":
                self.unresolved = 1
                return
            self.succeeded += 1


def _wait_linked(pair: Pair, wait_for: WaitFor, restarted: NodeProcess) -> None:
    """Until both nodes list each other as peers.

    The opener dialled the accepter, so only it knows the address: restarted, it redials by
    itself; when the accepter restarts, the opener is told to redial.
    """
    opener, accepter = pair.opener, pair.accepter
    started = time.monotonic()
    patience_s = 3.0 if restarted is opener else 0.0

    def linked() -> bool:
        if pair.ids[accepter.name] in opener.call("info")["peers"] and \
                pair.ids[opener.name] in accepter.call("info")["peers"]:
            return True
        if time.monotonic() - started >= patience_s:
            try:
                opener.call("connect", peer=accepter.address)
            except ChanlabError:
                pass
        return False

    wait_for(linked, timeout=30, what="the two nodes to reconnect")


@pytest.mark.parametrize("victim_role", ["payer", "payee"])
def test_kill_9_mid_payment_then_restart_loses_nothing(
        cluster: Cluster, bitcoind: BitcoindNode, wait_for: WaitFor, victim_role: str) -> None:
    """kill -9 of either node during payments: after restart both agree, no msat lost or made."""
    pair = _open_pair(cluster)
    payer, payee = pair.opener, pair.accepter
    victim = payer if victim_role == "payer" else payee
    pair.pay(payer, 50_000_000, wait_for)   # so the payee has more than its reserve to pay back
    for round_ in range(KILL_ROUNDS):
        loop = _PayLoop(payer, payee)
        loop.start()
        wait_for(lambda loop=loop: loop.succeeded >= 3, timeout=10,
                 what="three payments to go through")
        # a different moment of the payment cycle each round
        time.sleep(KILL_OFFSETS_S[round_])
        victim.kill()
        loop.join(15)
        assert not loop.is_alive()
        victim.start()
        _wait_linked(pair, wait_for, victim)

        def settled_both() -> bool:
            a, b = pair.channel(payer), pair.channel(payee)
            return bool(a["state"] == b["state"] == "normal" and a["htlcs"] == b["htlcs"] == 0
                    and a["local_msat"] == b["remote_msat"]
                    and a["remote_msat"] == b["local_msat"])

        wait_for(settled_both, timeout=20, what=f"round {round_}: both channels to settle")
        a = pair.channel(payer)
        assert a["local_msat"] + a["remote_msat"] == FUNDING_SAT * 1000
        gained = a["remote_msat"] - pair.msat[payee.name]
        assert gained % KILL_PAYMENT_MSAT == 0
        count = gained // KILL_PAYMENT_MSAT
        assert loop.succeeded <= count <= loop.succeeded + loop.unresolved, \
            (round_, loop.succeeded, loop.unresolved, count)
        print(f"round {round_}: {loop.succeeded} succeeded, {loop.unresolved} cut short, "
              f"{count} settled")
        pair.msat[payee.name] += gained
        pair.msat[payer.name] -= gained
        # the channel goes on: a payment each way
        pair.pay(payer, 7_654_321, wait_for)
        pair.pay(payee, 1_234_567, wait_for)
    pair.cooperative_close(bitcoind, payer)


# -- hostile peers ---------------------------------------------------------------------------
#
# One node process takes every attack in turn (module scope): it must keep serving after each.
# Each attack gets a fresh hostile peer and a fresh channel the node opens to it, pushing
# HOSTILE_PUSH_MSAT so the hostile side has money to offer HTLCs with.

HOSTILE_FUNDING_SAT = 200_000
HOSTILE_PUSH_MSAT = 100_000_000
HTLC_MSAT = 50_000_000


@pytest.fixture(scope="module")
def target(bitcoind: BitcoindNode, miner: Wallet,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, NodeProcess]]:
    with Cluster.running(bitcoind, tmp_path_factory.mktemp("hostile"), miner) as nodes:
        yield nodes, nodes.start_node(_name("target"), funds_sat=3_000_000)


class Attack:
    """A hostile peer with an open, locked-in channel from the target node."""

    def __init__(self, cluster: Cluster, node: NodeProcess, bitcoind: BitcoindNode) -> None:
        self.cluster = cluster
        self.node = node
        self.bitcoind = bitcoind
        self.node_id = bytes.fromhex(node.node_id)
        self.peer = HostilePeer()

    async def open(self) -> None:
        await self.peer.connect("127.0.0.1", self.node.port, self.node_id)
        opening = asyncio.ensure_future(asyncio.to_thread(
            self.node.call, "open", peer_id=self.peer.node_id.hex(),
            amount_sat=HOSTILE_FUNDING_SAT, push_msat=HOSTILE_PUSH_MSAT))
        await self.peer.accept_channel()
        opened = await opening
        assert opened["funding_txid"] == self.outpoint[0]
        await asyncio.to_thread(self.cluster.mine, 1)
        await self.peer.lock_in()
        await self.wait(lambda: self.node_channel()["state"] == "normal", "the channel to open")

    @property
    def outpoint(self) -> tuple[str, int]:
        assert self.peer.channel is not None and self.peer.channel.funding_outpoint is not None
        return self.peer.channel.funding_outpoint.txid_hex, self.peer.channel.funding_outpoint.vout

    @property
    def channel_id(self) -> bytes:
        assert self.peer.channel is not None and self.peer.channel.channel_id is not None
        return self.peer.channel.channel_id

    def node_channel(self) -> dict[str, Any]:
        return self.cluster.channel(self.node, self.outpoint[0])

    async def wait(self, predicate: Callable[[], Any], what: str, timeout: float = 15) -> Any:
        return await asyncio.to_thread(_wait, predicate, timeout, what)

    async def expect_error(self, *words: str) -> ErrorMessage:
        """The node answers ``error`` for this channel, naming the fault."""
        error = await self.peer.expect(ErrorMessage)
        assert error.channel_id == self.channel_id
        for word in words:
            assert word in error.text, error.text
        return error

    async def expect_force_close(self, *, to_remote_sat: int, htlc_sat: tuple[int, ...] = (),
                                 ) -> CTransaction:
        """The node's latest commitment hits the mempool: the node is safe, its money comes home.

        The node opened, so it pays the fee; ``to_remote_sat`` is the hostile side's balance
        and ``htlc_sat`` the HTLC outputs in the node's commitment.
        """
        spender = await self.wait(lambda: _mempool_spender(self.bitcoind, self.outpoint),
                                  "the node's commitment in the mempool")
        assert isinstance(spender, CTransaction)
        assert len(spender.vin) == 1
        assert self.peer.channel is not None
        fee = _commitment_fee_sat(len(htlc_sat))
        expected = {
            p2wpkh(self.peer.channel.keys.basepoints().payment_basepoint.data): to_remote_sat,
        }
        values = {bytes(out.scriptPubKey): out.nValue for out in spender.vout}
        assert {spk: v for spk, v in values.items() if spk in expected} == expected
        rest = sorted(v for spk, v in values.items() if spk not in expected)
        to_local = HOSTILE_FUNDING_SAT - to_remote_sat - sum(htlc_sat) - fee
        assert rest == sorted((to_local, *htlc_sat))
        chan = self.node_channel()
        assert chan["state"] == "force_closing"
        assert chan["closing_txid"] == _txid(spender)
        return spender

    async def assert_serving(self) -> None:
        """The node still answers its control socket and a new peer's ping."""
        info = await asyncio.to_thread(self.node.call, "info")
        assert info["node_id"] == self.node_id.hex()
        fresh = HostilePeer()
        await fresh.connect("127.0.0.1", self.node.port, self.node_id)
        await fresh.send(Ping(num_pong_bytes=5))
        assert await fresh.expect(Pong) == Pong(ignored=bytes(5))
        await fresh.close()

    def add_htlc(self, amount_msat: int = HTLC_MSAT) -> UpdateAddHtlc:
        """A valid update_add_htlc from the hostile side (its onion is never peeled here)."""
        assert self.peer.channel is not None
        return self.peer.channel.add_htlc(
            amount_msat=amount_msat, payment_hash=secrets.token_bytes(32),
            cltv_expiry=_height(self.bitcoind) + 100,
            onion_routing_packet=secrets.token_bytes(1366))


def _wait(predicate: Callable[[], Any], timeout: float, what: str) -> Any:
    return blocking_wait_for(predicate, timeout=timeout, what=what)


def _run(target: tuple[Cluster, NodeProcess], bitcoind: BitcoindNode,
         attack: Callable[[Attack], Any]) -> None:
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


def _bad_signature() -> bytes:
    """A well-formed signature, by an unrelated key, of an unrelated digest."""
    return PrivateKey(secrets.token_bytes(32)).sign(secrets.token_bytes(32))


def test_hostile_commitment_signed_with_a_bad_signature(
        target: tuple[Cluster, NodeProcess], bitcoind: BitcoindNode) -> None:
    """A commitment_signed whose signature does not verify: error, and the node force-closes."""
    async def attack(a: Attack) -> None:
        assert a.peer.channel is not None
        add = a.add_htlc()
        signed = a.peer.channel.sign_commitment()
        await a.peer.send(add, dataclasses.replace(signed, signature=_bad_signature()))
        await a.expect_error("signature")
        # the node's newest commitment is still #0: the unsigned HTLC is not in it
        await a.expect_force_close(to_remote_sat=HOSTILE_PUSH_MSAT // 1000)

    _run(target, bitcoind, attack)


def test_hostile_revoke_and_ack_with_a_bad_secret(
        target: tuple[Cluster, NodeProcess], bitcoind: BitcoindNode) -> None:
    """A revoke_and_ack whose secret does not match the revoked commitment: error, force-close."""
    async def attack(a: Attack) -> None:
        chan = a.peer.channel
        assert chan is not None
        await a.peer.send(a.add_htlc(), chan.sign_commitment())
        chan.on_revoke_and_ack(await a.peer.expect(RevokeAndAck))
        revoke = chan.on_commitment_signed(await a.peer.expect(CommitmentSigned))
        await a.peer.send(dataclasses.replace(revoke,
                                              per_commitment_secret=secrets.token_bytes(32)))
        await a.expect_error("per_commitment_secret")
        # the node signed for commitment #1 with the HTLC: that is what it broadcasts
        await a.expect_force_close(to_remote_sat=(HOSTILE_PUSH_MSAT - HTLC_MSAT) // 1000,
                                   htlc_sat=(HTLC_MSAT // 1000,))

    _run(target, bitcoind, attack)


def test_hostile_channel_reestablish_with_a_wrong_commitment_number(
        target: tuple[Cluster, NodeProcess], bitcoind: BitcoindNode) -> None:
    """channel_reestablish claiming a commitment number never signed: error, force-close."""
    async def attack(a: Attack) -> None:
        chan = a.peer.channel
        assert chan is not None
        await a.peer.reconnect("127.0.0.1", a.node.port, a.node_id)
        theirs = await a.peer.expect(ChannelReestablish)
        assert theirs.channel_id == a.channel_id
        assert (theirs.next_commitment_number, theirs.next_revocation_number) == (1, 0)
        ours = chan.channel_reestablish()
        await a.peer.send(dataclasses.replace(
            ours, next_commitment_number=ours.next_commitment_number + 5))
        await a.expect_error("next_commitment_number")
        await a.expect_force_close(to_remote_sat=HOSTILE_PUSH_MSAT // 1000)

    _run(target, bitcoind, attack)


def test_hostile_update_add_htlc_over_max_accepted_htlcs(
        target: tuple[Cluster, NodeProcess], bitcoind: BitcoindNode) -> None:
    """The HTLC after max_accepted_htlcs (483) is refused with an error and a force-close."""
    async def attack(a: Attack) -> None:
        chan = a.peer.channel
        assert chan is not None and chan.counterparty_params is not None
        limit = chan.counterparty_params.max_accepted_htlcs
        assert limit == 483
        adds = [a.add_htlc(10_000) for _ in range(limit)]
        one_more = dataclasses.replace(adds[-1], id=limit, payment_hash=secrets.token_bytes(32))
        await a.peer.send(*adds, one_more)
        await a.expect_error("max_accepted_htlcs")
        await a.expect_force_close(to_remote_sat=HOSTILE_PUSH_MSAT // 1000)

    _run(target, bitcoind, attack)


def test_hostile_update_add_htlc_over_its_balance(
        target: tuple[Cluster, NodeProcess], bitcoind: BitcoindNode) -> None:
    """An HTLC for more than the hostile side owns is refused with an error and a force-close."""
    async def attack(a: Attack) -> None:
        honest = a.add_htlc(1_000)
        greedy = dataclasses.replace(honest, amount_msat=HOSTILE_PUSH_MSAT + 1_000)
        await a.peer.send(greedy)
        await a.expect_error("exceeds")
        await a.expect_force_close(to_remote_sat=HOSTILE_PUSH_MSAT // 1000)

    _run(target, bitcoind, attack)


GARBAGE = {
    # a known type whose payload is cut short: BOLT 1 says warn and close
    "truncated_message": b"\x00\x84" + b"\x01\x02\x03",
    # "it's OK to be odd", not even: 32768 is unknown and even
    "unknown_even_type": b"\x80\x00" + b"even",
}


@pytest.mark.parametrize("kind", [*GARBAGE, "unencrypted_junk"])
def test_hostile_garbage_after_the_handshake(
        target: tuple[Cluster, NodeProcess], bitcoind: BitcoindNode, kind: str) -> None:
    """Garbage on a live connection: warning (if still readable), hang-up; the channel lives."""
    async def attack(a: Attack) -> None:
        chan = a.peer.channel
        assert chan is not None
        if kind == "unencrypted_junk":
            # a MAC failure leaves nothing to answer on (BOLT 8): the node just hangs up
            await a.peer.send_unencrypted(secrets.token_bytes(64))
            assert not any(isinstance(m, ErrorMessage) for m in await a.peer.closed())
        else:
            await a.peer.send_raw_messages(GARBAGE[kind])
            seen = await a.peer.closed()
            warnings = [m for m in seen if isinstance(m, WarningMessage)]
            assert len(warnings) == 1, seen
            assert warnings[0].channel_id == bytes(32)
            assert not any(isinstance(m, ErrorMessage) for m in seen)
        # not a channel fault: reconnect, reestablish, and the channel works on
        await a.peer.reconnect("127.0.0.1", a.node.port, a.node_id)
        theirs = await a.peer.expect(ChannelReestablish)
        await a.peer.send(chan.channel_reestablish())
        for message in chan.on_channel_reestablish(theirs):
            await a.peer.send(message)
        # an HTLC with a junk onion locks in, and the node fails it back as BOLT 2 wants:
        # update_fail_malformed_htlc, a BADONION code and the onion's SHA256
        add = a.add_htlc()
        await a.peer.send(add, chan.sign_commitment())
        chan.on_revoke_and_ack(await a.peer.expect(RevokeAndAck))
        await a.peer.send(chan.on_commitment_signed(await a.peer.expect(CommitmentSigned)))
        failed = await a.peer.expect(UpdateFailMalformedHtlc)
        assert (failed.channel_id, failed.id) == (a.channel_id, 0)
        assert failed.failure_code & 0x8000
        assert failed.sha256_of_onion == hashlib.sha256(add.onion_routing_packet).digest()
        assert a.node_channel()["state"] == "normal"
        assert _mempool_spender(bitcoind, a.outpoint) is None

    _run(target, bitcoind, attack)
