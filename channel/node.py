"""I/O: the node daemon: glues the channel manager to peers, SQLite, the chain and a control socket.

The decisions live in pure code: :class:`~channel.manager.ChannelManager` (channels, payments)
turns each event into :class:`~channel.effects.Effects`. This shell feeds it events from the
:class:`~channel.peers.PeerManager` (peer messages), the
:class:`~channel.chain_watcher.ChainWatcher` (blocks, mempool) and the control socket
(:data:`channel.control_api.NODE_COMMANDS`), and carries out each flight's effects in the
node's safety order: persist in one SQLite transaction (``channel.store``), then send (one
write per peer), then broadcast, then answer the callers waiting. The chain is injected
(``channel.chain.ChainBackend``), so this module never imports ``regtest``.

Reactions follow the exception tree of ``channel.errors``: a message that cannot be decoded
gets a ``warning`` and a disconnect (the peer manager); a ``PeerProtocolError`` on a channel an
``error`` and a force-close; a ``RejectedUpdate`` from a local command is that command's
answer and changes nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import coincurve

from channel.chain import ChainBackend, require_regtest
from channel.chain_view import ChainView, ChainViewStatus, default_max_tip_age_s
from channel.chain_watcher import ChainWatcher
from channel.channel_basics import ChannelConfig
from channel.control_api import NODE_COMMANDS
from channel.daemon import DaemonShell
from channel.effects import Effects, OpenResolved, PaymentResolved, PipelineDone, ShutdownResolved
from channel.errors import ChainError, PeerProtocolError, RejectedUpdate
from channel.gossip_io import GossipShell
from channel.manager import (
    COMMITMENT_FEERATE_PER_KW,
    SWEEP_FEERATE_PER_KW,
    ChannelManager,
    closes_under_way,
    txid_hex,
)
from channel.node_control import NodeControl
from channel.node_policy import NodePolicy
from channel.node_restore import open_store, restore_manager
from channel.outbox import Outbox
from channel.payments import FINAL_CLTV_DELTA
from channel.peers import PeerManager
from channel.seeded import seeded_secret
from channel.tasks import BackgroundTasks
from channel.tower_client import WatchtowerClient
from channel.trace_log import TraceLog

if TYPE_CHECKING:
    from channel.cheat import CheatMode
    from channel.monitor import ChannelMonitor

__all__ = ["COMMITMENT_FEERATE_PER_KW", "FINAL_CLTV_DELTA", "SWEEP_FEERATE_PER_KW", "Node",
           "NodeSettings"]

log = logging.getLogger("chanlab.node")

FUNDING_FEERATE_SAT_PER_VB = 2
#: test hook: a message name (e.g. ``revoke_and_ack``); the node process dies (as by kill -9,
#: no cleanup) right after persisting a flight that would send such a message, before sending
#: it, so a test proves that what was persisted is enough to recover
CRASH_BEFORE_SEND_ENV = "CHANLAB_TEST_CRASH_BEFORE_SEND"
CRASH_EXIT_CODE = 86


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
    # every message already received from a peer joins one flight (one fsync, one write);
    # off: one flight per message
    coalesce_flights: bool = True
    # what we charge and the delay we keep to forward an HTLC (our channel_update, BOLT 7)
    forwarding_policy: NodePolicy = field(default_factory=NodePolicy)
    # start with a new, empty node.db beside a key that already exists (the operator's word
    # that this key has no channel to forget)
    allow_fresh_db: bool = False
    # the chain view goes stale when the tip is older than this (None: the chain's default,
    # see channel.chain_view); no new HTLCs while it is
    max_tip_age_s: float | None = None
    # regtest teaching runs: keys and randomness from this seed (channel.seeded), not the OS
    seed: bytes | None = None


class Node:
    """A long-lived chanlab node. ``await node.start()``, then ``await node.serve_forever()``."""

    def __init__(self, settings: NodeSettings, chain: ChainBackend) -> None:
        self.settings = settings
        self.chain = chain
        self.control = NodeControl(self)
        # a seeded node's key is written here, new: a fresh database beside it is right
        seeded_new = settings.seed is not None and \
            _write_seeded_key(settings.home / "node_key", settings.seed)
        self.shell = DaemonShell(settings.home, info_file="node.json", key_file="node_key",
                                 commands=NODE_COMMANDS, handlers=self.control.handlers())
        self._secret = self.shell.secret
        self.node_id: bytes = coincurve.PrivateKey(self._secret).public_key.format(True)
        self.store = open_store(self.shell, settings.home / "node.db",
                                allow_fresh=settings.allow_fresh_db or seeded_new)
        self.outbox = Outbox(chain, self.store)
        self._crash_before = os.environ.get(CRASH_BEFORE_SEND_ENV)   # a test hook, read once
        self._tasks = BackgroundTasks(log)
        self.trace = TraceLog(settings.home / "trace.log")
        self.peers = PeerManager(node_secret=self._secret, handler=self, tasks=self._tasks,
                                 remember=self._remember_peer,
                                 coalesce=settings.coalesce_flights, tap=self.trace.record,
                                 wanted=lambda peer_id: peer_id in self._m.peers_wanted())
        self.manager: ChannelManager | None = None
        self.port = settings.port
        self.cheat: CheatMode | None = None
        self.pay_waiters: dict[bytes, asyncio.Future[dict[str, Any]]] = {}
        self._waiters: dict[tuple[type, str], asyncio.Future[str]] = {}
        self._logged = 0
        self.chain_view: ChainView | None = None   # the circuit breaker, made at start
        self.towers = WatchtowerClient(node_secret=self._secret, store=self.store,
                                       monitor_of=self._monitor_of)

    @property
    def _m(self) -> ChannelManager:
        assert self.manager is not None, "the node is not started"
        return self.manager

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if self.settings.allow_cheating:
            require_regtest(self.chain.chain, "--allow-cheating")
        height = await self.chain.height()
        sweep = self.store.get("sweep_script")
        if sweep is None:
            sweep = (await self.chain.new_script_pubkey()).hex()
            self.store.commit_flight(kv=[("sweep_script", sweep)])
        if self.settings.seed is not None:
            require_regtest(self.chain.chain, "--seed")
        self.manager = restore_manager(self.store, node_id=self.node_id, secret=self._secret,
                                       config=self.settings.channel_config,
                                       sweep_script=bytes.fromhex(sweep), height=height,
                                       seed=self.settings.seed,
                                       policy=self.settings.forwarding_policy)
        handles = list(self.manager.handles.values())
        if self.settings.allow_cheating:
            from channel.cheat import CheatMode  # loaded only on regtest, when asked for
            self.cheat = CheatMode(self.chain, self.store, self.manager)
        self.port = await self.peers.listen(self.settings.host, self.settings.port)
        self.gossip_io = GossipShell(self, self._tasks.spawn)   # the graph, from disk
        await self.shell.open_control()
        self.shell.publish({"name": self.settings.name, "node_id": self.node_id.hex(),
                            "host": self.settings.host, "port": self.port,
                            "chain": self.chain.chain})
        self.chain_view = ChainView(
            max_tip_age_s=self.settings.max_tip_age_s or default_max_tip_age_s(self.chain.chain),
            now_s=time.time())
        watcher = ChainWatcher(self.chain, self.manager, check_funding=self._check_funding,
                               persist_monitors=self._persist_monitors,
                               chain_view=self.chain_view, on_chain_view=self._chain_view_changed)
        self._tasks.spawn(watcher.run(height))
        self._tasks.spawn(watcher.watch_tip_age(min(1.0, self.chain_view.max_tip_age_s / 4)))
        known = [(p, a) for p in self.manager.peers_wanted()
                 if (a := self.store.get(f"peer:{p.hex()}")) is not None]
        self.peers.reconnect(known)
        self._tasks.spawn(self.outbox.run())
        self.towers.start(((h.key, h.monitor) for h in handles if h.monitor is not None),
                          self.settings.towers)
        log.info("node %s (%s) listening on %s:%d", self.settings.name, self.node_id.hex(),
                 self.settings.host, self.port)

    def _chain_view_changed(self, status: ChainViewStatus) -> None:
        """One log line per transition; payments refuse new HTLCs while stale."""
        (log.warning if status.stale else log.info)("%s", status.describe())
        self._m.payments.chain_view_refusal = status.refusal()

    def request_stop(self) -> None:
        """Ask :meth:`serve_forever` to stop the node (safe from a signal handler)."""
        self.shell.stopping.set()

    async def serve_forever(self) -> None:
        await self.shell.stopping.wait()
        await self.stop()

    async def stop(self) -> None:
        self.shell.close()
        await self.peers.close()
        await self._tasks.cancel_all()
        await self.towers.stop()
        await self.chain.aclose()
        self.store.close()
        self.shell.release_lock()
        self.trace.close()

    # -- carrying out a flight -------------------------------------------------------------

    async def complete(self, fx: Effects) -> None:
        """Persist a flight, then send its messages (one write per peer), then broadcast, then
        answer whoever waits for its outcomes."""
        self.gossip_io.after_flight()   # chain lookups gossip asked for: tasks of their own
        if fx.empty:
            return
        records = self._m.flight_records(fx)
        kv = records.kv + (self.cheat.archive(fx.touched) if self.cheat is not None else []) + \
            self.outbox.rows(fx.broadcasts)
        for key, updates in records.revealed:
            self.towers.note_updates(key, updates)  # uploads happen in the background
        self.store.commit_flight(channels=records.channels, monitors=records.monitors,
                                 monitor_updates=records.monitor_updates, kv=kv,
                                 payments=records.payments, forwards=records.forwards,
                                 forget=[key for key, _ in fx.forgotten])
        crash_at = self._crash_before
        if crash_at and any(getattr(m, "NAME", "") == crash_at for _, m in fx.outgoing):
            log.warning("test hook %s: dying after the persist, before the send", crash_at)
            os._exit(CRASH_EXIT_CODE)
        by_peer: dict[bytes, list[bytes]] = {}
        if fx.outgoing:   # a message built or answered: its module is loaded (idle node RSS)
            from channel.messages import encode_message
        for peer_id, message in fx.outgoing:
            by_peer.setdefault(peer_id, []).append(encode_message(message))
        for peer_id, encoded in by_peer.items():
            await self.peers.send_many(peer_id, encoded)
        for handle in fx.touched if by_peer else ():  # next commitments' keys as peers answer
            asyncio.get_running_loop().call_soon(handle.channel.warm_next_commitments)
        for raw in fx.broadcasts:   # durable in the outbox: a failure is retried
            await self.outbox.send(raw)
        for key, funding_tx in fx.forgotten:
            if funding_tx is not None:   # built and locked, never broadcast: spendable again
                try:
                    await self.chain.release_inputs(funding_tx)
                except ChainError as exc:
                    log.warning("inputs of channel %s stay locked: %s", key[:16], exc)
        for done in fx.resolutions:
            self._resolve(done)
        if fx.depth_checks:  # after the peer's turn: channel_ready takes the peer's lock
            self._tasks.spawn(self._check_funding())
        if fx.retries:  # after this turn too: a new route may start with any peer
            self._tasks.spawn(self._retry_payments(list(fx.retries)))
        self._log_events()

    async def _retry_payments(self, payment_hashes: list[bytes]) -> None:
        """Send failed payments on their next route, holding every connected peer's turn
        (in one order, as ``pay`` does), since the route may start with any of them."""
        async with self.peers.every_turn():
            fx = Effects()
            self._m.retry_payments(payment_hashes, fx)
            await self.complete(fx)

    def _resolve(self, done: PaymentResolved | OpenResolved | ShutdownResolved | PipelineDone,
                 ) -> None:
        if isinstance(done, PaymentResolved):
            waiter = self.pay_waiters.pop(done.payment_hash, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(done.result)
            return
        future = self._waiters.pop((type(done), done.key), None)
        if future is None or future.done():
            return
        if isinstance(done, OpenResolved | ShutdownResolved) and done.error:
            future.set_exception(RejectedUpdate(done.error))
        else:
            future.set_result(done.funding_txid if isinstance(done, OpenResolved) else
                              done.closing_txid if isinstance(done, ShutdownResolved) else "")

    def waiter(self, kind: type, key: str) -> asyncio.Future[str]:
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._waiters[(kind, key)] = future
        return future

    def _log_events(self) -> None:
        for text in self._m.events[self._logged:]:
            log.info("%s", text)
        self._logged = len(self._m.events)

    async def _persist_monitors(self) -> None:
        async with self.peers.every_turn():   # it may fulfil, fail or sign toward any peer
            fx = Effects()
            self._m.dirty_monitors(fx)
            await self.complete(fx)

    async def _check_funding(self) -> None:
        """channel_ready for the channels whose funding tx is deep enough now; the
        short_channel_id of those confirmed."""
        for key, txid in self._m.awaiting_lockin():
            depth = await self.chain.confirmations(txid)
            async with self.peers.lock_of(self._m.handles[key].peer_id):
                fx = Effects()
                self._m.funding_depth(key, depth, fx)
                await self.complete(fx)
        await self.learn_short_channel_ids()

    async def learn_short_channel_ids(self) -> None:
        """BOLT 7 ``short_channel_id`` = funding block height x tx index x output index, read
        from the chain once the funding tx confirmed (for route hints and routes)."""
        if not self._m.handles:
            return   # no channel: the payer (and routing) stays unloaded, as an idle node's
        from channel.gossip import ShortChannelId
        for key, txid in self._m.payer.scids_wanted():
            try:
                depth = await self.chain.confirmations(txid)
                if depth < 1:
                    continue
                height = await self.chain.height() - depth + 1
                block = await self.chain.block_at(height)
            except ChainError as exc:
                log.info("short_channel_id of %s not known yet: %s", key[:16], exc)
                continue
            txids = [txid_hex(raw) for raw in block.transactions]
            outpoint = self._m.handles[key].channel.funding_outpoint
            if txid not in txids or outpoint is None:
                continue  # a reorg between the two calls: the next block tries again
            fx = Effects()
            self._m.payer.set_short_channel_id(
                key, ShortChannelId(height, txids.index(txid), outpoint.vout), fx)
            await self.complete(fx)

    # -- from the peer manager (channel.peers.PeerHandler) ---------------------------------

    def _remember_peer(self, peer_id: bytes, address: str) -> None:
        self.store.commit_flight(kv=[(f"peer:{peer_id.hex()}", address)])

    async def peer_connected(self, peer_id: bytes) -> None:
        from channel.wire import Feature  # loaded by the connection (idle node RSS)
        fx = Effects()
        self._m.peer_connected(peer_id, fx, gossip_queries=self.peers.features_of(
            peer_id).offers(Feature.GOSSIP_QUERIES))
        await self.complete(fx)

    async def peer_disconnected(self, peer_id: bytes) -> None:
        interrupted = closes_under_way(self._m.handles_of(peer_id))
        fx = Effects()
        self._m.peer_disconnected(peer_id, fx)
        await self.complete(fx)
        for key in interrupted:   # a waiting `close` fails now, not after its timeout
            self._resolve(ShutdownResolved(key, "", error=(
                "the peer disconnected during the close negotiation (it resumes when the "
                "peer reconnects); try `close` again, or `force-close`")))

    async def deliver(self, peer_id: bytes, message: Any, fx: Effects) -> None:
        from channel.messages import Shutdown  # loaded by the decoder: a dict lookup
        from channel.wire import ErrorMessage, WarningMessage
        if isinstance(message, WarningMessage | ErrorMessage):
            log.warning("peer %s sent %s: %s", peer_id.hex()[:16],
                        type(message).__name__, message.text)
        script = await self.chain.new_script_pubkey() if isinstance(message, Shutdown) else None
        try:
            self._m.handle_message(peer_id, message, fx, fresh_script=script)
            while fx.funding:
                need = fx.funding.pop(0)
                try:
                    funding = await self.chain.fund_output(
                        need.script_pubkey, need.amount_sat, FUNDING_FEERATE_SAT_PER_VB)
                except ChainError as exc:
                    log.warning("cannot fund channel %s: %s", need.key[:16], exc)
                    self._m.funding_failed(need.key, str(exc), fx)
                    continue
                self._m.funded(need.key, txid=funding.txid, vout=funding.vout,
                               raw_tx=funding.raw_tx, fx=fx)
        except PeerProtocolError as exc:
            log.warning("peer %s protocol error: %s", peer_id.hex()[:16], exc)
            await self.flush(fx)
            channel_id = getattr(message, "channel_id", None) or \
                getattr(message, "temporary_channel_id", None)
            failed = Effects()
            self._m.fail_channel(peer_id, channel_id, str(exc), failed)
            await self.complete(failed)

    async def end_batch(self, fx: Effects) -> None:
        self._m.end_of_batch(fx)
        await self.complete(fx)

    async def flush(self, fx: Effects) -> None:
        await self.complete(fx.take())

    def _monitor_of(self, key: str) -> ChannelMonitor | None:
        handle = self.manager.handles.get(key) if self.manager is not None else None
        return None if handle is None else handle.monitor


def _write_seeded_key(path: Path, seed: bytes) -> bool:
    """The node key of a seeded node, written once (mode 0600) before the shell reads it;
    True if written now."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(seeded_secret(seed, "node key").hex() + "\n")
    return True
