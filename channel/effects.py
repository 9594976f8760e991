"""What the channel manager decided, as data: the effects of one flight, and a channel's handle.

The manager (:mod:`channel.manager`) never writes, sends or broadcasts; it fills an
:class:`Effects` and the node shell carries it out in this order, which is the node's safety
rule: persist everything the flight changed in one SQLite transaction, then send its messages
(one write per peer), then broadcast its transactions, then answer whoever waits for an
outcome (:class:`Resolution`), so nobody learns of a payment before its proof is durable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from channel.store import ForwardRow, PaymentRow

if TYPE_CHECKING:   # the monitor and state machine load with the first channel (idle node RSS)
    from channel.monitor import ChannelMonitor
    from channel.state import Channel

__all__ = [
    "ChannelHandle",
    "Effects",
    "FundingNeeded",
    "OpenResolved",
    "PaymentResolved",
    "PipelineDone",
    "Resolution",
    "ShutdownResolved",
]


@dataclass(slots=True)
class ChannelHandle:
    """A channel plus what the manager keeps around it (its monitor, its funding tx)."""

    key: str
    peer_id: bytes
    channel: Channel
    funding_tx: bytes | None = None
    monitor: ChannelMonitor | None = None
    monitor_seq: int = 0           # updates written since the last monitor snapshot
    monitor_dirty: bool = False    # chain events changed the monitor: snapshot it
    # BOLT 7 short_channel_id (block height, tx index, output) once the funding confirmed
    short_channel_id: bytes | None = None


@dataclass(frozen=True, slots=True)
class PaymentResolved:
    """An outgoing payment ended (``result['status']`` is ``succeeded`` or ``failed``)."""

    payment_hash: bytes
    result: dict[str, Any]


@dataclass(frozen=True, slots=True)
class OpenResolved:
    """A channel we opened is funded (``funding_txid``) or failed (``error``)."""

    key: str
    funding_txid: str = ""
    error: str = ""


@dataclass(frozen=True, slots=True)
class ShutdownResolved:
    """A cooperative close finished: its closing transaction is broadcast (``closing_txid``),
    or it failed (``error``: the peer's reason, for the ``close`` command)."""

    key: str
    closing_txid: str
    error: str = ""


@dataclass(frozen=True, slots=True)
class PipelineDone:
    """The payment pipeline on channel ``key`` has nothing left to send or wait for."""

    key: str


Resolution = PaymentResolved | OpenResolved | ShutdownResolved | PipelineDone


@dataclass(frozen=True, slots=True)
class FundingNeeded:
    """Fund channel ``key``: pay ``amount_sat`` to ``script_pubkey`` from the node's wallet."""

    key: str
    script_pubkey: bytes
    amount_sat: int


@dataclass(slots=True)
class Effects:
    """What one step (or one batch of steps) changed, and what must happen because of it."""

    touched: list[ChannelHandle] = field(default_factory=list)   # persist these channels
    payments: list[PaymentRow] = field(default_factory=list)
    kv: list[tuple[str, str]] = field(default_factory=list)
    outgoing: list[tuple[bytes, Any]] = field(default_factory=list)  # (peer_id, message)
    broadcasts: list[bytes] = field(default_factory=list)
    resolutions: list[Resolution] = field(default_factory=list)
    funding: list[FundingNeeded] = field(default_factory=list)   # wallet work, then funded()
    depth_checks: list[str] = field(default_factory=list)        # channel keys to look at
    # channels that end before they were funded: delete their rows, unlock the inputs of the
    # funding tx we built and never broadcast
    forgotten: list[tuple[str, bytes | None]] = field(default_factory=list)
    # payments whose route failed at a hop: try another route in a flight of their own, under
    # the locks of the peers a new route may start with (ChannelManager.retry_payments)
    retries: list[bytes] = field(default_factory=list)
    forwards: list[ForwardRow] = field(default_factory=list)     # forward links changed

    def touch(self, handle: ChannelHandle) -> None:
        if handle not in self.touched:
            self.touched.append(handle)

    def send(self, peer_id: bytes, message: Any) -> None:
        self.outgoing.append((peer_id, message))

    def take(self) -> Effects:
        """Everything gathered so far, moved into a new :class:`Effects` (this one is empty
        afterwards): to complete part of a batch before an error is handled."""
        taken = Effects(self.touched, self.payments, self.kv, self.outgoing, self.broadcasts,
                        self.resolutions, self.funding, self.depth_checks, self.forgotten,
                        self.retries, self.forwards)
        self.touched, self.payments, self.kv, self.outgoing = [], [], [], []
        self.broadcasts, self.resolutions, self.funding, self.depth_checks = [], [], [], []
        self.forgotten, self.retries, self.forwards = [], [], []
        return taken

    @property
    def empty(self) -> bool:
        return not (self.touched or self.payments or self.kv or self.outgoing or
                    self.broadcasts or self.resolutions or self.funding or self.depth_checks or
                    self.forgotten or self.retries or self.forwards)
