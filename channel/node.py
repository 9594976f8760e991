"""I/O: the node daemon: peers over BOLT 8, channels, payments, the chain, a control socket.

The node is the thin shell around the pure parts. For every message from a peer it calls the
channel state machine (``channel.state``), persists what changed in one SQLite transaction
(``channel.store``), and only then writes the flight's replies in one ``send_many``. The chain is
injected (``channel.chain.ChainBackend``), so this module never imports ``regtest``.

Reactions follow the exception tree of ``channel.errors``:

* ``MalformedMessage`` / ``UnknownEvenMessage`` from a peer: ``warning``, then disconnect;
* ``PeerProtocolError`` on a channel: ``error`` for that channel, then force-close it;
* ``RejectedUpdate`` from a local command: the command fails with its message, nothing else.

Control: a Unix socket ``<home>/control.sock`` takes one JSON object per line,
``{"cmd": "...", "args": {...}}``, and answers ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": "..."}``. ``chanlab <name> <command>`` is its client.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import json
import logging
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from bitcoin.core import CTransaction

from channel.chain import BlockEvent, ChainBackend, TxEvent, require_regtest
from channel.control_api import NODE_COMMANDS
from channel.daemon import DaemonShell
from channel.errors import (
    ChainError,
    ChanlabError,
    HandshakeFailed,
    InvalidOnion,
    MalformedMessage,
    PeerProtocolError,
    RejectedUpdate,
    UnknownEvenMessage,
    UnsafeOperation,
)
from channel.invoice import Invoice
from channel.keys import ChannelKeys
from channel.messages import (
    AcceptChannel,
    ChannelReady,
    ChannelReestablish,
    ClosingSigned,
    CommitmentSigned,
    FundingCreated,
    FundingSigned,
    OpenChannel,
    RevokeAndAck,
    Shutdown,
    UpdateAddHtlc,
    UpdateFailHtlc,
    UpdateFailMalformedHtlc,
    UpdateFee,
    UpdateFulfillHtlc,
    decode_message,
    encode_message,
)
from channel.monitor import (
    ChannelMonitor,
    ChannelResolved,
    Claim,
    ClaimConfirmed,
    ClaimRequested,
    FundingSpent,
    HtlcFeeBump,
    MonitorEvent,
)
from channel.onion import build_single_hop_onion, peel_onion
from channel.state import (
    Channel,
    ChannelConfig,
    ChannelState,
    channel_from_record,
    channel_to_record,
    monitor_update_from_record,
    monitor_update_to_record,
)
from channel.store import ChannelRow, NodeStore, PaymentRow
from channel.sweeps import build_sweep_transaction, delayed_output
from channel.tasks import BackgroundTasks
from channel.tower_client import WatchtowerClient
from channel.transactions import build_htlc_transactions, finalize_htlc_transaction
from channel.transport import Transport, accept, connect
from channel.types import CommitmentFormat, OutPoint, Side
from channel.wire import (
    REGTEST_CHAIN_HASH,
    ErrorMessage,
    Init,
    Ping,
    Pong,
    UnknownMessage,
    WarningMessage,
    check_compatible,
    our_features,
    pong_for,
)

__all__ = ["Node", "NodeSettings"]

log = logging.getLogger("chanlab.node")

FUNDING_FEERATE_SAT_PER_VB = 2
COMMITMENT_FEERATE_PER_KW = 1000
FINAL_CLTV_DELTA = 18
SWEEP_FEERATE_PER_KW = 1000
MONITOR_SNAPSHOT_EVERY = 256  # updates between two monitor snapshots (bounds replay at start)
PAYMENT_TIMEOUT_S = 60.0


def _txid_hex(raw_tx: bytes) -> str:
    return bytes(CTransaction.deserialize(raw_tx).GetTxid())[::-1].hex()


def _htlc_input_weight(bump: HtlcFeeBump) -> int:
    """Weight of an anchors HTLC tx's input 0 once signed, for the wallet's fee estimate.

    41 non-witness bytes (outpoint, empty scriptSig, nSequence) count 4 each; the BOLT 3
    witness ``0 <remotehtlcsig> <localhtlcsig> <payment_preimage or empty> <witness_script>``
    counts 1 each, with signatures at their largest (72 DER bytes + the sighash byte)."""
    items = (0, 73, 73, 32 if bump.payment_preimage is not None else 0,
             len(bump.htlc_tx.htlc_output.witness_script))
    witness = 1 + sum((1 if n < 0xFD else 3) + n for n in items)
    return 41 * 4 + witness


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeSettings:
    """How a node runs: where it lives, where it listens, its channel policy."""

    name: str
    home: Path
    host: str = "127.0.0.1"
    port: int = 0
    channel_config: ChannelConfig = field(default_factory=ChannelConfig)
    allow_cheating: bool = False
    towers: tuple[str, ...] = ()   # watchtowers (tower_id@host:port) to add at start


@dataclass(slots=True)
class _Peer:
    node_id: bytes
    transport: Transport
    features: bytes = b""
    task: asyncio.Task[None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


@dataclass(slots=True)
class _Handle:
    """A channel plus the node's bookkeeping around it."""

    key: str
    peer_id: bytes
    channel: Channel
    funding_tx: bytes | None = None
    monitor: ChannelMonitor | None = None
    monitor_seq: int = 0           # updates written since the last monitor snapshot
    monitor_dirty: bool = False    # chain events changed the monitor: snapshot it
    broadcast: set[str] = field(default_factory=set)
    fee_bumped: dict[str, bytes] = field(default_factory=dict)  # claim txid -> tx we sent
    opened: asyncio.Future[str] | None = None
    closed: asyncio.Future[str] | None = None


@dataclass(slots=True)
class _Flight:
    """What one step changed: persisted together, then its messages are sent together."""

    handles: list[_Handle] = field(default_factory=list)
    payments: list[PaymentRow] = field(default_factory=list)
    kv: list[tuple[str, str]] = field(default_factory=list)
    outgoing: list[tuple[bytes, Any]] = field(default_factory=list)  # (peer_id, message)
    broadcasts: list[bytes] = field(default_factory=list)

    after: list[Callable[[], None]] = field(default_factory=list)  # once durable and sent
    closed: bool = False

    def touch(self, handle: _Handle) -> None:
        if handle not in self.handles:
            self.handles.append(handle)

    def merge(self, other: _Flight) -> None:
        for handle in other.handles:
            self.touch(handle)
        self.payments += other.payments
        self.kv += other.kv
        self.outgoing += other.outgoing
        self.broadcasts += other.broadcasts
        self.after += other.after

    def send(self, peer_id: bytes, message: Any) -> None:
        self.outgoing.append((peer_id, message))


@dataclass(slots=True)
class _Pipeline:
    """Payments made one batch after another on one channel: the next batch's HTLCs are added
    in the very flight that brings the last preimage of the current one (no round trip lost)."""

    handle: _Handle
    invoices: list[Invoice]
    batch_size: int
    done: asyncio.Future[None]
    next_index: int = 0
    outstanding: set[bytes] = field(default_factory=set)
    succeeded: int = 0
    failed: int = 0


# The flight that collects every step of the messages already received from one peer (set by
# that peer's read loop for its own task): persisted once and sent in one write when the
# buffer is empty, so a batch of N updates costs one fsync, not N.
_COALESCED: contextvars.ContextVar[_Flight | None] = contextvars.ContextVar(
    "chanlab_coalesced_flight", default=None)


def _open_batch() -> _Flight | None:
    batch = _COALESCED.get()
    return batch if batch is not None and not batch.closed else None


class Node:
    """A long-lived chanlab node. ``await node.start()``, then ``await node.serve_forever()``."""

    def __init__(self, settings: NodeSettings, chain: ChainBackend) -> None:
        self.settings = settings
        self.chain = chain
        self.shell = DaemonShell(settings.home, info_file="node.json", key_file="node_key",
                                 commands=NODE_COMMANDS, handlers={
                                     name: getattr(self, attr)
                                     for name, attr in self._COMMANDS.items()})
        self._node_secret = self.shell.secret
        import coincurve
        self.node_id: bytes = coincurve.PrivateKey(self._node_secret).public_key.format(True)
        self.store = NodeStore(settings.home / "node.db")
        self.peers: dict[bytes, _Peer] = {}
        self.handles: dict[str, _Handle] = {}
        self.port = settings.port
        self._server: asyncio.Server | None = None
        self._tasks = BackgroundTasks(log)
        self._stopping = self.shell.stopping
        self._pay_waiters: dict[bytes, asyncio.Future[dict[str, Any]]] = {}
        self._pipelines: dict[str, _Pipeline] = {}
        self._height = 0
        self._cheat_archive: dict[str, dict[int, bytes]] = {}
        # per channel, per state: that state's signed HTLC txs and a to_local sweep
        self._cheat_extras: dict[str, dict[int, dict[str, Any]]] = {}
        self._sweep_script = b""
        self.events: list[str] = []  # what the monitors said, for `events` and narration
        self.towers = WatchtowerClient(node_secret=self._node_secret, store=self.store,
                                       monitor_of=self._monitor_of)

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if self.settings.allow_cheating:
            require_regtest(self.chain.chain, "--allow-cheating")
        for row in self.store.channels():
            chan = channel_from_record(row.record)
            chan.on_disconnect()  # uncommitted updates die with the connection
            handle = _Handle(key=row.key, peer_id=bytes.fromhex(row.peer_id), channel=chan)
            raw = self.store.get(f"funding_tx:{row.key}")
            handle.funding_tx = bytes.fromhex(raw) if raw else None
            self.handles[row.key] = handle
        snapshots = self.store.monitors()
        for key, handle in self.handles.items():
            if key in snapshots:
                handle.monitor = ChannelMonitor.from_record(snapshots[key])
                updates = self.store.monitor_updates(key)
                handle.monitor.apply_updates(monitor_update_from_record(u) for u in updates)
                handle.monitor_seq = len(updates)
        if self.settings.allow_cheating:
            raw_archive = self.store.get("cheat_archive")
            if raw_archive:
                self._cheat_archive = {k: {int(n): bytes.fromhex(t) for n, t in v.items()}
                                       for k, v in json.loads(raw_archive).items()}
            raw_extras = self.store.get("cheat_extras")
            if raw_extras:
                self._cheat_extras = {k: {int(n): e for n, e in v.items()}
                                      for k, v in json.loads(raw_extras).items()}
        self._height = await self.chain.height()
        sweep = self.store.get("sweep_script")
        if sweep is None:
            sweep = (await self.chain.new_script_pubkey()).hex()
            self.store.commit_flight(kv=[("sweep_script", sweep)])
        self._sweep_script = bytes.fromhex(sweep)
        self._server = await asyncio.start_server(self._on_inbound, self.settings.host,
                                                  self.settings.port)
        self.port = self._server.sockets[0].getsockname()[1]
        await self.shell.open_control()
        self.shell.publish({"name": self.settings.name, "node_id": self.node_id.hex(),
                            "host": self.settings.host, "port": self.port,
                            "chain": self.chain.chain})
        self._spawn(self._watch_chain())
        self._spawn(self._reconnect_known_peers())
        self.towers.start(((k, h.monitor) for k, h in self.handles.items()
                           if h.monitor is not None), self.settings.towers)
        log.info("node %s (%s) listening on %s:%d", self.settings.name, self.node_id.hex(),
                 self.settings.host, self.port)

    def request_stop(self) -> None:
        """Ask :meth:`serve_forever` to stop the node (safe from a signal handler)."""
        self._stopping.set()

    async def serve_forever(self) -> None:
        await self._stopping.wait()
        await self.stop()

    async def stop(self) -> None:
        self.shell.close()
        if self._server is not None:
            self._server.close()
        for peer in list(self.peers.values()):
            await peer.transport.close()
        await self._tasks.cancel_all()
        await self.towers.stop()
        await self.chain.aclose()
        self.store.close()

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        return self._tasks.spawn(coro)

    # -- persistence -----------------------------------------------------------------------

    def _persist(self, flight: _Flight) -> None:
        batch = _open_batch()
        if batch is not None:
            batch.merge(_Flight(handles=flight.handles, payments=flight.payments, kv=flight.kv))
            return
        rows = [ChannelRow(key=h.key, peer_id=h.peer_id.hex(),
                           record=channel_to_record(h.channel)) for h in flight.handles]
        kv = list(flight.kv)
        if self.settings.allow_cheating:
            for h in flight.handles:
                self._archive_for_cheating(h)
            kv.append(("cheat_archive", json.dumps(
                {k: {str(n): t.hex() for n, t in v.items()}
                 for k, v in self._cheat_archive.items()})))
            kv.append(("cheat_extras", json.dumps(
                {k: {str(n): e for n, e in v.items()} for k, v in self._cheat_extras.items()})))
        snapshots: list[tuple[str, dict[str, Any]]] = []
        update_rows: list[tuple[str, int, dict[str, Any]]] = []
        for h in flight.handles:
            updates = h.channel.drain_monitor_updates()
            chan = h.channel
            if h.monitor is None and chan.funding_outpoint is not None and \
                    chan.counterparty_params is not None:
                h.monitor = ChannelMonitor.from_channel(
                    chan, self._sweep_script, SWEEP_FEERATE_PER_KW,
                    peer_name=f"peer {h.peer_id.hex()[:8]}")
                h.monitor_dirty = True
            if h.monitor is None:
                continue
            self._note(h, h.monitor.apply_updates(updates))
            self.towers.note_updates(h.key, updates)  # uploads happen in the background
            # a snapshot costs O(revoked states): take one only after as many updates, so
            # persistence stays amortised O(1) per update on a long-lived channel
            threshold = max(MONITOR_SNAPSHOT_EVERY, h.monitor.revoked_state_count)
            if h.monitor_dirty or h.monitor_seq + len(updates) > threshold:
                snapshots.append((h.key, h.monitor.to_record()))
                h.monitor_seq = 0
                h.monitor_dirty = False
            else:
                for update in updates:
                    update_rows.append((h.key, h.monitor_seq, monitor_update_to_record(update)))
                    h.monitor_seq += 1
        self.store.commit_flight(channels=rows, monitors=snapshots, monitor_updates=update_rows,
                                 payments=flight.payments, kv=kv)

    def _note(self, handle: _Handle, events: list[MonitorEvent]) -> None:
        """Log what a monitor decided, and follow the channel's state from the chain."""
        chan = handle.channel
        for event in events:
            text = f"channel {handle.key[:8]}: {event.description}"
            self.events.append(text)
            log.info("%s", text)
            if isinstance(event, FundingSpent) and chan.state not in (
                    ChannelState.CLOSING, ChannelState.FORCE_CLOSING, ChannelState.CLOSED):
                chan.state = ChannelState.FORCE_CLOSING
            if isinstance(event, ChannelResolved):
                chan.state = ChannelState.CLOSED
            if isinstance(event, ClaimRequested | ClaimConfirmed):
                handle.monitor_dirty = True
        if events:
            handle.monitor_dirty = True

    def _archive_for_cheating(self, handle: _Handle) -> None:
        """Developer mode: keep every signed commitment of ours so ``cheat`` can replay one."""
        chan = handle.channel
        if not chan.holder_commitment_signature or not chan.is_funded:
            return
        archive = self._cheat_archive.setdefault(handle.key, {})
        number = chan.holder_commitment_number
        if number not in archive:
            archive[number] = chan.holder_transactions().commitment_tx.serialize()
        extras = self._cheat_extras.setdefault(handle.key, {})
        if number not in extras:
            extras[number] = self._cheat_extras_for(chan)

    def _cheat_extras_for(self, chan: Channel) -> dict[str, Any]:
        """Developer mode: the current state's signed HTLC txs (HTLC-success ones with the
        preimages we know, from the channel or our own invoices) and a pre-signed sweep of its
        to_local (valid ``to_self_delay`` blocks after the commitment confirms)."""
        txs = chan.holder_transactions()
        ctx = txs.commitment
        preimages = {h.payment_hash: h.payment_preimage for h in chan.log.entries()
                     if h.payment_preimage is not None} if chan.log is not None else {}
        htlc_key = chan.keys.htlc_privkey(ctx.keys.per_commitment_point)
        htlc_txs: list[str] = []
        for htlc_tx, their_sig in zip(build_htlc_transactions(ctx), chan.holder_htlc_signatures,
                                      strict=True):
            preimage = None
            if not htlc_tx.is_timeout:
                payment_hash = htlc_tx.htlc_output.htlc.payment_hash
                preimage = preimages.get(payment_hash)
                row = self.store.payment(payment_hash.hex())
                if preimage is None and row is not None and row.direction == "in" and \
                        row.preimage is not None:
                    preimage = bytes.fromhex(row.preimage)
                if preimage is None:
                    continue
            htlc_txs.append(finalize_htlc_transaction(
                htlc_tx, countersignatory_signature=their_sig,
                broadcaster_signature=htlc_key.sign(htlc_tx.broadcaster_sighash()),
                payment_preimage=preimage).serialize().hex())
        sweep = ""
        if ctx.to_local_vout is not None:
            spend = delayed_output(ctx, chan.keys.delayed_payment_privkey(
                ctx.keys.per_commitment_point))
            with contextlib.suppress(ValueError):  # dust after the fee: nothing to sweep
                sweep = build_sweep_transaction(
                    [spend], destination_script_pubkey=self._sweep_script,
                    feerate_per_kw=SWEEP_FEERATE_PER_KW).tx.serialize().hex()
        return {"htlc_txs": htlc_txs, "to_local_sweep": sweep}

    async def _complete(self, flight: _Flight) -> None:
        """Persist a flight, then send its messages (one write per peer), then broadcast, then
        run its ``after`` callbacks (inside a peer's read loop: all of that once, at its end)."""
        batch = _open_batch()
        if batch is not None:
            batch.merge(flight)
            return
        self._persist(flight)
        by_peer: dict[bytes, list[bytes]] = {}
        for peer_id, message in flight.outgoing:
            by_peer.setdefault(peer_id, []).append(encode_message(message))
        for peer_id, encoded in by_peer.items():
            peer = self.peers.get(peer_id)
            if peer is None:
                continue  # reestablish will retransmit what matters
            try:
                await peer.transport.send_many(encoded)
            except (ConnectionError, OSError) as exc:
                log.info("send to %s failed: %s", peer_id.hex()[:16], exc)
        for raw in flight.broadcasts:
            try:
                txid = await self.chain.broadcast(raw)
                log.info("broadcast %s", txid)
            except ChainError as exc:
                log.warning("broadcast failed: %s", exc)
        for callback in flight.after:
            callback()

    # -- peers -----------------------------------------------------------------------------

    async def _on_inbound(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        try:
            transport = await accept(reader, writer, local_static=self._node_secret)
        except HandshakeFailed as exc:
            log.info("inbound handshake failed: %s", exc)
            return
        await self._run_peer(transport)

    async def connect(self, node_id: bytes, host: str, port: int) -> None:
        """Dial a peer, exchange ``init``, and keep reading from it in the background."""
        if node_id in self.peers:
            return
        transport = await connect(host, port, local_static=self._node_secret,
                                  remote_static_pubkey=node_id)
        self.store.commit_flight(kv=[(f"peer:{node_id.hex()}", f"{host}:{port}")])
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._spawn(self._run_peer(transport, ready))
        await asyncio.wait_for(ready, 10)

    async def _reconnect_known_peers(self) -> None:
        wanted = {h.peer_id for h in self.handles.values()
                  if h.channel.state not in (ChannelState.CLOSED,)}
        for peer_id in wanted:
            addr = self.store.get(f"peer:{peer_id.hex()}")
            if addr is None:
                continue
            host, port = addr.rsplit(":", 1)
            with contextlib.suppress(OSError, HandshakeFailed, TimeoutError):
                await self.connect(peer_id, host, int(port))

    async def _run_peer(self, transport: Transport,
                        ready: asyncio.Future[None] | None = None) -> None:
        node_id = transport.remote_pubkey
        try:
            await transport.send(encode_message(Init.ours(our_features())))
            first = decode_message(await asyncio.wait_for(transport.recv(), 10))
            if not isinstance(first, Init):
                raise MalformedMessage("the first message must be init")
            if not first.supports_chain(REGTEST_CHAIN_HASH):
                raise MalformedMessage("peer is on another chain")
            check_compatible(our_features(), first.combined_features())
        except (ChanlabError, EOFError, ConnectionError, TimeoutError,
                asyncio.IncompleteReadError) as exc:
            log.info("peer %s rejected during init: %s", node_id.hex()[:16], exc)
            await transport.close()
            if ready is not None and not ready.done():
                ready.set_exception(HandshakeFailed(f"init failed: {exc}"))
            return
        old = self.peers.get(node_id)
        if old is not None:
            await old.transport.close()
        peer = _Peer(node_id=node_id, transport=transport)
        self.peers[node_id] = peer
        log.info("peer %s connected", node_id.hex()[:16])
        # BOLT 2: channel_reestablish first for every channel with this peer.
        async with peer.lock:
            flight = _Flight()
            for handle in self._handles_of(node_id):
                chan = handle.channel
                if chan.is_funded or chan.state is ChannelState.CLOSING:
                    chan.on_disconnect()
                    if chan.channel_id is not None and chan.log is not None:
                        flight.send(node_id, chan.channel_reestablish())
                        flight.touch(handle)
            await self._complete(flight)
        if ready is not None and not ready.done():
            ready.set_result(None)
        try:
            await self._read_loop(peer)
        finally:
            if self.peers.get(node_id) is peer:
                del self.peers[node_id]
            for handle in self._handles_of(node_id):
                handle.channel.on_disconnect()
            await transport.close()
            log.info("peer %s disconnected", node_id.hex()[:16])

    def _handles_of(self, node_id: bytes) -> list[_Handle]:
        return [h for h in self.handles.values() if h.peer_id == node_id]

    async def _read_loop(self, peer: _Peer) -> None:
        while not self._stopping.is_set():
            try:
                raw = await peer.transport.recv()
            except (EOFError, ConnectionError, asyncio.IncompleteReadError, HandshakeFailed,
                    MalformedMessage):  # a BOLT 8 MAC failure: the stream is lost, hang up
                return
            async with peer.lock:
                # every message already received joins one flight: one fsync, one write
                batch = _Flight()
                token = _COALESCED.set(batch)
                try:
                    while True:
                        if not await self._handle_one(peer, raw, batch):
                            return
                        if not peer.transport.has_buffered_data():
                            break
                        try:
                            raw = await peer.transport.recv()
                        except (EOFError, ConnectionError, asyncio.IncompleteReadError,
                                HandshakeFailed, MalformedMessage):
                            return
                finally:
                    _COALESCED.reset(token)
                    batch.closed = True
                    # updates queued while handling the batch (a payment pipeline's next
                    # HTLCs) ride in the same flight's commitment_signed
                    for handle in list(batch.handles):
                        self._sign_if_needed(handle, batch)
                    await self._complete(batch)

    async def _handle_one(self, peer: _Peer, raw: bytes, batch: _Flight) -> bool:
        """Dispatch one message into ``batch``; False once the peer must be dropped."""
        try:
            message = decode_message(raw)
        except UnknownEvenMessage as exc:
            log.warning("peer %s sent an unknown even message: %s", peer.node_id.hex()[:16], exc)
            await self._flush_then(batch)
            await self._warn_and_disconnect(peer, f"unknown even message: {exc}")
            return False
        except MalformedMessage as exc:
            log.warning("malformed message from %s: %s", peer.node_id.hex()[:16], exc)
            await self._flush_then(batch)
            await self._warn_and_disconnect(peer, f"malformed message: {exc}")
            return False
        try:
            await self._dispatch(peer, message)
        except PeerProtocolError as exc:
            await self._flush_then(batch)
            await self._fail_channel_of(peer, message, str(exc))
        except MalformedMessage as exc:
            await self._flush_then(batch)
            await self._warn_and_disconnect(peer, str(exc))
            return False
        return True

    async def _flush_then(self, batch: _Flight) -> None:
        """Complete what the batch holds so far, outside it (before an error is handled)."""
        pending = _Flight()
        pending.merge(batch)
        batch.handles, batch.payments, batch.kv = [], [], []
        batch.outgoing, batch.broadcasts, batch.after = [], [], []
        token = _COALESCED.set(None)
        try:
            await self._complete(pending)
        finally:
            _COALESCED.reset(token)

    async def _warn_and_disconnect(self, peer: _Peer, text: str) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            await peer.transport.send(
                encode_message(WarningMessage.with_text(bytes(32), text[:500])))
        await peer.transport.close()

    async def _fail_channel_of(self, peer: _Peer, message: Any, text: str) -> None:
        """BOLT 2: the peer broke the protocol on a channel: ``error`` it and force-close."""
        channel_id = getattr(message, "channel_id", None) or \
            getattr(message, "temporary_channel_id", None)
        handle = self._handle_for(peer.node_id, channel_id) if channel_id else None
        log.warning("peer %s protocol error: %s", peer.node_id.hex()[:16], text)
        with contextlib.suppress(ConnectionError, OSError):
            await peer.transport.send(encode_message(
                ErrorMessage.with_text(channel_id or bytes(32), text[:500])))
        if handle is not None:
            await self._force_close(handle, reason=f"peer error: {text}")

    def _handle_for(self, node_id: bytes, channel_id: bytes | None) -> _Handle | None:
        for h in self._handles_of(node_id):
            if channel_id in (h.channel.channel_id, h.channel.temporary_channel_id):
                return h
        return None

    def _require(self, peer: _Peer, channel_id: bytes) -> _Handle:
        handle = self._handle_for(peer.node_id, channel_id)
        if handle is None:
            raise PeerProtocolError(f"unknown channel {channel_id.hex()}")
        return handle

    # -- dispatch --------------------------------------------------------------------------

    async def _dispatch(self, peer: _Peer, message: Any) -> None:
        handler = self._HANDLERS.get(type(message))
        if handler is None:
            if isinstance(message, UnknownMessage):
                return  # odd: ignore (BOLT 1 "it's OK to be odd")
            log.info("ignoring %s from %s", type(message).__name__, peer.node_id.hex()[:16])
            return
        await handler(self, peer, message)

    async def _on_ping(self, peer: _Peer, msg: Ping) -> None:
        pong = pong_for(msg)
        if pong is not None:
            await peer.transport.send(encode_message(pong))

    async def _on_pong(self, peer: _Peer, msg: Pong) -> None:
        return None

    async def _on_error(self, peer: _Peer, msg: ErrorMessage) -> None:
        log.warning("peer %s sent error: %s", peer.node_id.hex()[:16], msg.text)
        targets = self._handles_of(peer.node_id) if msg.channel_id == bytes(32) else \
            [h for h in [self._handle_for(peer.node_id, msg.channel_id)] if h is not None]
        for handle in targets:
            await self._force_close(handle, reason=f"peer sent error: {msg.text}")

    async def _on_warning(self, peer: _Peer, msg: WarningMessage) -> None:
        log.warning("peer %s sent warning: %s", peer.node_id.hex()[:16], msg.text)

    async def _on_open_channel(self, peer: _Peer, msg: OpenChannel) -> None:
        keys = ChannelKeys.from_seed(secrets.token_bytes(32))
        chan, reply = Channel.accept_inbound(keys=keys, config=self.settings.channel_config,
                                             msg=msg)
        handle = _Handle(key=chan.temporary_channel_id.hex(), peer_id=peer.node_id, channel=chan)
        self.handles[handle.key] = handle
        flight = _Flight()
        flight.touch(handle)
        flight.send(peer.node_id, reply)
        await self._complete(flight)

    async def _on_accept_channel(self, peer: _Peer, msg: AcceptChannel) -> None:
        handle = self._require(peer, msg.temporary_channel_id)
        chan = handle.channel
        chan.on_accept_channel(msg)
        try:
            funding = await self.chain.fund_output(chan.funding_script_pubkey, chan.funding_sat,
                                                   FUNDING_FEERATE_SAT_PER_VB)
        except ChainError as exc:
            chan.state = ChannelState.CLOSED
            self._resolve(handle.opened, error=f"cannot fund the channel: {exc}")
            self._persist(_Flight(handles=[handle]))
            raise PeerProtocolError(f"funding failed on our side: {exc}") from exc
        handle.funding_tx = funding.raw_tx
        created = chan.funding_created(OutPoint(txid=funding.txid, vout=funding.vout))
        flight = _Flight(kv=[(f"funding_tx:{handle.key}", funding.raw_tx.hex())])
        flight.touch(handle)
        flight.send(peer.node_id, created)
        await self._complete(flight)

    async def _on_funding_created(self, peer: _Peer, msg: FundingCreated) -> None:
        handle = self._require(peer, msg.temporary_channel_id)
        reply = handle.channel.on_funding_created(msg)
        flight = _Flight()
        flight.touch(handle)
        flight.send(peer.node_id, reply)
        await self._complete(flight)

    async def _on_funding_signed(self, peer: _Peer, msg: FundingSigned) -> None:
        handle = self._require(peer, msg.channel_id)
        handle.channel.on_funding_signed(msg)
        flight = _Flight()
        flight.touch(handle)
        if handle.funding_tx is not None:
            flight.broadcasts.append(handle.funding_tx)
        await self._complete(flight)
        assert handle.channel.funding_outpoint is not None
        self._resolve(handle.opened, result=handle.channel.funding_outpoint.txid_hex)
        await self._check_funding_depth(handle)

    async def _on_channel_ready(self, peer: _Peer, msg: ChannelReady) -> None:
        handle = self._require(peer, msg.channel_id)
        handle.channel.on_channel_ready(msg)
        self._persist(_Flight(handles=[handle]))

    async def _on_update_add_htlc(self, peer: _Peer, msg: UpdateAddHtlc) -> None:
        self._require(peer, msg.channel_id).channel.on_update_add_htlc(msg)

    async def _on_update_fulfill_htlc(self, peer: _Peer, msg: UpdateFulfillHtlc) -> None:
        handle = self._require(peer, msg.channel_id)
        entry = handle.channel.on_update_fulfill_htlc(msg)
        flight = _Flight(payments=[PaymentRow(
            payment_hash=entry.payment_hash.hex(), direction="out",
            amount_msat=entry.amount_msat, status="succeeded",
            preimage=msg.payment_preimage.hex())])
        flight.touch(handle)
        if handle.monitor is not None:
            self._note(handle, handle.monitor.provide_payment_preimage(msg.payment_preimage))
        self._persist(flight)  # the preimage is proof of payment: keep it before anything else
        self._resolve_payment(entry.payment_hash, {"status": "succeeded",
                                                   "payment_preimage": msg.payment_preimage.hex(),
                                                   "amount_msat": entry.amount_msat})
        await self._advance_pipeline(handle, entry.payment_hash, True)

    async def _on_update_fail_htlc(self, peer: _Peer, msg: UpdateFailHtlc) -> None:
        handle = self._require(peer, msg.channel_id)
        entry = handle.channel.on_update_fail_htlc(msg)
        self._resolve_payment(entry.payment_hash, {"status": "failed",
                                                   "reason": msg.reason.decode(errors="replace")})
        await self._advance_pipeline(handle, entry.payment_hash, False)

    async def _on_update_fail_malformed_htlc(self, peer: _Peer,
                                             msg: UpdateFailMalformedHtlc) -> None:
        handle = self._require(peer, msg.channel_id)
        entry = handle.channel.on_update_fail_htlc(UpdateFailHtlc(
            channel_id=msg.channel_id, id=msg.id, reason=b"malformed onion"))
        self._resolve_payment(entry.payment_hash, {"status": "failed",
                                                   "reason": f"malformed onion {msg.failure_code}"})
        await self._advance_pipeline(handle, entry.payment_hash, False)

    async def _on_update_fee(self, peer: _Peer, msg: UpdateFee) -> None:
        self._require(peer, msg.channel_id).channel.on_update_fee(msg)

    async def _on_commitment_signed(self, peer: _Peer, msg: CommitmentSigned) -> None:
        handle = self._require(peer, msg.channel_id)
        flight = _Flight()
        flight.touch(handle)
        flight.send(peer.node_id, handle.channel.on_commitment_signed(msg))
        self._settle_incoming(handle, flight)
        self._sign_if_needed(handle, flight)
        await self._complete(flight)

    async def _on_revoke_and_ack(self, peer: _Peer, msg: RevokeAndAck) -> None:
        handle = self._require(peer, msg.channel_id)
        handle.channel.on_revoke_and_ack(msg)
        flight = _Flight()
        flight.touch(handle)
        self._settle_incoming(handle, flight)
        self._sign_if_needed(handle, flight)
        self._maybe_negotiate_close(handle, flight)
        await self._complete(flight)

    async def _on_shutdown(self, peer: _Peer, msg: Shutdown) -> None:
        handle = self._require(peer, msg.channel_id)
        script = await self.chain.new_script_pubkey()
        reply = handle.channel.on_shutdown(msg, script)
        flight = _Flight()
        flight.touch(handle)
        if reply is not None:
            flight.send(peer.node_id, reply)
        self._sign_if_needed(handle, flight)
        self._maybe_negotiate_close(handle, flight)
        await self._complete(flight)

    async def _on_closing_signed(self, peer: _Peer, msg: ClosingSigned) -> None:
        handle = self._require(peer, msg.channel_id)
        reply, final = handle.channel.on_closing_signed(msg)
        flight = _Flight()
        flight.touch(handle)
        if reply is not None:
            flight.send(peer.node_id, reply)
        if final is not None:
            flight.broadcasts.append(final.serialize())
        await self._complete(flight)
        if final is not None:
            self._resolve(handle.closed, result=final.GetTxid()[::-1].hex())

    async def _on_channel_reestablish(self, peer: _Peer, msg: ChannelReestablish) -> None:
        handle = self._require(peer, msg.channel_id)
        flight = _Flight()
        flight.touch(handle)
        for out in handle.channel.on_channel_reestablish(msg):
            flight.send(peer.node_id, out)
        self._settle_incoming(handle, flight)
        self._sign_if_needed(handle, flight)
        self._maybe_negotiate_close(handle, flight)
        await self._complete(flight)

    _HANDLERS: ClassVar[dict[type, Callable[[Node, _Peer, Any], Awaitable[None]]]] = {
        Ping: _on_ping, Pong: _on_pong, ErrorMessage: _on_error, WarningMessage: _on_warning,
        OpenChannel: _on_open_channel, AcceptChannel: _on_accept_channel,
        FundingCreated: _on_funding_created, FundingSigned: _on_funding_signed,
        ChannelReady: _on_channel_ready, UpdateAddHtlc: _on_update_add_htlc,
        UpdateFulfillHtlc: _on_update_fulfill_htlc, UpdateFailHtlc: _on_update_fail_htlc,
        UpdateFailMalformedHtlc: _on_update_fail_malformed_htlc, UpdateFee: _on_update_fee,
        CommitmentSigned: _on_commitment_signed, RevokeAndAck: _on_revoke_and_ack,
        Shutdown: _on_shutdown, ClosingSigned: _on_closing_signed,
        ChannelReestablish: _on_channel_reestablish,
    }

    # -- payments --------------------------------------------------------------------------

    def _sign_if_needed(self, handle: _Handle, flight: _Flight) -> None:
        if handle.channel.can_sign():
            flight.send(handle.peer_id, handle.channel.sign_commitment())

    def _settle_incoming(self, handle: _Handle, flight: _Flight) -> None:
        """Fulfil (or fail) the HTLCs paid to us that are now irrevocably committed."""
        chan = handle.channel
        for entry in chan.htlcs_to_settle():
            reason = ""
            preimage: bytes | None = None
            payment = self.store.payment(entry.payment_hash.hex())
            try:
                peeled = peel_onion(onion=entry.onion_routing_packet, node_key=self._node_secret,
                                    associated_data=entry.payment_hash)
                payload = peeled.payload
                data = payload.payment_data
                if not peeled.is_final:
                    reason = "chanlab does not forward payments"
                elif payment is None or payment.direction != "in" or payment.preimage is None:
                    reason = "unknown payment hash"
                elif data is None or payment.payment_secret != data.payment_secret.hex():
                    reason = "wrong payment secret"
                elif payload.amt_to_forward != entry.amount_msat or \
                        entry.amount_msat < payment.amount_msat:
                    reason = "wrong amount"
                elif payload.outgoing_cltv_value != entry.cltv_expiry or \
                        entry.cltv_expiry < self._height + FINAL_CLTV_DELTA // 2:
                    reason = "cltv expiry too soon"
                elif payment.status == "succeeded":
                    reason = "invoice already paid"
                elif self.store.get(f"hold:{payment.payment_hash}") == "cancel":
                    reason = "the payee cancelled the invoice"
                elif self.store.get(f"hold:{payment.payment_hash}") == "hold":
                    continue  # a hold invoice: the HTLC stays until `settle` or `cancel`
                else:
                    preimage = bytes.fromhex(payment.preimage)
            except InvalidOnion as exc:
                reason = f"bad onion: {exc}"
            if preimage is not None and payment is not None:
                flight.send(handle.peer_id, chan.fulfill_htlc(entry.htlc_id, preimage))
                if handle.monitor is not None:
                    self._note(handle, handle.monitor.provide_payment_preimage(preimage))
                flight.payments.append(PaymentRow(
                    payment_hash=payment.payment_hash, direction="in",
                    amount_msat=entry.amount_msat, status="succeeded", preimage=payment.preimage,
                    payment_secret=payment.payment_secret, detail=payment.detail))
            else:
                log.info("failing HTLC %d: %s", entry.htlc_id, reason)
                flight.send(handle.peer_id, chan.fail_htlc(entry.htlc_id, reason.encode()))

    def _resolve_payment(self, payment_hash: bytes, result: dict[str, Any]) -> None:
        batch = _open_batch()
        if batch is not None:  # report the payment once what proves it is durable
            batch.after.append(lambda: self._resolve_payment(payment_hash, result))
            return
        waiter = self._pay_waiters.pop(payment_hash, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(result)

    @staticmethod
    def _resolve(fut: asyncio.Future[str] | None, *, result: str | None = None,
                 error: str | None = None) -> None:
        batch = _open_batch()
        if batch is not None:  # the caller learns the outcome once it is durable and sent
            batch.after.append(lambda: Node._resolve(fut, result=result, error=error))
            return
        if fut is None or fut.done():
            return
        if error is not None:
            fut.set_exception(RejectedUpdate(error))
        else:
            fut.set_result(result or "")

    def _maybe_negotiate_close(self, handle: _Handle, flight: _Flight) -> None:
        chan = handle.channel
        if chan.counterparty_shutdown_script is not None and \
                chan.holder_shutdown_script is None and not chan.has_unsigned_changes() and \
                chan.state is ChannelState.SHUTTING_DOWN:
            # the peer's shutdown arrived while our updates were unsigned: answer it now
            flight.send(handle.peer_id, chan.shutdown(self._sweep_script))
        if chan.opener is Side.HOLDER and chan.ready_to_negotiate_close() and \
                chan.state is ChannelState.SHUTTING_DOWN:
            flight.send(handle.peer_id, chan.propose_closing())

    # -- chain -----------------------------------------------------------------------------

    async def _watch_chain(self) -> None:
        for handle in list(self.handles.values()):
            await self._check_funding_depth(handle)
        await self._catch_up_monitors()
        async for event in self.chain.events(from_height=self._height):
            if isinstance(event, BlockEvent):
                reorg = event.height <= self._height  # replayed after a reorg: undo the old branch
                self._height = event.height
                txs = [CTransaction.deserialize(raw) for raw in event.transactions]
                for handle in list(self.handles.values()):
                    await self._check_funding_depth(handle)
                    if handle.monitor is not None and not handle.monitor.is_resolved:
                        if reorg:
                            self._note(handle, handle.monitor.block_disconnected(event.height))
                        self._note(handle, handle.monitor.block_connected(event.height, txs))
                await self._rebroadcast_pending()
                await self._after_chain_event()
            elif isinstance(event, TxEvent):
                tx = CTransaction.deserialize(event.raw_tx)
                for handle in list(self.handles.values()):
                    if handle.monitor is not None and not handle.monitor.is_resolved:
                        self._note(handle, handle.monitor.transaction_seen(tx, None))
                await self._after_chain_event()

    async def _catch_up_monitors(self) -> None:
        """After a restart: replay the blocks the monitors have not seen (bounded look-back)."""
        tips = [h.monitor.tip_height for h in self.handles.values()
                if h.monitor is not None and not h.monitor.is_resolved]
        known = [t for t in tips if t is not None]
        if not tips:
            return
        start = min(known) + 1 if len(known) == len(tips) else max(0, self._height - 2016)
        for height in range(start, self._height + 1):
            block = await self.chain.block_at(height)
            txs = [CTransaction.deserialize(raw) for raw in block.transactions]
            for handle in self.handles.values():
                mon = handle.monitor
                if mon is None or mon.is_resolved:
                    continue
                tip = mon.tip_height
                if tip is None or tip < height:
                    self._note(handle, mon.block_connected(height, txs))
        for raw in await self.chain.mempool_transactions():
            tx = CTransaction.deserialize(raw)
            for handle in self.handles.values():
                if handle.monitor is not None and not handle.monitor.is_resolved:
                    self._note(handle, handle.monitor.transaction_seen(tx, None))
        await self._after_chain_event()

    async def _rebroadcast_pending(self) -> None:
        """Once a block, send again our claims that are out but still unconfirmed: bitcoind may
        have dropped them (a restart without its mempool, a reorg, eviction)."""
        for handle in self.handles.values():
            if handle.monitor is None:
                continue
            for claim in handle.monitor.claims_to_broadcast(self._height):
                if claim.txid_hex not in handle.broadcast:
                    continue
                try:
                    await self.chain.broadcast(handle.fee_bumped.get(claim.txid_hex)
                                               or claim.tx.serialize())
                except ChainError as exc:  # e.g. its input is gone: the monitor re-plans
                    log.info("claim %s not re-broadcast: %s", claim.txid_hex, exc)
                    if handle.fee_bumped.pop(claim.txid_hex, None) is not None:
                        handle.broadcast.discard(claim.txid_hex)  # fee inputs gone: re-fund

    async def _after_chain_event(self) -> None:
        """Broadcast what the monitors want now, and persist monitors that changed."""
        dirty = [h for h in self.handles.values() if h.monitor_dirty]
        for handle in self.handles.values():
            if handle.monitor is None:
                continue
            for claim in handle.monitor.claims_to_broadcast(self._height):
                if claim.txid_hex in handle.broadcast:
                    continue
                try:
                    raw = await self._with_fees(claim)
                    # the monitor follows a fee-bumped tx under its own txid: mark both sent
                    handle.broadcast.add(await self.chain.broadcast(raw))
                    handle.broadcast.add(claim.txid_hex)
                    if claim.fee_bump is not None:
                        handle.fee_bumped[claim.txid_hex] = raw
                    text = f"channel {handle.key[:8]}: broadcast {claim.description}"
                    self.events.append(text)
                    log.info("%s", text)
                except ChainError as exc:  # retried at the next block
                    log.info("claim %s not accepted yet: %s", claim.txid_hex, exc)
        if dirty:
            self._persist(_Flight(handles=dirty))

    async def _with_fees(self, claim: Claim) -> bytes:
        """``claim``'s tx, ready to send: a zero-fee anchors HTLC tx gets wallet fee inputs."""
        bump = claim.fee_bump
        if bump is None:
            raw: bytes = claim.tx.serialize()
            return raw
        funded = await self.chain.add_fee_inputs(
            bump.htlc_tx.tx.serialize(), external_input_weight=_htlc_input_weight(bump),
            feerate_sat_per_vb=-(-SWEEP_FEERATE_PER_KW * 4 // 1000))
        signed: bytes = bump.sign_htlc_input(CTransaction.deserialize(funded)).serialize()
        return signed

    async def _check_funding_depth(self, handle: _Handle) -> None:
        chan = handle.channel
        if chan.state is not ChannelState.AWAITING_LOCKIN or chan.channel_ready_sent:
            return
        assert chan.funding_outpoint is not None
        depth = await self.chain.confirmations(chan.funding_outpoint.txid_hex)
        if depth < chan.minimum_depth:
            return
        peer = self.peers.get(handle.peer_id)
        lock = peer.lock if peer is not None else asyncio.Lock()
        async with lock:
            flight = _Flight()
            flight.touch(handle)
            flight.send(handle.peer_id, chan.funding_locked())
            await self._complete(flight)

    async def _force_close(self, handle: _Handle, *, reason: str) -> str | None:
        chan = handle.channel
        if chan.lost_state:
            log.warning("channel %s: not broadcasting our commitment, the peer proved it stale "
                        "(%s); waiting for the peer's commitment", handle.key[:16], reason)
            chan.state = ChannelState.FORCE_CLOSING
            self._persist(_Flight(handles=[handle]))
            return None
        if chan.state in (ChannelState.CLOSED, ChannelState.CLOSING) or \
                not chan.holder_commitment_signature:
            chan.fail_channel()
            self._persist(_Flight(handles=[handle]))
            return None
        if chan.state is ChannelState.FORCE_CLOSING and chan.closing_tx is not None:
            return _txid_hex(chan.closing_tx)
        txs = chan.force_close()
        raw = txs.commitment_tx.serialize()
        chan.closing_tx = raw
        log.warning("channel %s force-closed: %s", handle.key[:16], reason)
        flight = _Flight(broadcasts=[raw])
        flight.touch(handle)
        await self._complete(flight)
        return _txid_hex(raw)

    # -- control commands --------------------------------------------------------------------

    async def cmd_info(self) -> dict[str, Any]:
        return {"name": self.settings.name, "node_id": self.node_id.hex(),
                "address": f"{self.node_id.hex()}@{self.settings.host}:{self.port}",
                "chain": self.chain.chain, "height": self._height,
                "peers": [p.hex() for p in self.peers],
                "channels": len(self.handles)}

    async def cmd_connect(self, peer: str) -> dict[str, Any]:
        node_hex, _, addr = peer.partition("@")
        host, _, port = addr.rpartition(":")
        node_id = bytes.fromhex(node_hex)
        await self.connect(node_id, host, int(port))
        return {"connected": node_hex}

    async def cmd_open(self, peer_id: str, amount_sat: int, push_msat: int = 0,
                       anchors: bool = False) -> dict[str, Any]:
        node_id = bytes.fromhex(peer_id)
        peer = self.peers.get(node_id)
        if peer is None:
            raise RejectedUpdate(f"not connected to {peer_id[:16]}…: connect first")
        fmt = CommitmentFormat.ANCHORS if anchors else CommitmentFormat.STATIC_REMOTEKEY
        keys = ChannelKeys.from_seed(secrets.token_bytes(32))
        chan, msg = Channel.open_outbound(
            keys=keys, config=self.settings.channel_config, funding_sat=int(amount_sat),
            push_msat=int(push_msat), feerate_per_kw=COMMITMENT_FEERATE_PER_KW,
            temporary_channel_id=secrets.token_bytes(32), commitment_format=fmt)
        handle = _Handle(key=chan.temporary_channel_id.hex(), peer_id=node_id, channel=chan,
                         opened=asyncio.get_running_loop().create_future())
        self.handles[handle.key] = handle
        async with peer.lock:
            flight = _Flight()
            flight.touch(handle)
            flight.send(node_id, msg)
            await self._complete(flight)
        assert handle.opened is not None
        funding_txid = await asyncio.wait_for(handle.opened, 30)
        return {"channel": handle.key, "channel_id": (chan.channel_id or b"").hex(),
                "funding_txid": funding_txid, "funding_sat": chan.funding_sat}

    async def cmd_invoice(self, amount_msat: int, description: str = "",
                          hold: bool = False) -> dict[str, Any]:
        preimage = secrets.token_bytes(32)
        payment_hash = hashlib.sha256(preimage).digest()
        secret = secrets.token_bytes(32)
        invoice = Invoice(payee_node_id=self.node_id, amount_msat=int(amount_msat),
                          payment_hash=payment_hash, payment_secret=secret,
                          min_final_cltv_expiry_delta=FINAL_CLTV_DELTA, description=description)
        self.store.commit_flight(payments=[PaymentRow(
            payment_hash=payment_hash.hex(), direction="in", amount_msat=int(amount_msat),
            status="pending", preimage=preimage.hex(), payment_secret=secret.hex(),
            detail=description)], kv=[(f"hold:{payment_hash.hex()}", "hold")] if hold else [])
        return {"invoice": invoice.encode(), "payment_hash": payment_hash.hex(),
                "amount_msat": int(amount_msat), "hold": bool(hold)}

    async def cmd_settle(self, payment_hash: str) -> dict[str, Any]:
        """Fulfil the HTLCs paying a hold invoice (``invoice --hold``)."""
        return await self._release_hold(payment_hash, "settle")

    async def cmd_cancel(self, payment_hash: str) -> dict[str, Any]:
        """Fail the HTLCs paying a hold invoice back to the payer."""
        return await self._release_hold(payment_hash, "cancel")

    async def _release_hold(self, payment_hash: str, decision: str) -> dict[str, Any]:
        key = f"hold:{payment_hash}"
        if self.store.get(key) != "hold":
            raise RejectedUpdate(f"no held invoice with payment hash {payment_hash[:16]}…")
        self.store.commit_flight(kv=[(key, decision)])
        released = 0
        for handle in list(self.handles.values()):
            chan = handle.channel
            if chan.log is None or not any(e.payment_hash.hex() == payment_hash
                                           for e in chan.htlcs_to_settle()):
                continue
            peer = self.peers.get(handle.peer_id)
            if peer is None or chan.state is not ChannelState.NORMAL:
                continue  # done at the next channel_reestablish
            async with peer.lock:
                flight = _Flight()
                flight.touch(handle)
                self._settle_incoming(handle, flight)
                self._sign_if_needed(handle, flight)
                await self._complete(flight)
            released += 1
        return {"payment_hash": payment_hash, "decision": decision, "channels": released}

    def _channel_with(self, node_id: bytes, channel: str | None = None) -> _Handle:
        for h in self._handles_of(node_id):
            if channel not in (None, h.key, (h.channel.channel_id or b"").hex()):
                continue
            if h.channel.state is ChannelState.NORMAL:
                return h
        raise RejectedUpdate(f"no usable channel with {node_id.hex()[:16]}…")

    async def cmd_pay(self, invoice: str, timeout_s: float = PAYMENT_TIMEOUT_S,
                      wait: bool = True) -> dict[str, Any]:
        """Pay ``invoice``; with ``wait`` False, return once the HTLC is sent and signed."""
        results = await self.pay_many([invoice], timeout_s=timeout_s, wait=wait)
        return results[0]

    async def pay_many(self, invoices: list[str], timeout_s: float = PAYMENT_TIMEOUT_S,
                       wait: bool = True) -> list[dict[str, Any]]:
        """Pay invoices to one peer as one batch: all HTLCs in one ``commitment_signed``."""
        decoded = [Invoice.decode(text) for text in invoices]
        payee = decoded[0].payee_node_id
        if any(inv.payee_node_id != payee for inv in decoded):
            raise RejectedUpdate("a batch pays a single peer")
        handle = self._channel_with(payee)
        peer = self.peers.get(payee)
        if peer is None:
            raise RejectedUpdate("the payee is not connected")
        async with peer.lock:
            flight = _Flight()
            outcomes = self._add_payments(handle, decoded, flight)
            self._sign_if_needed(handle, flight)
            await self._complete(flight)
        results: list[dict[str, Any]] = []
        for inv, outcome in zip(decoded, outcomes, strict=True):
            if isinstance(outcome, dict):
                results.append(dict(outcome))
            elif not wait:
                results.append({"status": "pending",
                                "reason": "sent; not waiting for the outcome"})
            else:
                try:
                    results.append(await asyncio.wait_for(outcome, timeout_s))
                except TimeoutError:
                    self._pay_waiters.pop(inv.payment_hash, None)
                    results.append({"status": "pending", "reason": "timed out waiting"})
            results[-1]["payment_hash"] = inv.payment_hash.hex()
        return results

    def _add_payments(self, handle: _Handle, decoded: list[Invoice], flight: _Flight,
                      ) -> list[dict[str, Any] | asyncio.Future[dict[str, Any]]]:
        """Add one HTLC per invoice to ``flight`` (not signed yet); one outcome per invoice.

        Refused ones fail here and now; an add that raises changes nothing (the state
        machine's contract), so the HTLCs added before it still go out, and none is lost.
        """
        outcomes: list[dict[str, Any] | asyncio.Future[dict[str, Any]]] = []
        loop = asyncio.get_running_loop()
        flight.touch(handle)
        cltv = self._height + FINAL_CLTV_DELTA
        payee = handle.peer_id
        for inv in decoded:
            previous = self.store.payment(inv.payment_hash.hex())
            if inv.payment_hash in self._pay_waiters:
                outcomes.append({"status": "failed",
                                 "reason": "a payment for this invoice is in flight"})
                continue
            if previous is not None and previous.direction == "out" and \
                    previous.status == "succeeded":
                outcomes.append({"status": "failed", "reason": "this invoice is already "
                                 "paid (we hold its preimage)"})
                continue
            onion = build_single_hop_onion(
                session_key=secrets.token_bytes(32), node_id=payee,
                amt_to_forward=inv.amount_msat, outgoing_cltv_value=cltv,
                payment_secret=inv.payment_secret, total_msat=inv.amount_msat,
                payment_hash=inv.payment_hash)
            try:
                add = handle.channel.add_htlc(
                    amount_msat=inv.amount_msat, payment_hash=inv.payment_hash,
                    cltv_expiry=cltv, onion_routing_packet=onion)
            except RejectedUpdate as exc:
                outcomes.append({"status": "failed", "reason": str(exc)})
                continue
            flight.send(payee, add)
            flight.payments.append(PaymentRow(
                payment_hash=inv.payment_hash.hex(), direction="out",
                amount_msat=inv.amount_msat, status="pending"))
            waiter: asyncio.Future[dict[str, Any]] = loop.create_future()
            self._pay_waiters[inv.payment_hash] = waiter
            outcomes.append(waiter)
        return outcomes

    async def pay_pipeline(self, invoices: list[str], batch_size: int = 1,
                           timeout_s: float = PAYMENT_TIMEOUT_S) -> _Pipeline:
        """Pay ``invoices`` (one payee) in batches of ``batch_size``, one batch in flight."""
        decoded = [Invoice.decode(text) for text in invoices]
        if not decoded or any(inv.payee_node_id != decoded[0].payee_node_id
                              for inv in decoded):
            raise RejectedUpdate("a pipeline pays one peer at least one invoice")
        handle = self._channel_with(decoded[0].payee_node_id)
        peer = self.peers.get(handle.peer_id)
        if peer is None:
            raise RejectedUpdate("the payee is not connected")
        if handle.key in self._pipelines:
            raise RejectedUpdate("a payment pipeline already runs on this channel")
        pipeline = _Pipeline(handle=handle, invoices=decoded, batch_size=max(1, batch_size),
                             done=asyncio.get_running_loop().create_future())
        self._pipelines[handle.key] = pipeline
        try:
            async with peer.lock:
                flight = _Flight()
                self._start_pipeline_batch(pipeline, flight)
                self._sign_if_needed(handle, flight)
                await self._complete(flight)
            await asyncio.wait_for(asyncio.shield(pipeline.done), timeout_s)
        finally:
            self._pipelines.pop(handle.key, None)
        return pipeline

    def _start_pipeline_batch(self, pipeline: _Pipeline, flight: _Flight) -> None:
        """Add the pipeline's next batch to ``flight``; resolve it when nothing is left."""
        while not pipeline.outstanding and pipeline.next_index < len(pipeline.invoices):
            first = pipeline.next_index
            batch = pipeline.invoices[first:first + pipeline.batch_size]
            pipeline.next_index += len(batch)
            for inv, outcome in zip(batch, self._add_payments(pipeline.handle, batch, flight),
                                    strict=True):
                if isinstance(outcome, dict):
                    pipeline.failed += 1
                else:
                    pipeline.outstanding.add(inv.payment_hash)
        if not pipeline.outstanding and not pipeline.done.done():
            def finish() -> None:
                if not pipeline.done.done():
                    pipeline.done.set_result(None)

            flight.after.append(finish)

    async def _advance_pipeline(self, handle: _Handle, payment_hash: bytes,
                                succeeded: bool) -> None:
        """A payment of a pipeline resolved: once its batch is all resolved, start the next
        batch in this same flight (its HTLCs go out with this flight's commitment_signed)."""
        pipeline = self._pipelines.get(handle.key)
        if pipeline is None or payment_hash not in pipeline.outstanding:
            return
        pipeline.outstanding.discard(payment_hash)
        if succeeded:
            pipeline.succeeded += 1
        else:
            pipeline.failed += 1
        if not pipeline.outstanding:
            flight = _Flight()
            self._start_pipeline_batch(pipeline, flight)
            await self._complete(flight)

    async def cmd_channels(self) -> list[dict[str, Any]]:
        out = []
        for h in self.handles.values():
            chan = h.channel
            entry: dict[str, Any] = {
                "channel": h.key, "peer_id": h.peer_id.hex(), "state": chan.state.value,
                "channel_id": (chan.channel_id or b"").hex(), "funding_sat": chan.funding_sat,
                "funding_outpoint": str(chan.funding_outpoint) if chan.funding_outpoint else None,
                "opener": chan.opener.value, "commitment_format": chan.commitment_format.value,
                "to_self_delay": chan.holder_params.to_self_delay,
            }
            if chan.log is not None:
                entry.update({
                    "local_msat": chan.balance_msat(Side.HOLDER),
                    "remote_msat": chan.balance_msat(Side.COUNTERPARTY),
                    "htlcs": len(chan.htlcs_in_flight()),
                    "holder_commitment_number": chan.holder_commitment_number,
                    "counterparty_commitment_number": chan.counterparty_commitment_number})
            if chan.closing_tx is not None:
                entry["closing_txid"] = CTransaction.deserialize(chan.closing_tx).GetTxid()[
                    ::-1].hex()
            out.append(entry)
        return out

    async def cmd_balance(self) -> dict[str, Any]:
        offchain = sum(h.channel.balance_msat() for h in self.handles.values()
                       if h.channel.log is not None and h.channel.state in (
                           ChannelState.NORMAL, ChannelState.SHUTTING_DOWN,
                           ChannelState.NEGOTIATING_CLOSE, ChannelState.AWAITING_LOCKIN))
        return {"onchain_sat": await self.chain.wallet_balance_sat(), "offchain_msat": offchain}

    async def cmd_close(self, channel: str) -> dict[str, Any]:
        handle = self._find(channel)
        peer = self.peers.get(handle.peer_id)
        if peer is None:
            raise RejectedUpdate("the peer is offline: use force-close")
        script = await self.chain.new_script_pubkey()
        handle.closed = asyncio.get_running_loop().create_future()
        async with peer.lock:
            flight = _Flight()
            flight.touch(handle)
            flight.send(handle.peer_id, handle.channel.shutdown(script))
            self._maybe_negotiate_close(handle, flight)
            await self._complete(flight)
        txid = await asyncio.wait_for(handle.closed, 30)
        return {"channel": handle.key, "closing_txid": txid}

    async def cmd_force_close(self, channel: str) -> dict[str, Any]:
        handle = self._find(channel)
        txid = await self._force_close(handle, reason="requested by the user")
        if txid is None:
            raise RejectedUpdate("the channel has no commitment to broadcast")
        return {"channel": handle.key, "commitment_txid": txid,
                "to_self_delay": handle.channel._peer.to_self_delay}

    async def cmd_cheat(self, channel: str, state: int, htlc_txs: bool = False,
                        sweep: bool = False) -> dict[str, Any]:
        """Broadcast our revoked commitment ``state``; with ``htlc_txs`` also its HTLC txs,
        with ``sweep`` the sweep of its to_local (valid once to_self_delay has passed). Each
        may be asked for again later (a tx the chain or mempool already holds is fine)."""
        require_regtest(self.chain.chain, "cheat")
        if not self.settings.allow_cheating:
            raise UnsafeOperation("this node was not started with --allow-cheating, so it kept "
                                  "no revoked commitments to broadcast")
        handle = self._find(channel)
        raw = self._cheat_archive.get(handle.key, {}).get(int(state))
        if raw is None:
            raise RejectedUpdate(f"no archived commitment #{state} for this channel")
        if not (htlc_txs or sweep):
            txid = await self.chain.broadcast(raw)
            return {"channel": handle.key, "revoked_commitment_txid": txid, "state": int(state)}
        extras = self._cheat_extras.get(handle.key, {}).get(int(state),
                                                            {"htlc_txs": [], "to_local_sweep": ""})
        result: dict[str, Any] = {"channel": handle.key, "state": int(state),
                                  "revoked_commitment_txid": _txid_hex(raw),
                                  "commitment": await self._cheat_broadcast(raw)}
        if htlc_txs:
            result["htlc_txs"] = [await self._cheat_broadcast(bytes.fromhex(t))
                                  for t in extras["htlc_txs"]]
        if sweep and extras["to_local_sweep"]:
            result["to_local_sweep"] = await self._cheat_broadcast(
                bytes.fromhex(extras["to_local_sweep"]))
        return result

    async def _cheat_broadcast(self, raw: bytes) -> dict[str, Any]:
        txid = _txid_hex(raw)
        try:
            await self.chain.broadcast(raw)
        except ChainError as exc:  # any rejection: reported to the cheater, who may retry
            if await self.chain.confirmations(txid) > 0:
                return {"txid": txid, "accepted": True, "confirmed": True}
            return {"txid": txid, "accepted": False, "error": str(exc)}
        return {"txid": txid, "accepted": True, "confirmed": False}

    async def cmd_update_fee(self, channel: str, feerate_per_kw: int) -> dict[str, Any]:
        """Change a channel's commitment feerate (we must be the opener): update_fee + sign."""
        handle = self._find(channel)
        peer = self.peers.get(handle.peer_id)
        if peer is None:
            raise RejectedUpdate("the peer is offline")
        async with peer.lock:
            flight = _Flight()
            flight.touch(handle)
            flight.send(handle.peer_id, handle.channel.update_fee(int(feerate_per_kw)))
            self._sign_if_needed(handle, flight)
            await self._complete(flight)
        return {"channel": handle.key, "feerate_per_kw": int(feerate_per_kw)}

    async def cmd_events(self) -> list[str]:
        """What the chain monitors noticed and did since this node started."""
        return list(self.events)

    async def cmd_claimable(self) -> list[dict[str, Any]]:
        """Per channel, what we can still get on chain and from which height."""
        out = []
        for h in self.handles.values():
            if h.monitor is None:
                continue
            for b in h.monitor.claimable_balances():
                out.append({"channel": h.key, "status": b.status.value,
                            "amount_sat": b.amount_sat,
                            "claimable_from_height": b.claimable_from_height,
                            "description": b.description})
        return out

    async def cmd_stop(self) -> dict[str, Any]:
        asyncio.get_running_loop().call_soon(self._stopping.set)
        return {"stopping": True}

    def _find(self, channel: str) -> _Handle:
        for h in self.handles.values():
            if channel in (h.key, (h.channel.channel_id or b"").hex()) or \
                    (len(channel) >= 8 and (h.key.startswith(channel) or
                                            (h.channel.channel_id or b"").hex().startswith(
                                                channel))):
                return h
        raise RejectedUpdate(f"no channel {channel}")

    async def cmd_add_tower(self, address: str) -> dict[str, Any]:
        """Upload a justice kit per revoked state to the tower ``tower_id@host:port``."""
        return self.towers.add(address)

    async def cmd_towers(self) -> list[dict[str, Any]]:
        """Our watchtowers: connection, uploads, states not acknowledged yet."""
        return self.towers.status()


    def _monitor_of(self, key: str) -> ChannelMonitor | None:
        handle = self.handles.get(key)
        return None if handle is None else handle.monitor

    async def cmd_pay_batch(self, invoices: list[str]) -> list[dict[str, Any]]:
        """Pay several invoices to one peer with one commitment_signed."""
        return await self.pay_many(invoices)

    # -- benchmark commands (``make bench``): timed inside the node, not through this socket --

    async def cmd_invoices(self, count: int, amount_msat: int,
                           description: str = "") -> dict[str, Any]:
        """``count`` invoices of ``amount_msat`` each, stored in one transaction."""
        invoices: list[str] = []
        rows: list[PaymentRow] = []
        for _ in range(int(count)):
            preimage = secrets.token_bytes(32)
            payment_hash = hashlib.sha256(preimage).digest()
            secret = secrets.token_bytes(32)
            invoices.append(Invoice(
                payee_node_id=self.node_id, amount_msat=int(amount_msat),
                payment_hash=payment_hash, payment_secret=secret,
                min_final_cltv_expiry_delta=FINAL_CLTV_DELTA, description=description).encode())
            rows.append(PaymentRow(
                payment_hash=payment_hash.hex(), direction="in", amount_msat=int(amount_msat),
                status="pending", preimage=preimage.hex(), payment_secret=secret.hex(),
                detail=description))
        self.store.commit_flight(payments=rows)
        return {"invoices": invoices}

    async def cmd_bench_pay(self, invoices_path: str, batch_size: int = 1,
                            timeout_s: float = PAYMENT_TIMEOUT_S) -> dict[str, Any]:
        """Pay the invoices in a file (one per line), ``batch_size`` HTLCs per
        ``commitment_signed``, one batch in flight at a time, timed with this node's clock.

        ``paid_s`` ends when the last preimage arrives; ``settled_s`` when the channel is
        quiescent again (every HTLC removed from both commitments, nothing left to sign)."""
        invoices = Path(invoices_path).read_text().split()
        if not invoices:
            raise RejectedUpdate("no invoices to pay")
        size = max(1, int(batch_size))
        handle = self._channel_with(Invoice.decode(invoices[0]).payee_node_id)
        loop = asyncio.get_running_loop()
        cpu_before = os.times()
        started = loop.time()
        pipeline = await self.pay_pipeline(invoices, size, timeout_s=timeout_s)
        succeeded = pipeline.succeeded
        paid = loop.time() - started
        chan = handle.channel
        deadline = loop.time() + timeout_s
        while chan.htlcs_in_flight() or chan.awaiting_revoke_and_ack or \
                chan.has_unsigned_changes():
            if loop.time() > deadline:
                raise TimeoutError("the channel did not become quiescent")
            await asyncio.sleep(0.0005)
        settled = loop.time() - started
        cpu_after = os.times()
        cpu = (cpu_after.user - cpu_before.user) + (cpu_after.system - cpu_before.system)
        return {"payments": len(invoices), "succeeded": succeeded, "batch_size": size,
                "paid_s": paid, "settled_s": settled, "cpu_s": cpu,
                "holder_commitment_number": chan.holder_commitment_number}

    # The control commands (channel.control_api.NODE_COMMANDS) -> the method answering each.
    _COMMANDS: ClassVar[dict[str, str]] = {
        "info": "cmd_info", "connect": "cmd_connect", "open": "cmd_open",
        "invoice": "cmd_invoice", "pay": "cmd_pay", "pay-batch": "cmd_pay_batch",
        "settle": "cmd_settle", "cancel": "cmd_cancel", "channels": "cmd_channels",
        "balance": "cmd_balance", "claimable": "cmd_claimable", "events": "cmd_events",
        "close": "cmd_close", "force-close": "cmd_force_close", "update-fee": "cmd_update_fee",
        "cheat": "cmd_cheat", "add-tower": "cmd_add_tower", "towers": "cmd_towers",
        "invoices": "cmd_invoices", "pay-pipeline": "cmd_bench_pay", "stop": "cmd_stop",
    }
