"""The RPC clients: typed errors carrying bitcoind's code, exact satoshi amounts, wallet scoping,
the async client, and a clean close."""

from __future__ import annotations

import asyncio
import threading
from decimal import Decimal

import pytest

from regtest.errors import RegtestError, RpcUnreachable
from regtest.node import LocalBitcoind, free_port
from regtest.rpc import (
    AsyncRpc,
    Rpc,
    RpcDeserializationError,
    RpcError,
    RpcInvalidAddressOrKey,
    RpcInvalidParameter,
    RpcMethodNotFound,
    RpcVerifyRejected,
    RpcWalletNotFound,
    btc_to_sat,
    sat_to_btc,
)
from regtest.wallet import Wallet

# --- amounts (pure) ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("btc", "sat"),
    [
        (0.1, 10_000_000),
        (0.29, 29_000_000),  # 0.29 * 1e8 == 28999999.999999996 in floats
        (1.1, 110_000_000),
        (0.00000001, 1),
        (20999999.9769, 2_099_999_997_690_000),
        (50, 5_000_000_000),
        ("0.00150000", 150_000),
        (Decimal("-0.0001"), -10_000),
        (0.0, 0),
    ],
)
def test_btc_to_sat_is_exact(btc: float | int | str | Decimal, sat: int) -> None:
    """Every BTC amount bitcoind prints converts to the exact integer number of satoshis."""
    assert btc_to_sat(btc) == sat


@pytest.mark.parametrize("bad", [0.000000001, "abc", True])
def test_btc_to_sat_refuses_non_amounts(bad: object) -> None:
    """Sub-satoshi values and non-numbers are refused, never rounded silently."""
    with pytest.raises(ValueError):
        btc_to_sat(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("sat", "btc"),
    [(150_000, "0.00150000"), (1, "0.00000001"), (5_000_000_000, "50.00000000"), (0, "0.00000000")],
)
def test_sat_to_btc_formats_eight_decimals(sat: int, btc: str) -> None:
    """Satoshis go to bitcoind as exact 8-decimal strings."""
    assert sat_to_btc(sat) == btc
    assert btc_to_sat(btc) == sat


def test_sat_to_btc_refuses_floats() -> None:
    """A float amount is a bug upstream; it is refused rather than formatted."""
    with pytest.raises(TypeError):
        sat_to_btc(0.5)  # type: ignore[arg-type]


# --- errors ------------------------------------------------------------------------------------


def test_unknown_transaction_is_code_minus_5(bitcoind: LocalBitcoind) -> None:
    """getrawtransaction of an unknown txid raises RpcInvalidAddressOrKey with code -5."""
    with pytest.raises(RpcInvalidAddressOrKey) as caught:
        bitcoind.rpc.getrawtransaction("00" * 32)
    assert caught.value.code == -5
    assert caught.value.method == "getrawtransaction"
    assert "No such mempool or blockchain transaction" in caught.value.message


def test_height_out_of_range_is_code_minus_8(bitcoind: LocalBitcoind) -> None:
    """getblockhash beyond the tip raises RpcInvalidParameter with code -8."""
    with pytest.raises(RpcInvalidParameter) as caught:
        bitcoind.rpc.getblockhash(10_000_000)
    assert caught.value.code == -8
    assert isinstance(caught.value, RpcError)


def test_garbage_transaction_is_code_minus_22(bitcoind: LocalBitcoind) -> None:
    """Bytes that are not a transaction raise RpcDeserializationError (-22)."""
    with pytest.raises(RpcDeserializationError) as caught:
        bitcoind.rpc.sendrawtransaction(b"\x01\x02\x03")
    assert caught.value.code == -22


def test_unknown_method_and_unknown_code(bitcoind: LocalBitcoind) -> None:
    """An unknown method is -32601; the generic call() works for any method."""
    with pytest.raises(RpcMethodNotFound) as caught:
        bitcoind.rpc.call("nosuchmethod")
    assert caught.value.code == -32601
    assert bitcoind.rpc.call("getblockcount") == bitcoind.rpc.getblockcount()


def test_error_code_without_subclass_is_plain_rpc_error() -> None:
    """A code chanlab has no class for still becomes an RpcError with that code."""
    error = RpcError.from_code(-99, "odd")
    assert type(error) is RpcError
    assert (error.code, error.message) == (-99, "odd")
    assert isinstance(RpcError.from_code(-26, "x"), RpcVerifyRejected)


def test_unloaded_wallet_is_code_minus_18(bitcoind: LocalBitcoind) -> None:
    """A call scoped to a wallet that is not loaded raises RpcWalletNotFound (-18)."""
    with pytest.raises(RpcWalletNotFound) as caught:
        bitcoind.rpc.wallet("no-such-wallet").getbalances()
    assert caught.value.code == -18


def test_nothing_listening_is_unreachable() -> None:
    """A port where no bitcoind listens raises RpcUnreachable, not an httpx error."""
    with Rpc(f"http://127.0.0.1:{free_port()}", auth=("u", "p"), timeout_s=5) as client:
        with pytest.raises(RpcUnreachable, match="cannot reach"):
            client.getblockcount()


def test_wrong_password_is_unreachable_with_hint(bitcoind: LocalBitcoind) -> None:
    """Rejected credentials are reported as such."""
    with Rpc(bitcoind.rpc_url, auth=("__cookie__", "wrong")) as client:
        with pytest.raises(RpcUnreachable, match="credentials rejected"):
            client.getblockcount()


# --- clients -----------------------------------------------------------------------------------


def test_wallet_scoped_client_uses_wallet_url(bitcoind: LocalBitcoind, wallet_factory) -> None:  # type: ignore[no-untyped-def]
    """rpc.wallet(name) posts to /wallet/<name> and sees only that wallet's balance."""
    wallet: Wallet = wallet_factory(amount_sat=777_777)
    scoped = bitcoind.rpc.wallet(wallet.name)
    assert scoped.url == f"{bitcoind.rpc_url}/wallet/{wallet.name}"
    assert scoped.getbalances().trusted_sat == 777_777
    assert scoped.wallet("other").url == f"{bitcoind.rpc_url}/wallet/other"


def test_async_client_from_asyncio(bitcoind: LocalBitcoind) -> None:
    """AsyncRpc works from an event loop, concurrently, with the same typed results."""

    async def main() -> tuple[int, list[int]]:
        async with bitcoind.async_rpc() as rpc:
            assert isinstance(rpc, AsyncRpc)
            heights = await asyncio.gather(*(rpc.getblockcount() for _ in range(20)))
            info = await rpc.getblockchaininfo()
            return info.blocks, list(heights)

    blocks, heights = asyncio.run(main())
    assert heights == [blocks] * 20


def test_blocking_client_closes_its_thread(bitcoind: LocalBitcoind) -> None:
    """close() stops the loop thread; a later call is refused, not hung."""
    before = {t.ident for t in threading.enumerate()}
    client = Rpc(bitcoind.rpc_url, auth=bitcoind.cookie_path)
    assert client.getblockcount() >= 101
    client.close()
    client.close()  # idempotent
    assert {t.ident for t in threading.enumerate()} <= before
    with pytest.raises(RegtestError, match="closed"):
        client.getblockcount()
