"""Values of the bitcoind RPC client: satoshi amounts, the error classes by RPC code, and the
typed results of the calls whose answer chanlab reads field by field.

Pure (no I/O): :mod:`regtest.rpc` does the calls and re-exports everything here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from channel.errors import ChainError
from regtest.errors import RegtestError

if TYPE_CHECKING:
    from decimal import Decimal

SAT_PER_BTC = 100_000_000


# --- amounts -------------------------------------------------------------------------------------


def btc_to_sat(amount_btc: float | int | str | Decimal) -> int:
    """Convert a BTC amount as bitcoind returned it (float, str or Decimal) to integer satoshis.

    ``repr`` of a float is the shortest string that reads back to it, which for every amount
    bitcoind prints (at most 8 decimals) is that amount exactly: 0.1 -> "0.1" -> 10_000_000.
    Raises ``ValueError`` for a value that is not a whole number of satoshis.
    """
    # an idle node reads no amount (idle node RSS, see tests/integration/test_idle_footprint.py)
    from decimal import Decimal, InvalidOperation
    if isinstance(amount_btc, bool):
        raise ValueError(f"not a BTC amount: {amount_btc!r}")
    try:
        text = repr(amount_btc) if isinstance(amount_btc, float) else str(amount_btc)
        sats = Decimal(text) * SAT_PER_BTC
    except InvalidOperation as exc:
        raise ValueError(f"not a BTC amount: {amount_btc!r}") from exc
    if sats != sats.to_integral_value():
        raise ValueError(f"{amount_btc!r} BTC is not a whole number of satoshis")
    return int(sats)


def sat_to_btc(amount_sat: int) -> str:
    """Integer satoshis as the decimal BTC string bitcoind accepts: 150_000 -> "0.00150000"."""
    if isinstance(amount_sat, bool) or not isinstance(amount_sat, int):
        raise TypeError(f"amount_sat must be an int, got {type(amount_sat).__name__}")
    sign = "-" if amount_sat < 0 else ""
    whole, frac = divmod(abs(amount_sat), SAT_PER_BTC)
    return f"{sign}{whole}.{frac:08d}"


def sat_per_vb_to_btc_per_kvb(feerate_sat_per_vb: int) -> str:
    """A fee rate in sat/vB as the BTC/kvB string some RPCs (``maxfeerate``) take."""
    return sat_to_btc(feerate_sat_per_vb * 1000)


# --- errors --------------------------------------------------------------------------------------


class RpcError(RegtestError, ChainError):
    """bitcoind answered a call with a JSON-RPC error: its ``code`` and ``message`` are kept."""

    code: int
    message: str
    method: str
    _by_code: ClassVar[dict[int, type[RpcError]]] = {}
    CODE: ClassVar[int | None] = None

    def __init__(self, code: int, message: str, *, method: str = "") -> None:
        where = f"{method}: " if method else ""
        super().__init__(f"{where}{message} (RPC error {code})")
        self.code = code
        self.message = message
        self.method = method

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.CODE is not None:
            RpcError._by_code[cls.CODE] = cls

    @staticmethod
    def from_code(code: int, message: str, *, method: str = "") -> RpcError:
        """The most specific subclass for ``code`` (``RpcError`` itself if none is defined)."""
        cls = RpcError._by_code.get(code, RpcError)
        return cls(code, message, method=method)


class RpcMiscError(RpcError):
    """-1: generic failure (also bitcoind's answer to wrong parameter counts)."""

    CODE = -1


class RpcTypeError(RpcError):
    """-3: a parameter has the wrong JSON type."""

    CODE = -3


class RpcWalletError(RpcError):
    """-4: a wallet operation failed."""

    CODE = -4


class RpcInvalidAddressOrKey(RpcError):
    """-5: no such address, key, transaction or block."""

    CODE = -5


class RpcInsufficientFunds(RpcWalletError):
    """-6: the wallet cannot pay for this."""

    CODE = -6


class RpcInvalidParameter(RpcError):
    """-8: a parameter has a bad value."""

    CODE = -8


class RpcWalletNotFound(RpcError):
    """-18: the wallet is not loaded or does not exist."""

    CODE = -18


class RpcWalletNotSpecified(RpcError):
    """-19: several wallets are loaded and the call did not name one."""

    CODE = -19


class RpcDeserializationError(RpcError):
    """-22: bytes that do not decode as a transaction or block."""

    CODE = -22


class RpcVerifyError(RpcError):
    """-25: the transaction failed verification (e.g. missing or spent inputs)."""

    CODE = -25


class RpcVerifyRejected(RpcError):
    """-26: the mempool rejected the transaction (non-final, bad script, fee...)."""

    CODE = -26


class RpcVerifyAlreadyInChain(RpcError):
    """-27: the transaction is already in a block."""

    CODE = -27


class RpcInWarmup(RpcError):
    """-28: bitcoind is still starting up; try again shortly."""

    CODE = -28


class RpcWalletAlreadyLoaded(RpcError):
    """-35: ``loadwallet`` of a wallet that is already loaded."""

    CODE = -35


class RpcWalletAlreadyExists(RpcError):
    """-36: ``createwallet`` of a name already on disk."""

    CODE = -36


class RpcMethodNotFound(RpcError):
    """-32601: no such RPC method (or it is disabled in this build)."""

    CODE = -32601


# --- results -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class MempoolAcceptResult:
    """One entry of ``testmempoolaccept``: would bitcoind accept the transaction, and if not why."""

    txid: str
    allowed: bool
    reject_reason: str | None
    vsize: int | None = None
    fee_sat: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TxOut:
    """An unspent output as ``gettxout`` reports it."""

    value_sat: int
    script_pubkey: bytes
    confirmations: int
    coinbase: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class FundedTx:
    """``fundrawtransaction``'s result: the tx with inputs and change added, still unsigned."""

    raw: bytes
    fee_sat: int
    change_position: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedTx:
    """``signrawtransactionwithwallet``'s result."""

    raw: bytes
    complete: bool


@dataclass(frozen=True, slots=True, kw_only=True)
class FundedPsbt:
    """``walletcreatefundedpsbt``'s result."""

    psbt: str
    fee_sat: int
    change_position: int | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ProcessedPsbt:
    """``walletprocesspsbt`` / ``finalizepsbt``: the PSBT, and the final tx once complete."""

    psbt: str | None
    complete: bool
    raw: bytes | None


@dataclass(frozen=True, slots=True, kw_only=True)
class WalletBalances:
    """``getbalances()['mine']`` in satoshis."""

    trusted_sat: int
    untrusted_pending_sat: int
    immature_sat: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Utxo:
    """One ``listunspent`` entry."""

    txid: str
    vout: int
    amount_sat: int
    script_pubkey: bytes
    confirmations: int
    address: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainInfo:
    """The parts of ``getblockchaininfo`` chanlab uses."""

    chain: str
    blocks: int
    headers: int
    best_block_hash: str
    initial_block_download: bool
