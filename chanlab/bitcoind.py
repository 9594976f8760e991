"""I/O: a private regtest bitcoind for a test session or a script, with a funded miner wallet.

``Bitcoind`` wraps a running ``regtest.node.BitcoindNode`` (it satisfies that protocol too, so
anything taking a ``BitcoindNode`` takes it) and adds what a test writer needs:
``generate_block(n)``, ``fund(address_or_node, amount_sat)``, and a typed view of a
transaction (``tx(txid)``: its outputs and its fee), enough to check a wallet to the satoshi.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Protocol

from bitcoin.core import CTransaction

from regtest.bitcoind_binary import BitcoindBinary, ensure_bitcoind
from regtest.node import BitcoindNode, LocalBitcoind
from regtest.rpc import AsyncRpc, Rpc, RpcAuth
from regtest.wait import wait_for
from regtest.wallet import Wallet, ensure_mature_coins

__all__ = ["MINER", "Bitcoind", "FundTarget", "TxOutput", "TxRecord", "provision_bitcoind"]

MINER = "miner"          # the bitcoind wallet that mines and pays for everything
_SCAN_BLOCKS = 50        # how far back ``spending_tx`` looks for a mined spender


class FundTarget(Protocol):
    """Anything with a bitcoind wallet on this node (a ``chanlab.Node``)."""

    @property
    def name(self) -> str: ...
    @property
    def wallet(self) -> Wallet: ...


@dataclass(frozen=True)
class TxOutput:
    vout: int
    value_sat: int
    script_pubkey: bytes


@dataclass(frozen=True)
class TxRecord:
    """A transaction as the chain holds it: what it spends, what it pays, the fee it left."""

    txid: str
    inputs: tuple[tuple[str, int], ...]   # (txid, vout) of each spent output
    outputs: tuple[TxOutput, ...]
    fee_sat: int
    confirmations: int                    # 0 while in the mempool

    def output_paying(self, value_sat: int) -> TxOutput:
        """The one output of exactly ``value_sat`` (raises if none or several)."""
        found = [o for o in self.outputs if o.value_sat == value_sat]
        if len(found) != 1:
            values = ", ".join(f"{o.value_sat} sat" for o in self.outputs)
            raise LookupError(f"{self.txid} has {len(found)} outputs of {value_sat} sat "
                              f"(its outputs: {values})")
        return found[0]


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def provision_bitcoind(progress: Callable[[str], None] = _progress) -> BitcoindBinary:
    """The bitcoind binary chanlab uses, provisioned into its cache first if needed (as
    ``make demo`` does): ``$BITCOIND``, PATH, the cache, else a download into the cache."""
    return ensure_bitcoind(progress=progress)


def _txid(tx: CTransaction) -> str:
    return bytes(tx.GetTxid())[::-1].hex()


class Bitcoind:
    """A running regtest bitcoind with a ``miner`` wallet holding mature coins."""

    def __init__(self, node: BitcoindNode) -> None:
        self.node = node
        self.miner = Wallet.open(node.rpc, MINER)
        ensure_mature_coins(self.miner)
        self._names: set[str] = set()

    @classmethod
    @contextmanager
    def running(cls, *, backend: str = "local", binary: BitcoindBinary | None = None
                ) -> Iterator[Bitcoind]:
        """Start a private bitcoind (temp datadir, free ports), stop and remove it on exit."""
        node: BitcoindNode
        if backend == "local":
            node = LocalBitcoind(binary=binary if binary is not None else provision_bitcoind())
        elif backend == "docker":
            from regtest.docker_node import DockerBitcoind

            node = DockerBitcoind()
        else:
            raise ValueError(f"unknown bitcoind backend {backend!r}: use 'local' or 'docker'")
        with node:
            yield cls(node)

    # --- what tests use -------------------------------------------------------------------------

    def generate_block(self, n: int = 1, *, to_address: str | None = None) -> list[str]:
        """Mine ``n`` blocks (to the miner unless ``to_address``); return their hashes."""
        return self.miner.mine(n, to_address)

    def height(self) -> int:
        return self.miner.height()

    def fund(self, target: str | FundTarget, amount_sat: int, *, timeout: float = 30.0) -> str:
        """Pay ``amount_sat`` from the miner to an address or a node's wallet, mine it; txid.

        For a node, returns once its wallet counts the coins as confirmed, so it can open a
        channel with them right away.
        """
        if amount_sat <= 0:
            raise ValueError(f"amount_sat must be positive, got {amount_sat}")
        if isinstance(target, str):
            txid = self.miner.send_to_address(target, amount_sat)
            self.miner.confirm(txid)
            return txid
        wallet = target.wallet
        before = wallet.balances().trusted_sat
        txid = self.miner.send_to_address(wallet.new_address(), amount_sat)
        self.miner.confirm(txid)
        wait_for(lambda: wallet.balances().trusted_sat >= before + amount_sat, timeout=timeout,
                 what=f"{target.name}'s wallet to see its {amount_sat} sat confirmed")
        return txid

    def tx(self, txid: str) -> TxRecord:
        """The transaction ``txid`` (mempool or mined) with its fee, from the chain."""
        tx = CTransaction.deserialize(self.rpc.getrawtransaction(txid))
        inputs = tuple((bytes(i.prevout.hash)[::-1].hex(), int(i.prevout.n)) for i in tx.vin)
        spent_sat = 0
        for prev_txid, vout in inputs:
            prev = CTransaction.deserialize(self.rpc.getrawtransaction(prev_txid))
            spent_sat += int(prev.vout[vout].nValue)
        outputs = tuple(TxOutput(vout=n, value_sat=int(o.nValue),
                                 script_pubkey=bytes(o.scriptPubKey))
                        for n, o in enumerate(tx.vout))
        depth = self.rpc.getrawtransaction_verbose(txid).get("confirmations", 0)
        return TxRecord(txid=txid, inputs=inputs, outputs=outputs,
                        fee_sat=spent_sat - sum(o.value_sat for o in outputs),
                        confirmations=depth if isinstance(depth, int) else 0)

    def spending_tx(self, txid: str, vout: int) -> TxRecord | None:
        """The transaction spending ``txid:vout``, in the mempool or in the last 50 blocks."""
        candidates = list(self.rpc.getrawmempool())
        best = self.rpc.getbestblockhash()
        for _ in range(_SCAN_BLOCKS):
            block = self.rpc.getblock_verbose(best)
            txids = block.get("tx")
            if isinstance(txids, list):
                candidates.extend(str(t) for t in txids[1:])   # not the coinbase
            previous = block.get("previousblockhash")
            if not isinstance(previous, str):
                break
            best = previous
        for candidate in candidates:
            tx = CTransaction.deserialize(self.rpc.getrawtransaction(candidate))
            if any(bytes(i.prevout.hash)[::-1].hex() == txid and i.prevout.n == vout
                   for i in tx.vin):
                return self.tx(candidate)
        return None

    def reserve_name(self, wanted: str) -> str:
        """A node name not used before on this bitcoind (each node has a wallet named after
        it, and wallets outlive the nodes): ``wanted``, or ``wanted-2``, ``wanted-3``..."""
        taken = self._names | set(self.rpc.listwalletdir())
        name, n = wanted, 1
        while name in taken:
            n += 1
            name = f"{wanted}-{n}"
        self._names.add(name)
        return name

    # --- the BitcoindNode protocol, delegated ---------------------------------------------------

    @property
    def chain(self) -> str:
        return self.node.chain

    @property
    def rpc(self) -> Rpc:
        return self.node.rpc

    @property
    def rpc_url(self) -> str:
        return self.node.rpc_url

    @property
    def rpc_port(self) -> int:
        return int(self.node.rpc_url.rsplit(":", 1)[1])

    @property
    def rpc_auth(self) -> RpcAuth:
        return self.node.rpc_auth

    @property
    def cookie_path(self) -> Path:
        return self.node.cookie_path

    @property
    def zmq_rawblock(self) -> str:
        return self.node.zmq_rawblock

    @property
    def zmq_rawtx(self) -> str:
        return self.node.zmq_rawtx

    @property
    def p2p_port(self) -> int:
        return self.node.p2p_port

    @property
    def datadir(self) -> Path:
        return self.node.datadir

    def async_rpc(self) -> AsyncRpc:
        return self.node.async_rpc()

    def start(self) -> None:
        self.node.start()

    def stop(self) -> None:
        self.node.stop()

    def restart(self) -> None:
        self.node.restart()

    def __enter__(self) -> Bitcoind:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
