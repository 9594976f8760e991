"""What a node needs from the chain and its wallet, as an interface (LDK's injected I/O).

Pure: this module only declares the ``ChainBackend`` protocol. ``regtest.chain`` implements it
on bitcoind; tests may implement it too. Keeping it here lets ``channel`` stay free of
``regtest`` imports while the node daemon still funds, broadcasts and watches.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from channel.errors import UnsafeOperation

__all__ = ["BackendHealth", "BlockEvent", "ChainBackend", "FundingTransaction", "TxEvent",
           "require_regtest"]


def require_regtest(chain: str, action: str) -> None:
    """Refuse ``action`` unless ``chain`` (as bitcoind names it) is regtest.

    Developer powers (keeping revoked commitments, broadcasting one) would cost real money on
    any other chain, so they check the chain bitcoind itself reports, not a setting.
    """
    if chain != "regtest":
        raise UnsafeOperation(f"{action} refuses to run on {chain!r}: it is only allowed on "
                              "regtest, where coins are worthless")


@dataclass(frozen=True, slots=True, kw_only=True)
class FundingTransaction:
    """A signed, not yet broadcast, funding transaction and the index of the channel output."""

    raw_tx: bytes
    txid: bytes  # internal byte order
    vout: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockEvent:
    """A block connected at ``height`` with its raw transactions."""

    height: int
    block_hash: str
    transactions: tuple[bytes, ...]
    header_time: int | None = None   # the header's nTime (None: the backend does not say)


@dataclass(frozen=True, slots=True, kw_only=True)
class TxEvent:
    """A transaction that entered the mempool."""

    raw_tx: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class BackendHealth:
    """A poll of the backend failed (``error``), or succeeded again after failing: the
    node's chain view (:mod:`channel.chain_view`) goes stale or fresh on it."""

    reachable: bool
    error: str = ""


class ChainBackend(Protocol):
    """A bitcoind (or equivalent) seen by one node: its chain, mempool and wallet.

    Every method raises ``channel.errors.ChainError`` (or a subclass) when the backend refuses
    or fails a request; nothing else is expected to escape.
    """

    @property
    def chain(self) -> str:
        """``"regtest"``, ``"signet"``, ``"main"`` ... as bitcoind names it."""
        ...

    async def height(self) -> int: ...

    async def block_at(self, height: int) -> BlockEvent: ...

    async def mempool_transactions(self) -> list[bytes]: ...

    def events(self, from_height: int | None = None,
               ) -> AsyncIterator[BlockEvent | TxEvent | BackendHealth]:
        """New blocks (in order, none skipped) and new mempool transactions, as they come;
        a :class:`BackendHealth` at each failed poll and at the first good one after.

        Blocks start after ``from_height`` (the last one the caller processed), so none mined
        between the caller's catch-up and this call is missed; None: after the current tip."""
        ...

    async def broadcast(self, raw_tx: bytes) -> str:
        """Send ``raw_tx``; returns its txid (display order). Raises on rejection."""
        ...

    async def confirmations(self, txid_hex: str) -> int:
        """Confirmations of a transaction (0: in mempool or unknown)."""
        ...

    async def fund_output(self, script_pubkey: bytes, amount_sat: int,
                          feerate_sat_per_vb: int) -> FundingTransaction:
        """Build and sign (not broadcast) a wallet tx paying exactly ``amount_sat`` there."""
        ...

    async def add_fee_inputs(self, raw_tx: bytes, *, external_input_weight: int,
                             feerate_sat_per_vb: int) -> bytes:
        """Pay ``raw_tx``'s fee from the wallet: add wallet inputs (and a change output) after
        its input 0 and output 0, sign those, and return the tx with input 0 left unsigned.

        ``raw_tx`` has one input, not the wallet's (an anchors HTLC output), whose final
        weight, non-witness bytes included, is ``external_input_weight``. Its input 0, output
        0, nLockTime and nVersion come back unchanged, so a SIGHASH_SINGLE|ANYONECANPAY
        signature over them stays valid."""
        ...

    async def release_inputs(self, raw_tx: bytes) -> None:
        """Unlock the wallet inputs of a funding tx that will never be broadcast."""
        ...

    async def new_script_pubkey(self) -> bytes:
        """A fresh P2WPKH scriptPubKey of the node's wallet (closing and sweep destination)."""
        ...

    async def wallet_balance_sat(self) -> int: ...

    async def aclose(self) -> None: ...
