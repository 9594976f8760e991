"""The bitcoind calls chanlab makes, each written once as a :class:`Request`.

Pure (no I/O): a method of :class:`RpcMethods` only says which RPC to call with which parameters
and how to read the answer (a typed result where chanlab reads fields, else the JSON checked for
its shape). :mod:`regtest.rpc`'s two clients inherit these methods and send the requests through
their one call path; the :class:`_Method` descriptor makes each method awaitable on the async
client and blocking on the other.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, Generic, ParamSpec, Protocol, TypeVar, overload

from regtest.errors import RegtestError
from regtest.rpc_types import (
    ChainInfo,
    FundedPsbt,
    FundedTx,
    MempoolAcceptResult,
    ProcessedPsbt,
    SignedTx,
    TxOut,
    Utxo,
    WalletBalances,
    btc_to_sat,
    sat_per_vb_to_btc_per_kvb,
    sat_to_btc,
)

__all__ = ["JSON", "AsyncRunner", "BlockingRunner", "Request", "RpcMethods"]

JSON = None | bool | int | float | str | list["JSON"] | dict[str, "JSON"]

_T = TypeVar("_T")
_P = ParamSpec("_P")


# --- reading answers -----------------------------------------------------------------------------


def _shape(kind: type, name: str) -> Callable[[JSON], Any]:
    def check(value: JSON) -> Any:
        if (isinstance(value, bool) and kind is int) or not isinstance(value, kind):
            raise RegtestError(f"expected a JSON {name} from bitcoind, got {type(value).__name__}")
        return value
    return check


_d: Callable[[JSON], dict[str, JSON]] = _shape(dict, "object")
_l: Callable[[JSON], list[JSON]] = _shape(list, "array")
_s: Callable[[JSON], str] = _shape(str, "string")
_i: Callable[[JSON], int] = _shape(int, "integer")


def _none(_: JSON) -> None:
    return None


def _bytes(value: JSON) -> bytes:
    return bytes.fromhex(_s(value))


def _strings(value: JSON) -> list[str]:
    return [_s(v) for v in _l(value)]


def _sat(value: JSON) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise RegtestError(f"expected a BTC amount from bitcoind, got {value!r}")
    return btc_to_sat(value)


def _change_position(value: JSON) -> int | None:
    position = _i(value)
    return None if position < 0 else position


def _opt(value: JSON, read: Callable[[JSON], _T]) -> _T | None:
    return None if value is None else read(value)


def _hex(raw: bytes | str) -> str:
    return raw if isinstance(raw, str) else raw.hex()


def _mempool_accept(value: JSON) -> list[MempoolAcceptResult]:
    out = []
    for item in _l(value):
        entry = _d(item)
        fees = entry.get("fees")
        out.append(MempoolAcceptResult(
            txid=_s(entry["txid"]), allowed=bool(entry["allowed"]),
            reject_reason=_opt(entry.get("reject-reason"), _s),
            vsize=_opt(entry.get("vsize"), _i),
            fee_sat=_sat(_d(fees)["base"]) if isinstance(fees, dict) else None))
    return out


def _txout(value: JSON) -> TxOut | None:
    if value is None:
        return None
    entry = _d(value)
    return TxOut(value_sat=_sat(entry["value"]),
                 script_pubkey=_bytes(_d(entry["scriptPubKey"])["hex"]),
                 confirmations=_i(entry["confirmations"]), coinbase=bool(entry["coinbase"]))


def _utxos(value: JSON) -> list[Utxo]:
    return [Utxo(txid=_s(e["txid"]), vout=_i(e["vout"]), amount_sat=_sat(e["amount"]),
                 script_pubkey=_bytes(e["scriptPubKey"]), confirmations=_i(e["confirmations"]),
                 address=_opt(e.get("address"), _s))
            for e in map(_d, _l(value))]


def _chain_info(value: JSON) -> ChainInfo:
    info = _d(value)
    return ChainInfo(chain=_s(info["chain"]), blocks=_i(info["blocks"]),
                     headers=_i(info["headers"]), best_block_hash=_s(info["bestblockhash"]),
                     initial_block_download=bool(info["initialblockdownload"]))


def _balances(value: JSON) -> WalletBalances:
    mine = _d(_d(value)["mine"])
    return WalletBalances(trusted_sat=_sat(mine["trusted"]),
                          untrusted_pending_sat=_sat(mine["untrusted_pending"]),
                          immature_sat=_sat(mine["immature"]))


def _funded_tx(value: JSON) -> FundedTx:
    r = _d(value)
    return FundedTx(raw=_bytes(r["hex"]), fee_sat=_sat(r["fee"]),
                    change_position=_change_position(r["changepos"]))


def _funded_psbt(value: JSON) -> FundedPsbt:
    r = _d(value)
    return FundedPsbt(psbt=_s(r["psbt"]), fee_sat=_sat(r["fee"]),
                      change_position=_change_position(r["changepos"]))


def _processed_psbt(value: JSON) -> ProcessedPsbt:
    r = _d(value)
    return ProcessedPsbt(psbt=_opt(r.get("psbt"), _s), complete=bool(r["complete"]),
                         raw=_opt(r.get("hex"), _bytes))


# --- the one call path ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request(Generic[_T]):
    """One RPC call: its name, its parameters and how to read its answer."""

    method: str
    params: tuple[JSON, ...]
    read: Callable[[JSON], _T]


class AsyncRunner(Protocol):
    """A client that sends a request and gives a coroutine of its result (``AsyncRpc``)."""

    def run(self, request: Request[_T]) -> Coroutine[Any, Any, _T]: ...


class BlockingRunner(Protocol):
    """A client that sends a request and waits for its result (``Rpc``)."""

    def run(self, request: Request[_T]) -> _T: ...


class _Method(Generic[_P, _T]):
    """Binds a request builder of :class:`RpcMethods` to a client: on an async client the method
    returns a coroutine of the result, on a blocking one the result itself (both via ``run``)."""

    def __init__(self, build: Callable[Concatenate[Any, _P], Request[_T]]) -> None:
        self._build = build
        self.__doc__ = build.__doc__

    @overload
    def __get__(self, obj: None, owner: type) -> _Method[_P, _T]: ...

    @overload
    def __get__(self, obj: AsyncRunner, owner: type) -> Callable[_P, Coroutine[Any, Any, _T]]: ...

    @overload
    def __get__(self, obj: BlockingRunner, owner: type) -> Callable[_P, _T]: ...

    def __get__(self, obj: AsyncRunner | BlockingRunner | None, owner: type) -> Any:
        if obj is None:
            return self
        build, client = self._build, obj

        def bound(*args: _P.args, **kwargs: _P.kwargs) -> Any:
            return client.run(build(client, *args, **kwargs))
        return bound


class RpcMethods:
    """The bitcoind calls chanlab makes (wallet calls on a wallet-scoped client, except
    create/load/list)."""

    # chain

    @_Method
    def getblockchaininfo(self) -> Request[ChainInfo]:
        return Request("getblockchaininfo", (), _chain_info)

    @_Method
    def getnetworkinfo(self) -> Request[dict[str, JSON]]:
        return Request("getnetworkinfo", (), _d)

    @_Method
    def getblockcount(self) -> Request[int]:
        return Request("getblockcount", (), _i)

    @_Method
    def getbestblockhash(self) -> Request[str]:
        return Request("getbestblockhash", (), _s)

    @_Method
    def getblockhash(self, height: int) -> Request[str]:
        return Request("getblockhash", (height,), _s)

    @_Method
    def getblock(self, block_hash: str) -> Request[bytes]:
        """The serialized block."""
        return Request("getblock", (block_hash, 0), _bytes)

    @_Method
    def getblock_verbose(self, block_hash: str) -> Request[dict[str, JSON]]:
        """The block as JSON, transactions as txids (verbosity 1)."""
        return Request("getblock", (block_hash, 1), _d)

    @_Method
    def getblockheader(self, block_hash: str) -> Request[dict[str, JSON]]:
        return Request("getblockheader", (block_hash, True), _d)

    @_Method
    def getrawtransaction(self, txid: str, block_hash: str | None = None) -> Request[bytes]:
        """The serialized transaction (any confirmed one: the node runs ``-txindex``)."""
        params: tuple[JSON, ...] = (txid, False) if block_hash is None else \
            (txid, False, block_hash)
        return Request("getrawtransaction", params, _bytes)

    @_Method
    def getrawtransaction_verbose(self, txid: str) -> Request[dict[str, JSON]]:
        """The transaction as JSON, with ``confirmations`` and ``blockhash`` once mined."""
        return Request("getrawtransaction", (txid, True), _d)

    @_Method
    def decoderawtransaction(self, raw: bytes) -> Request[dict[str, JSON]]:
        return Request("decoderawtransaction", (raw.hex(),), _d)

    @_Method
    def sendrawtransaction(self, raw: bytes, *,
                           max_feerate_sat_per_vb: int | None = None) -> Request[str]:
        """Broadcast; returns the txid. ``max_feerate_sat_per_vb=0`` lifts bitcoind's fee cap."""
        if max_feerate_sat_per_vb is None:
            return Request("sendrawtransaction", (raw.hex(),), _s)
        cap = sat_per_vb_to_btc_per_kvb(max_feerate_sat_per_vb)
        return Request("sendrawtransaction", (raw.hex(), cap), _s)

    @_Method
    def testmempoolaccept(self, raws: Sequence[bytes]) -> Request[list[MempoolAcceptResult]]:
        return Request("testmempoolaccept", ([raw.hex() for raw in raws],), _mempool_accept)

    @_Method
    def getrawmempool(self) -> Request[list[str]]:
        return Request("getrawmempool", (), _strings)

    @_Method
    def getmempoolentry(self, txid: str) -> Request[dict[str, JSON]]:
        return Request("getmempoolentry", (txid,), _d)

    @_Method
    def gettxout(self, txid: str, vout: int, *,
                 include_mempool: bool = True) -> Request[TxOut | None]:
        """The output if it is unspent (None if spent or unknown)."""
        return Request("gettxout", (txid, vout, include_mempool), _txout)

    @_Method
    def generatetoaddress(self, nblocks: int, address: str) -> Request[list[str]]:
        return Request("generatetoaddress", (nblocks, address), _strings)

    @_Method
    def generateblock(self, address: str, transactions: Sequence[bytes | str]) -> Request[str]:
        """Mine one block with exactly these transactions (raw bytes, or txids from the mempool)."""
        return Request("generateblock", (address, [_hex(tx) for tx in transactions]),
                       lambda r: _s(_d(r)["hash"]))

    @_Method
    def invalidateblock(self, block_hash: str) -> Request[None]:
        return Request("invalidateblock", (block_hash,), _none)

    @_Method
    def reconsiderblock(self, block_hash: str) -> Request[None]:
        return Request("reconsiderblock", (block_hash,), _none)

    @_Method
    def getzmqnotifications(self) -> Request[list[dict[str, JSON]]]:
        return Request("getzmqnotifications", (), lambda r: [_d(e) for e in _l(r)])

    @_Method
    def uptime(self) -> Request[int]:
        return Request("uptime", (), _i)

    @_Method
    def stop(self) -> Request[None]:
        return Request("stop", (), _none)

    # wallets

    @_Method
    def createwallet(self, name: str, *, disable_private_keys: bool = False,
                     blank: bool = False) -> Request[None]:
        """Create a descriptor wallet, load it, and have bitcoind load it again after restarts."""
        return Request("createwallet", (name, disable_private_keys, blank, "", False, True, True),
                       _none)

    @_Method
    def loadwallet(self, name: str) -> Request[None]:
        """Load a wallet, and have bitcoind load it again after restarts."""
        return Request("loadwallet", (name, True), _none)

    @_Method
    def unloadwallet(self, name: str) -> Request[None]:
        return Request("unloadwallet", (name,), _none)

    @_Method
    def listwallets(self) -> Request[list[str]]:
        return Request("listwallets", (), _strings)

    @_Method
    def listwalletdir(self) -> Request[list[str]]:
        return Request("listwalletdir", (),
                       lambda r: [_s(_d(e)["name"]) for e in _l(_d(r)["wallets"])])

    @_Method
    def getnewaddress(self, *, label: str = "", address_type: str | None = None) -> Request[str]:
        params: tuple[JSON, ...] = (label,) if address_type is None else (label, address_type)
        return Request("getnewaddress", params, _s)

    @_Method
    def getaddressinfo(self, address: str) -> Request[dict[str, JSON]]:
        return Request("getaddressinfo", (address,), _d)

    @_Method
    def getbalances(self) -> Request[WalletBalances]:
        return Request("getbalances", (), _balances)

    @_Method
    def sendtoaddress(self, address: str, amount_sat: int, *,
                      fee_rate_sat_per_vb: int | None = None) -> Request[str]:
        params: tuple[JSON, ...] = (address, sat_to_btc(amount_sat))
        if fee_rate_sat_per_vb is not None:
            # comment, comment_to, subtractfeefromamount, replaceable, conf_target, estimate_mode
            params += ("", "", False, True, None, "unset", False, fee_rate_sat_per_vb)
        return Request("sendtoaddress", params, _s)

    @_Method
    def fundrawtransaction(self, raw: bytes, *, fee_rate_sat_per_vb: int | None = None,
                           change_position: int | None = None,
                           lock_unspents: bool = False) -> Request[FundedTx]:
        options: dict[str, JSON] = {"lockUnspents": lock_unspents}
        if fee_rate_sat_per_vb is not None:
            options["fee_rate"] = fee_rate_sat_per_vb
        if change_position is not None:
            options["changePosition"] = change_position
        # iswitness=False: a tx with no inputs yet is ambiguous with the segwit marker byte.
        return Request("fundrawtransaction", (raw.hex(), options, False), _funded_tx)

    @_Method
    def signrawtransactionwithwallet(self, raw: bytes) -> Request[SignedTx]:
        return Request("signrawtransactionwithwallet", (raw.hex(),),
                       lambda r: SignedTx(raw=_bytes(_d(r)["hex"]),
                                          complete=bool(_d(r)["complete"])))

    @_Method
    def gettransaction(self, txid: str) -> Request[dict[str, JSON]]:
        return Request("gettransaction", (txid,), _d)

    @_Method
    def listunspent(self, *, minconf: int = 1) -> Request[list[Utxo]]:
        return Request("listunspent", (minconf,), _utxos)

    @_Method
    def lockunspent(self, unlock: bool, outpoints: Sequence[tuple[str, int]]) -> Request[bool]:
        entries: list[JSON] = [{"txid": txid, "vout": vout} for txid, vout in outpoints]
        return Request("lockunspent", (unlock, entries), bool)

    @_Method
    def walletcreatefundedpsbt(self, outputs: Mapping[str, int], *,
                               fee_rate_sat_per_vb: int | None = None,
                               lock_unspents: bool = True) -> Request[FundedPsbt]:
        """Fund a PSBT paying ``outputs`` (address -> amount_sat), in that order, plus change."""
        options: dict[str, JSON] = {"lockUnspents": lock_unspents}
        if fee_rate_sat_per_vb is not None:
            options["fee_rate"] = fee_rate_sat_per_vb
        outs: list[JSON] = [{address: sat_to_btc(amount)} for address, amount in outputs.items()]
        return Request("walletcreatefundedpsbt", ([], outs, 0, options), _funded_psbt)

    @_Method
    def walletprocesspsbt(self, psbt: str, *, sign: bool = True) -> Request[ProcessedPsbt]:
        return Request("walletprocesspsbt", (psbt, sign), _processed_psbt)

    @_Method
    def finalizepsbt(self, psbt: str) -> Request[ProcessedPsbt]:
        return Request("finalizepsbt", (psbt, True), _processed_psbt)


