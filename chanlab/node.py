"""I/O: one running chanlab node process, its commands as methods with typed answers.

A ``Node`` drives a node process through the same control API the CLI uses (``call(cmd,
**args)`` on its control socket) and starts, stops or kills it. Every refusal, and every call
to a node that is not running, raises ``NodeError`` with a one-line message.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from chanlab.bitcoind import Bitcoind
from chanlab.records import (
    Balance,
    ChannelRecord,
    CheatRecord,
    CloseRecord,
    ForceCloseRecord,
    InvoiceRecord,
    NodeError,
    NodeInfo,
    PaymentRecord,
    start_failure,
)
from channel.errors import ChanlabError
from regtest.wait import wait_for
from regtest.wallet import Wallet

__all__ = ["Node", "NodeProcessLike"]

_RECONNECT_PATIENCE_S = 2.0   # a restarted opener redials by itself; give it that long first


class NodeProcessLike(Protocol):
    """What ``Node`` needs of a node process (``regtest.cluster.NodeProcess`` is one)."""

    name: str

    @property
    def home(self) -> Path: ...
    @property
    def running(self) -> bool: ...
    def call(self, cmd: str, **args: Any) -> Any: ...
    def start(self, timeout: float = 30.0) -> object: ...
    def stop(self, timeout: float = 15.0) -> None: ...
    def kill(self) -> None: ...


ChannelRef = ChannelRecord | str


def _key(channel: ChannelRef) -> str:
    return channel.channel if isinstance(channel, ChannelRecord) else channel


class Node:
    """A chanlab node process on ``bitcoind``; ``peers`` maps node id -> Node for the nodes
    started alongside it (so ``restart`` can reconnect them)."""

    def __init__(self, process: NodeProcessLike, bitcoind: Bitcoind,
                 peers: Mapping[str, Node]) -> None:
        self.process = process
        self.bitcoind = bitcoind
        self._peers = peers
        self._node_id: str | None = None

    def __repr__(self) -> str:
        return f"<chanlab.Node {self.name}>"

    @property
    def name(self) -> str:
        return self.process.name

    @property
    def home(self) -> Path:
        """The node's folder: its key, database, ``node.log``."""
        return self.process.home

    @property
    def log_path(self) -> Path:
        return self.home / "node.log"

    @property
    def wallet(self) -> Wallet:
        """The node's on-chain wallet (a bitcoind wallet named after the node)."""
        return Wallet(self.bitcoind.rpc, self.name)

    @property
    def running(self) -> bool:
        return self.process.running

    @property
    def node_id(self) -> str:
        if self._node_id is None:
            self._node_id = self.info().node_id
        return self._node_id

    def call(self, cmd: str, **args: Any) -> Any:
        """Any control command by name, raw JSON answer (the typed methods are preferred)."""
        try:
            return self.process.call(cmd, **args)
        except (ChanlabError, OSError) as exc:
            text = str(exc)
            prefix = f"{self.name}: "
            raise NodeError(self.name, text[len(prefix):] if text.startswith(prefix)
                            else text) from None

    # --- commands -------------------------------------------------------------------------------

    def info(self) -> NodeInfo:
        return NodeInfo.from_answer(self.call("info"))

    def connect(self, other: Node | str) -> None:
        """Connect to ``other`` (a Node, or ``node_id@host:port``)."""
        address = other.info().address if isinstance(other, Node) else other
        self.call("connect", peer=address)

    def open_channel(self, other: Node, amount_sat: int, *, push_msat: int = 0,
                     anchors: bool = False, announce: bool = False, confirm: bool = False,
                     timeout: float = 30.0) -> ChannelRecord:
        """Open a channel of ``amount_sat`` to ``other``, funded from our wallet (connecting
        first if needed). The funding transaction is in the mempool, the channel awaiting
        lock-in; with ``confirm=True``, mine it and return once both nodes see it ``normal``.
        ``announce=True`` makes it public: announced to the network (BOLT 7) once 6 deep."""
        if other.node_id not in self.info().peers:
            self.connect(other)
        # announce only when asked: the command's default is a private channel
        extra = {"announce": True} if announce else {}
        opened = self.call("open", peer_id=other.node_id, amount_sat=amount_sat,
                           push_msat=push_msat, anchors=anchors, **extra)
        funding_txid = str(opened["funding_txid"])
        if confirm:
            wait_for(lambda: funding_txid in self.bitcoind.rpc.getrawmempool(), timeout=timeout,
                     what=f"{self.name}'s funding transaction {funding_txid} in the mempool")
            self.bitcoind.generate_block(1)
            for node in (self, other):
                node.wait_for_channel(funding_txid, "normal", timeout=timeout)
        return self.channel(funding_txid)

    def invoice(self, amount_msat: int, description: str = "", *,
                hold: bool = False) -> InvoiceRecord:
        return InvoiceRecord.from_answer(self.call("invoice", amount_msat=amount_msat,
                                                   description=description, hold=hold))

    def pay(self, invoice: InvoiceRecord | str) -> PaymentRecord:
        """Pay and wait for the outcome; a payment that does not succeed raises ``NodeError``."""
        answer = self.call("pay", invoice=str(invoice))
        payment = PaymentRecord.from_answer(answer)
        if payment.status != "succeeded":
            raise NodeError(self.name, f"payment {payment.status}: {payment.reason or '?'}")
        return payment

    def graph_info(self) -> dict[str, Any]:
        """The network as this node knows it (``graph-info``): ``nodes`` and ``channels``, each
        channel with both directions' fee policies (None until that channel_update came)."""
        return dict(self.call("graph-info"))

    def channels(self) -> tuple[ChannelRecord, ...]:
        return tuple(ChannelRecord.from_answer(c) for c in self.call("channels"))

    def channel(self, ref: ChannelRef) -> ChannelRecord:
        """Our record of one channel: by its key, channel id, or funding txid."""
        key = _key(ref)
        for c in self.channels():
            if key in (c.channel, c.channel_id, c.funding_txid):
                return c
        raise NodeError(self.name, f"no channel {key}")

    def balance(self) -> Balance:
        return Balance.from_answer(self.call("balance"))

    def close(self, channel: ChannelRef) -> CloseRecord:
        """Cooperative close: returns with the closing transaction in the mempool."""
        return CloseRecord.from_answer(self.call("close", channel=self.channel(channel).channel))

    def force_close(self, channel: ChannelRef) -> ForceCloseRecord:
        """Broadcast our latest commitment; our share waits ``to_self_delay`` blocks."""
        return ForceCloseRecord.from_answer(
            self.call("force-close", channel=self.channel(channel).channel))

    def cheat(self, channel: ChannelRef, *, state: int) -> CheatRecord:
        """Broadcast our revoked commitment number ``state`` (regtest, and only on a node
        started with ``allow_cheating=True``)."""
        return CheatRecord.from_answer(
            self.call("cheat", channel=self.channel(channel).channel, state=state))

    # --- waiting --------------------------------------------------------------------------------

    def wait_for_channel(self, ref: ChannelRef, state: str, *, timeout: float = 30.0
                         ) -> ChannelRecord:
        """Wait until our channel ``ref`` is in ``state`` ("normal", "closed"...); its record."""
        key = _key(ref)

        def reached() -> ChannelRecord | None:
            for c in self.channels():
                if key in (c.channel, c.channel_id, c.funding_txid) and c.state == state:
                    return c
            return None

        return wait_for(reached, timeout=timeout, what=f"{self.name}'s channel {key[:16]} "
                                                       f"to be {state}")

    def wait_synced(self, *, timeout: float = 30.0) -> int:
        """Wait until the node has processed bitcoind's best block; return that height."""
        height = self.bitcoind.height()
        wait_for(lambda: self.info().height >= height, timeout=timeout,
                 what=f"{self.name} to reach block {height}")
        return height

    # --- process --------------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        """Start the (stopped or killed) process again on the same folder and port."""
        try:
            self.process.start(timeout)
        except (ChanlabError, RuntimeError, OSError) as exc:
            raise start_failure(self.name, exc) from None

    def stop(self) -> None:
        """Graceful stop (the node finishes what it is writing)."""
        self.process.stop()

    def kill(self) -> None:
        """kill -9: a crash, for fault tests; ``start()`` or ``restart()`` brings it back."""
        self.process.kill()

    def restart(self, *, timeout: float = 30.0) -> None:
        """Stop (if running), start, and wait until the peers of its open channels among the
        nodes started alongside it are connected again."""
        self.stop()
        self.start(timeout)
        wanted = {c.peer_id for c in self.channels() if c.state != "closed"}
        peers = [p for node_id, p in self._peers.items() if node_id in wanted and p.running]
        started = time.monotonic()

        def linked() -> bool:
            ours = self.info().peers
            missing = [p for p in peers
                       if p.node_id not in ours or self.node_id not in p.info().peers]
            if missing and time.monotonic() - started >= _RECONNECT_PATIENCE_S:
                for peer in missing:
                    try:
                        self.connect(peer)
                    except NodeError:
                        pass   # the peer is dialling us at this moment; look again
            return not missing

        wait_for(linked, timeout=timeout, what=f"{self.name} to reconnect to its peers")
