"""The typed answers of a chanlab node's commands, and the one error a node's refusal becomes.

Pure: each record is a frozen dataclass built from the JSON answer of the node's control API
(``from_answer``), so the parsing of that API lives here and nowhere else in ``chanlab``.
Money keeps the node's units, in the field names (``funding_sat``, ``local_msat``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from channel.errors import ChanlabError

__all__ = [
    "Balance",
    "ChannelRecord",
    "CheatRecord",
    "CloseRecord",
    "ForceCloseRecord",
    "InvoiceRecord",
    "NodeError",
    "NodeInfo",
    "PaymentRecord",
    "start_failure",
]


class NodeError(ChanlabError):
    """A node refused a command, or is not running: ``str(error)`` is one line saying which."""

    def __init__(self, node: str, message: str) -> None:
        first_line = message.strip().splitlines()[0] if message.strip() else "failed"
        super().__init__(f"{node}: {first_line}")
        self.node = node


def start_failure(node: str, exc: BaseException) -> NodeError:
    """A node process that would not start: the first line of the reason and, when the
    reason carries the process's output, its last line (usually the actual error)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    reason = lines[0] if lines else type(exc).__name__
    if len(lines) > 1:
        reason += f" ... {lines[-1]}"
    return NodeError(node, f"did not start: {reason}")


def _str(answer: Mapping[str, Any], key: str) -> str:
    return str(answer[key])


def _opt_str(answer: Mapping[str, Any], key: str) -> str | None:
    value = answer.get(key)
    return None if value in (None, "") else str(value)


def _opt_int(answer: Mapping[str, Any], key: str) -> int | None:
    value = answer.get(key)
    return None if value is None else int(value)


@dataclass(frozen=True)
class NodeInfo:
    """``info``: who the node is, where it listens, which peers are connected."""

    name: str
    node_id: str
    address: str                 # node_id@host:port
    chain: str
    height: int                  # the last block the node has processed
    peers: tuple[str, ...]       # node ids of connected peers
    channel_count: int

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any]) -> NodeInfo:
        return cls(name=_str(answer, "name"), node_id=_str(answer, "node_id"),
                   address=_str(answer, "address"), chain=_str(answer, "chain"),
                   height=int(answer["height"]),
                   peers=tuple(str(p) for p in answer.get("peers", ())),
                   channel_count=int(answer.get("channels", 0)))


@dataclass(frozen=True)
class ChannelRecord:
    """One entry of ``channels``: the channel as this node sees it.

    ``channel`` is the key every channel command takes. Balances and commitment numbers are
    None until the funding is signed (the node has no commitment before that).
    """

    channel: str
    peer_id: str
    state: str                   # channel.state.ChannelState value: "normal", "closed", ...
    channel_id: str
    funding_sat: int
    funding_outpoint: str | None  # txid:vout once the funding transaction exists
    opener: str                  # "holder" (we opened it) or "counterparty"
    commitment_format: str
    to_self_delay: int           # the delay on *our* to_local output
    local_msat: int | None = None
    remote_msat: int | None = None
    htlcs: int | None = None
    holder_commitment_number: int | None = None
    counterparty_commitment_number: int | None = None
    closing_txid: str | None = None

    @property
    def funding_txid(self) -> str | None:
        return None if self.funding_outpoint is None else self.funding_outpoint.split(":")[0]

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any]) -> ChannelRecord:
        return cls(channel=_str(answer, "channel"), peer_id=_str(answer, "peer_id"),
                   state=_str(answer, "state"), channel_id=str(answer.get("channel_id", "")),
                   funding_sat=int(answer["funding_sat"]),
                   funding_outpoint=_opt_str(answer, "funding_outpoint"),
                   opener=_str(answer, "opener"),
                   commitment_format=_str(answer, "commitment_format"),
                   to_self_delay=int(answer["to_self_delay"]),
                   local_msat=_opt_int(answer, "local_msat"),
                   remote_msat=_opt_int(answer, "remote_msat"),
                   htlcs=_opt_int(answer, "htlcs"),
                   holder_commitment_number=_opt_int(answer, "holder_commitment_number"),
                   counterparty_commitment_number=_opt_int(
                       answer, "counterparty_commitment_number"),
                   closing_txid=_opt_str(answer, "closing_txid"))


@dataclass(frozen=True)
class InvoiceRecord:
    """``invoice``: the encoded invoice (``str()`` of the record) and what it asks for."""

    invoice: str
    payment_hash: str
    amount_msat: int
    hold: bool = False

    def __str__(self) -> str:
        return self.invoice

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any]) -> InvoiceRecord:
        return cls(invoice=_str(answer, "invoice"), payment_hash=_str(answer, "payment_hash"),
                   amount_msat=int(answer["amount_msat"]), hold=bool(answer.get("hold", False)))


@dataclass(frozen=True)
class PaymentRecord:
    """``pay``: a succeeded payment, with the preimage that proves it."""

    status: str                  # "succeeded" (a failed payment raises NodeError instead)
    payment_hash: str
    payment_preimage: str | None
    reason: str | None = None
    fee_msat: int = 0            # what the forwarders on the route kept, in total

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any]) -> PaymentRecord:
        return cls(status=_str(answer, "status"), payment_hash=str(answer.get("payment_hash", "")),
                   payment_preimage=_opt_str(answer, "payment_preimage"),
                   reason=_opt_str(answer, "reason"),
                   fee_msat=int(answer.get("fee_msat") or 0))


@dataclass(frozen=True)
class Balance:
    """``balance``: the node's on-chain wallet and its share of its open channels."""

    onchain_sat: int
    offchain_msat: int

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any]) -> Balance:
        return cls(onchain_sat=int(answer["onchain_sat"]),
                   offchain_msat=int(answer["offchain_msat"]))


@dataclass(frozen=True)
class CloseRecord:
    """``close``: the cooperative closing transaction (in the mempool when this returns)."""

    channel: str
    closing_txid: str

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any]) -> CloseRecord:
        return cls(channel=_str(answer, "channel"), closing_txid=_str(answer, "closing_txid"))


@dataclass(frozen=True)
class ForceCloseRecord:
    """``force-close``: our latest commitment, broadcast; our to_local waits ``to_self_delay``."""

    channel: str
    commitment_txid: str
    to_self_delay: int

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any]) -> ForceCloseRecord:
        return cls(channel=_str(answer, "channel"), commitment_txid=_str(answer, "commitment_txid"),
                   to_self_delay=int(answer["to_self_delay"]))


@dataclass(frozen=True)
class CheatRecord:
    """``cheat``: one of our revoked commitments, broadcast (regtest, ``allow_cheating`` only)."""

    channel: str
    state: int
    revoked_commitment_txid: str

    @classmethod
    def from_answer(cls, answer: Mapping[str, Any]) -> CheatRecord:
        return cls(channel=_str(answer, "channel"), state=int(answer["state"]),
                   revoked_commitment_txid=_str(answer, "revoked_commitment_txid"))
