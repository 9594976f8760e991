"""Chain and wallet helpers against a real bitcoind: exact amounts, outpoints, waits."""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import pytest
from bitcoin.core import CMutableTransaction, CMutableTxOut, CTransaction, b2lx
from bitcoin.core.script import CScript

from channel.scripts import p2wsh
from regtest.errors import WaitTimeout
from regtest.node import LocalBitcoind
from regtest.rpc import RpcVerifyRejected, btc_to_sat
from regtest.wallet import Wallet

WalletFactory = Callable[..., Wallet]
TRUE_SCRIPT = bytes([0x51])  # OP_TRUE: anyone can spend, fine for a test output


def unsigned_paying(script_pubkey: bytes, amount_sat: int) -> bytes:
    """A transaction with one output and no inputs yet, for fundrawtransaction."""
    tx = CMutableTransaction([], [CMutableTxOut(amount_sat, CScript(script_pubkey))])
    tx.nVersion = 2
    return bytes(tx.serialize())


def test_fund_script_pays_exact_amount_to_the_script(miner: Wallet) -> None:
    """fund_script puts exactly amount_sat on the given scriptPubKey, at the returned outpoint."""
    script_pubkey = p2wsh(TRUE_SCRIPT + b"\x75" + TRUE_SCRIPT)  # distinct script per test
    outpoint = miner.fund_script(script_pubkey, 123_457)
    assert miner.in_mempool(outpoint.txid_hex)
    block_hash = miner.confirm(outpoint.txid_hex)

    tx = CTransaction.deserialize(miner.get_transaction(outpoint.txid_hex))
    assert b2lx(tx.GetTxid()) == outpoint.txid_hex
    assert tx.vout[outpoint.vout].nValue == 123_457
    assert bytes(tx.vout[outpoint.vout].scriptPubKey) == script_pubkey
    assert outpoint.txid_hex in miner.get_block_txids(block_hash)

    utxo = miner.get_tx_out(outpoint)
    assert utxo is not None
    assert (utxo.value_sat, utxo.script_pubkey, utxo.confirmations) == (123_457, script_pubkey, 1)


def test_wallet_balances_are_exact_satoshis(wallet_factory: WalletFactory) -> None:
    """A wallet funded with 1,234,567 sat holds that; sending moves amount + fee exactly."""
    alice = wallet_factory(amount_sat=1_234_567)
    bob = wallet_factory(amount_sat=0)
    assert alice.balance_sat() == 1_234_567
    assert bob.balance_sat() == 0

    txid = alice.send_to_address(bob.new_address(), 200_001)
    alice.confirm(txid)
    fee = alice.wallet_rpc.gettransaction(txid)["fee"]
    assert isinstance(fee, float)
    fee_sat = -btc_to_sat(fee)
    assert fee_sat > 0
    assert bob.balance_sat() == 200_001
    assert alice.balance_sat() == 1_234_567 - 200_001 - fee_sat


def test_mine_returns_hashes_in_order(miner: Wallet) -> None:
    """mine(n) extends the chain by n and returns the new blocks' hashes, oldest first."""
    start = miner.height()
    hashes = miner.mine(3)
    assert miner.height() == start + 3
    assert hashes == [miner.rpc.getblockhash(start + i) for i in (1, 2, 3)]
    assert miner.mine(0) == []
    block = miner.get_block(hashes[-1])
    assert hashlib.sha256(hashlib.sha256(block[:80]).digest()).digest()[::-1].hex() == hashes[-1]


def test_mempool_accept_reports_rejections(miner: Wallet) -> None:
    """test_mempool_accept says allowed for a valid tx, and gives the reason for a double spend."""
    outpoint = miner.fund_script(p2wsh(TRUE_SCRIPT), 50_000)
    raw = miner.get_transaction(outpoint.txid_hex)
    # Already in the mempool: resubmitting is rejected with a reason, not an exception.
    result = miner.test_mempool_accept(raw)
    assert result.txid == outpoint.txid_hex
    assert result.allowed is False
    assert result.reject_reason == "txn-already-in-mempool"

    miner.confirm(outpoint.txid_hex)
    fresh = miner.wallet_rpc.fundrawtransaction(unsigned_paying(p2wsh(TRUE_SCRIPT), 20_000))
    signed = miner.wallet_rpc.signrawtransactionwithwallet(fresh.raw)
    ok = miner.test_mempool_accept(signed.raw)
    assert ok.allowed is True and ok.reject_reason is None
    assert ok.fee_sat == fresh.fee_sat
    assert ok.vsize is not None and ok.vsize > 0


def test_send_raw_transaction_refusal_is_typed(miner: Wallet) -> None:
    """Broadcasting a tx locked to a future height is refused: RpcVerifyRejected (-26), reason."""
    template = CMutableTransaction([], [CMutableTxOut(20_000, CScript(p2wsh(TRUE_SCRIPT)))])
    template.nVersion = 2
    template.nLockTime = miner.height() + 100
    funded = miner.wallet_rpc.fundrawtransaction(template.serialize())
    signed = miner.wallet_rpc.signrawtransactionwithwallet(funded.raw)
    assert miner.test_mempool_accept(signed.raw).reject_reason == "non-final"
    with pytest.raises(RpcVerifyRejected, match="non-final") as caught:
        miner.send_raw_transaction(signed.raw)
    assert caught.value.code == -26


def test_wait_for_confirmation_times_out_with_a_message(miner: Wallet) -> None:
    """Waiting for a tx nobody mines ends in WaitTimeout (a TimeoutError) naming the txid."""
    txid = miner.send_to_address(miner.new_address(), 10_000)
    with pytest.raises(WaitTimeout, match=f"{txid} at depth 1") as caught:
        miner.wait_for_confirmation(txid, timeout=0.3)
    assert isinstance(caught.value, TimeoutError)
    assert miner.confirmations(txid) == 0
    miner.confirm(txid, depth=2)
    assert miner.confirmations(txid) == 2


def test_open_existing_wallet_after_unload(fresh_bitcoind: LocalBitcoind) -> None:
    """Wallet.open loads a wallet that exists on disk but is not loaded, keeping its coins."""
    miner = Wallet(fresh_bitcoind.rpc, "miner")
    balance = miner.balance_sat()
    fresh_bitcoind.rpc.unloadwallet("miner")
    assert fresh_bitcoind.rpc.listwallets() == []
    again = Wallet.open(fresh_bitcoind.rpc, "miner")
    assert again.balance_sat() == balance
    Wallet.open(fresh_bitcoind.rpc, "miner")  # already loaded: still fine
