"""I/O: the chain and wallet helpers a demo or a test needs, on a blocking ``Rpc``.

``Chain`` wraps node-level calls (blocks, mempool, raw transactions, waiting for depth);
``Wallet`` adds one descriptor wallet of the node: addresses, balances, mining to itself, and
``fund_script``, which pays an exact amount to an arbitrary scriptPubKey and returns its outpoint.
Amounts are integer satoshis throughout; transactions travel as serialized bytes.
"""

from __future__ import annotations

import contextlib

from bitcoin.core import CMutableTransaction, CMutableTxOut, CTransaction
from bitcoin.core.script import CScript

from channel.types import OutPoint
from regtest.errors import RegtestError
from regtest.rpc import (
    MempoolAcceptResult,
    Rpc,
    RpcInvalidAddressOrKey,
    RpcWalletAlreadyLoaded,
    TxOut,
    WalletBalances,
)
from regtest.wait import wait_for

COINBASE_MATURITY = 100


#: Seconds between the mock times of consecutive blocks in a seeded run (bitcoin's target).
BLOCK_INTERVAL_S = 600


class Chain:
    """Node-level helpers: mine, broadcast, test, fetch, and wait for confirmations."""

    def __init__(self, rpc: Rpc) -> None:
        self.rpc = rpc
        #: A seeded run: block N is mined at mock time ``block_time_base + N * 600`` (bitcoind's
        #: ``setmocktime``), so block times, and with them block hashes, repeat.
        self.block_time_base: int | None = None

    def height(self) -> int:
        return self.rpc.getblockcount()

    def mine_to(self, n: int, address: str) -> list[str]:
        """Mine ``n`` blocks paying ``address``; return their hashes, oldest first."""
        if n < 0:
            raise ValueError(f"cannot mine {n} blocks")
        if self.block_time_base is None:
            return self.rpc.generatetoaddress(n, address) if n else []
        hashes: list[str] = []
        for _ in range(n):
            height = self.rpc.getblockcount() + 1
            self.rpc.call("setmocktime", self.block_time_base + height * BLOCK_INTERVAL_S)
            hashes += self.rpc.generatetoaddress(1, address)
        return hashes

    def test_mempool_accept(self, raw_tx: bytes) -> MempoolAcceptResult:
        """Would the mempool take this transaction now? ``reject_reason`` says why not."""
        (result,) = self.rpc.testmempoolaccept([raw_tx])
        return result

    def send_raw_transaction(
        self, raw_tx: bytes, *, max_feerate_sat_per_vb: int | None = None
    ) -> str:
        """Broadcast; returns the txid. Raises ``RpcVerifyRejected`` (-26) etc. when refused."""
        return self.rpc.sendrawtransaction(raw_tx, max_feerate_sat_per_vb=max_feerate_sat_per_vb)

    def get_transaction(self, txid: str) -> bytes:
        """The serialized transaction, confirmed or in the mempool (the node runs -txindex)."""
        return self.rpc.getrawtransaction(txid)

    def get_block(self, block_hash: str) -> bytes:
        """The serialized block."""
        return self.rpc.getblock(block_hash)

    def get_block_txids(self, block_hash: str) -> list[str]:
        txids = self.rpc.getblock_verbose(block_hash)["tx"]
        if not isinstance(txids, list):
            raise RegtestError("getblock returned no tx list")
        return [str(txid) for txid in txids]

    def get_tx_out(self, outpoint: OutPoint, *, include_mempool: bool = True) -> TxOut | None:
        """The output if unspent, else None."""
        return self.rpc.gettxout(outpoint.txid_hex, outpoint.vout, include_mempool=include_mempool)

    def in_mempool(self, txid: str) -> bool:
        return txid in self.rpc.getrawmempool()

    def confirmations(self, txid: str) -> int:
        """Depth of ``txid``: 0 in the mempool, >= 1 once mined. Raises -5 if unknown."""
        info = self.rpc.getrawtransaction_verbose(txid)
        depth = info.get("confirmations", 0)
        return depth if isinstance(depth, int) else 0

    def wait_for_confirmation(self, txid: str, *, depth: int = 1, timeout: float = 30.0) -> str:
        """Wait until ``txid`` is ``depth`` deep (someone else mines); return its block hash."""

        def deep_enough() -> str | None:
            try:
                info = self.rpc.getrawtransaction_verbose(txid)
            except RpcInvalidAddressOrKey:
                return None  # not seen yet
            confirmations = info.get("confirmations", 0)
            block_hash = info.get("blockhash")
            if isinstance(confirmations, int) and confirmations >= depth:
                return str(block_hash)
            return None

        return wait_for(deep_enough, timeout=timeout, what=f"{txid} at depth {depth}")

    def wait_for_mempool(self, txid: str, *, timeout: float = 30.0) -> None:
        wait_for(lambda: self.in_mempool(txid), timeout=timeout, what=f"{txid} in the mempool")

    def wait_for_height(self, height: int, *, timeout: float = 30.0) -> None:
        wait_for(lambda: self.height() >= height, timeout=timeout, what=f"block height {height}")


class Wallet(Chain):
    """One descriptor wallet of the node, plus the node-level helpers of ``Chain``."""

    def __init__(self, rpc: Rpc, name: str) -> None:
        super().__init__(rpc)
        self.name = name
        self.wallet_rpc = rpc.wallet(name)

    @classmethod
    def open(cls, rpc: Rpc, name: str) -> Wallet:
        """Load the wallet ``name``, creating it (descriptor, with keys) if it does not exist."""
        if name not in rpc.listwallets():
            if name in rpc.listwalletdir():
                with contextlib.suppress(RpcWalletAlreadyLoaded):
                    rpc.loadwallet(name)
            else:
                rpc.createwallet(name)
        return cls(rpc, name)

    def new_address(self) -> str:
        """A fresh bech32 (P2WPKH) receive address."""
        return self.wallet_rpc.getnewaddress(address_type="bech32")

    def script_pubkey_of(self, address: str) -> bytes:
        spk = self.wallet_rpc.getaddressinfo(address)["scriptPubKey"]
        return bytes.fromhex(str(spk))

    def mine(self, n: int, to_address: str | None = None) -> list[str]:
        """Mine ``n`` blocks, paying this wallet unless ``to_address`` is given; return hashes."""
        return self.mine_to(n, to_address if to_address is not None else self.new_address())

    def balances(self) -> WalletBalances:
        return self.wallet_rpc.getbalances()

    def balance_sat(self) -> int:
        """Spendable balance: confirmed, plus our own unconfirmed change."""
        return self.wallet_rpc.getbalances().trusted_sat

    def send_to_address(
        self, address: str, amount_sat: int, *, fee_rate_sat_per_vb: int | None = None
    ) -> str:
        """Pay ``amount_sat`` to ``address``; returns the txid (unconfirmed)."""
        return self.wallet_rpc.sendtoaddress(
            address, amount_sat, fee_rate_sat_per_vb=fee_rate_sat_per_vb
        )

    def fund_script(
        self, script_pubkey: bytes, amount_sat: int, *, fee_rate_sat_per_vb: int | None = None
    ) -> OutPoint:
        """Pay exactly ``amount_sat`` to ``script_pubkey`` and broadcast; return that output.

        The transaction has our output plus the wallet's inputs and change (fee paid on top).
        It is in the mempool, unconfirmed: mine or ``confirm`` it.
        """
        if amount_sat <= 0:
            raise ValueError(f"amount_sat must be positive, got {amount_sat}")
        template = CMutableTransaction([], [CMutableTxOut(amount_sat, CScript(script_pubkey))])
        template.nVersion = 2
        funded = self.wallet_rpc.fundrawtransaction(
            template.serialize(), fee_rate_sat_per_vb=fee_rate_sat_per_vb
        )
        signed = self.wallet_rpc.signrawtransactionwithwallet(funded.raw)
        if not signed.complete:
            raise RegtestError(f"wallet {self.name} could not sign all inputs of its funding tx")
        # fundrawtransaction keeps our outputs in order and inserts change at change_position.
        vout = 1 if funded.change_position == 0 else 0
        tx = CTransaction.deserialize(signed.raw)
        out = tx.vout[vout]
        if out.nValue != amount_sat or bytes(out.scriptPubKey) != script_pubkey:
            raise RegtestError(f"funded tx has no output of {amount_sat} sat at index {vout}")
        txid = self.send_raw_transaction(signed.raw)
        return OutPoint.from_txid_hex(txid, vout)

    def confirm(self, txid: str, depth: int = 1) -> str:
        """Mine until ``txid`` (mempool or mined) is ``depth`` deep; return its block hash."""
        missing = depth - self.confirmations(txid)
        if missing > 0:
            self.mine(missing)
        return self.wait_for_confirmation(txid, depth=depth, timeout=10.0)


def fund_new_wallet(miner: Wallet, name: str, amount_sat: int) -> Wallet:
    """Create wallet ``name`` holding ``amount_sat`` in one confirmed output, paid by ``miner``."""
    wallet = Wallet.open(miner.rpc, name)
    if amount_sat > 0:
        txid = miner.send_to_address(wallet.new_address(), amount_sat)
        miner.confirm(txid)
    return wallet


def ensure_mature_coins(miner: Wallet, *, min_balance_sat: int = 50 * 100_000_000) -> None:
    """Mine to ``miner`` until it can spend at least ``min_balance_sat`` (coinbase maturity)."""
    if miner.balance_sat() >= min_balance_sat:
        return
    miner.mine(COINBASE_MATURITY + 1)
    while miner.balance_sat() < min_balance_sat:
        miner.mine(1)
