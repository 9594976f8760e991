"""Small value types shared by the BOLT 3 layer and the channel state machine.

Pure. Sides, commitment formats, outpoints and the HTLC as a commitment transaction sees it.
Naming follows LDK: ``Side`` is the node's view (HOLDER = us, COUNTERPARTY = the peer); for one
given commitment transaction the parties are its *broadcaster* (who holds and may publish it,
BOLT 3's "local") and its *countersignatory* (BOLT 3's "remote").
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = [
    "CommitmentFormat",
    "CommitmentHtlc",
    "HtlcDirection",
    "OutPoint",
    "Side",
]


class Side(enum.Enum):
    """Which node of the channel: us (HOLDER) or the peer (COUNTERPARTY)."""

    HOLDER = "holder"
    COUNTERPARTY = "counterparty"

    # Sides key the update log's per-HTLC dicts, looked up in the hot loop of every add:
    # members are singletons, so identity hashing is correct and runs in C (Enum's own
    # __hash__ hashes the name in Python).
    __hash__ = object.__hash__

    @property
    def other(self) -> Side:
        """The opposite side."""
        return Side.COUNTERPARTY if self is Side.HOLDER else Side.HOLDER


class CommitmentFormat(enum.Enum):
    """The channel type's effect on BOLT 3 transactions.

    STATIC_REMOTEKEY: ``option_static_remotekey`` (to_remote is P2WPKH of the peer's untweaked
    ``payment_basepoint``; HTLC transactions pay their own fee, SIGHASH_ALL).
    ANCHORS: ``option_anchors`` (zero-fee HTLC transactions, feature 22/23): two 330-sat anchor
    outputs, to_remote is a P2WSH with a 1-block CSV, HTLC scripts carry ``1 OP_CSV OP_DROP``,
    HTLC transactions pay no fee and the countersignatory signs them
    SIGHASH_SINGLE|SIGHASH_ANYONECANPAY.
    """

    STATIC_REMOTEKEY = "static_remotekey"
    ANCHORS = "anchors"


@dataclass(frozen=True, slots=True, kw_only=True)
class OutPoint:
    """A transaction output: ``txid`` in internal byte order (as serialized in a tx input).

    ``txid_hex`` gives the display order used by ``bitcoin-cli`` (byte-reversed).
    """

    txid: bytes
    vout: int

    def __post_init__(self) -> None:
        if not isinstance(self.txid, bytes) or len(self.txid) != 32:
            raise ValueError("OutPoint: txid must be 32 bytes (internal byte order)")
        if not 0 <= self.vout <= 0xFFFFFFFF:
            raise ValueError(f"OutPoint: vout out of range: {self.vout}")

    @property
    def txid_hex(self) -> str:
        """The txid as bitcoind displays it (reversed byte order)."""
        return self.txid[::-1].hex()

    @classmethod
    def from_txid_hex(cls, txid_hex: str, vout: int) -> OutPoint:
        """Build from a bitcoind-style (display order) txid hex string."""
        return cls(txid=bytes.fromhex(txid_hex)[::-1], vout=vout)

    def __str__(self) -> str:
        return f"{self.txid_hex}:{self.vout}"


class HtlcDirection(enum.Enum):
    """An HTLC's direction relative to the *broadcaster* of the commitment it sits in.

    OFFERED: the broadcaster offered it (pays out to the peer with the preimage; the broadcaster
    reclaims it through an HTLC-timeout transaction).
    RECEIVED: the broadcaster received it (claimed by the broadcaster through an HTLC-success
    transaction with the preimage; the peer reclaims it after ``cltv_expiry``).
    """

    OFFERED = "offered"
    RECEIVED = "received"


@dataclass(frozen=True, slots=True, kw_only=True)
class CommitmentHtlc:
    """One HTLC as placed on a commitment transaction (BOLT 3 "Offered/Received HTLC Outputs").

    ``direction`` is relative to that commitment's broadcaster, so the same HTLC is OFFERED in
    one party's commitment and RECEIVED in the other's. ``htlc_id`` is the BOLT 2 id given by
    the offerer; it only labels the HTLC (it is not part of any script).
    """

    direction: HtlcDirection
    amount_msat: int
    payment_hash: bytes
    cltv_expiry: int
    htlc_id: int

    def __post_init__(self) -> None:
        if not isinstance(self.direction, HtlcDirection):
            raise TypeError("CommitmentHtlc: direction must be an HtlcDirection")
        if self.amount_msat <= 0:
            raise ValueError(f"CommitmentHtlc: amount_msat must be positive: {self.amount_msat}")
        if not isinstance(self.payment_hash, bytes) or len(self.payment_hash) != 32:
            raise ValueError("CommitmentHtlc: payment_hash must be 32 bytes")
        if not 0 <= self.cltv_expiry < 500_000_000:
            raise ValueError(
                f"CommitmentHtlc: cltv_expiry must be a block height: {self.cltv_expiry}")
        if self.htlc_id < 0:
            raise ValueError(f"CommitmentHtlc: htlc_id must be non-negative: {self.htlc_id}")

    @property
    def amount_sat(self) -> int:
        """The on-chain value of this HTLC's output: msat rounded down."""
        return self.amount_msat // 1000
