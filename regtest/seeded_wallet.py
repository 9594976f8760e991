"""I/O: bitcoind wallets whose keys come from a seed, for runs that repeat exactly.

A seeded wallet is a blank descriptor wallet into which two descriptors are imported, receive
and change, ``wpkh(TPRV/84h/1h/0h/0/*)`` and ``.../1/*``, from a BIP 32 master key made from
the seed (:func:`master_tprv`): the same seed gives the same addresses in the same order, so
mining and funding pay the same scripts every run. Regtest only: the seed is the key.
"""

from __future__ import annotations

import hashlib
import hmac

from bitcoin.base58 import encode as base58_encode

from regtest.errors import RegtestError
from regtest.rpc import JSON, AsyncRpc, Rpc
from regtest.rpc_types import btc_to_sat, sat_to_btc
from regtest.wallet import Wallet

__all__ = ["create_seeded_wallet", "create_seeded_wallet_async", "master_tprv",
           "seeded_descriptors", "seeded_send"]

_TPRV_VERSION = bytes.fromhex("04358394")   # BIP 32 testnet/regtest private key


def master_tprv(seed: bytes) -> str:
    """The BIP 32 master extended private key of ``seed``, serialized as ``tprv...``."""
    digest = hmac.new(b"Bitcoin seed", seed, hashlib.sha512).digest()
    key, chain_code = digest[:32], digest[32:]
    data = _TPRV_VERSION + b"\x00" + bytes(4) + bytes(4) + chain_code + b"\x00" + key
    check = hashlib.sha256(hashlib.sha256(data).digest()).digest()[:4]
    return str(base58_encode(data + check))


def seeded_descriptors(seed: bytes) -> list[tuple[str, bool]]:
    """(descriptor without checksum, internal?) for receive and change addresses."""
    tprv = master_tprv(seed)
    return [(f"wpkh({tprv}/84h/1h/0h/{branch}/*)", branch == 1) for branch in (0, 1)]


def _requests(seed: bytes, checksums: list[str]) -> list[dict[str, object]]:
    return [{"desc": f"{desc}#{checksum}", "active": True, "internal": internal,
             "range": [0, 999], "timestamp": 0}
            for (desc, internal), checksum in zip(seeded_descriptors(seed), checksums,
                                                  strict=True)]


def create_seeded_wallet(rpc: Rpc, name: str, seed: bytes) -> None:
    """Create the blank wallet ``name`` and import the seed's descriptors into it."""
    rpc.createwallet(name, blank=True)
    checksums = []
    for desc, _ in seeded_descriptors(seed):
        info = rpc.call("getdescriptorinfo", desc)
        assert isinstance(info, dict)
        checksums.append(str(info["checksum"]))
    rpc.wallet(name).call("importdescriptors", _requests(seed, checksums))  # type: ignore[arg-type]


async def create_seeded_wallet_async(rpc: AsyncRpc, name: str, seed: bytes) -> None:
    """:func:`create_seeded_wallet` for the node's asynchronous RPC client."""
    await rpc.createwallet(name, blank=True)
    checksums = []
    for desc, _ in seeded_descriptors(seed):
        info = await rpc.call("getdescriptorinfo", desc)
        assert isinstance(info, dict)
        checksums.append(str(info["checksum"]))
    await rpc.wallet(name).call("importdescriptors",
                                _requests(seed, checksums))  # type: ignore[arg-type]


def seeded_send(wallet: Wallet, address: str, amount_sat: int,
                fee_rate_sat_per_vb: int = 2) -> str:
    """Pay ``amount_sat`` to ``address`` without bitcoind's random choices: the oldest
    confirmed coin, change at output 1, nLockTime 0 (no anti-fee-sniping height). The txid."""
    listed = wallet.wallet_rpc.call("listunspent", 1)
    coins = [c for c in listed if isinstance(c, dict)] if isinstance(listed, list) else []
    enough = [c for c in coins if btc_to_sat(str(c["amount"])) > amount_sat + 10_000]
    if not enough:
        raise RegtestError(f"{wallet.name} has no confirmed coin above {amount_sat:,} sat")
    oldest = max(enough, key=lambda c: (int(str(c["confirmations"])), str(c["txid"]),
                                        -int(str(c["vout"]))))
    options: dict[str, JSON] = {
        "inputs": [{"txid": oldest["txid"], "vout": oldest["vout"]}], "add_inputs": False,
        "change_position": 1, "locktime": 0}
    sent = wallet.wallet_rpc.call("send", [{address: sat_to_btc(amount_sat)}], None, "unset",
                                  fee_rate_sat_per_vb, options)
    if not isinstance(sent, dict) or not isinstance(sent.get("txid"), str):
        raise RegtestError(f"send from {wallet.name}: unexpected answer {sent!r}")
    return str(sent["txid"])
