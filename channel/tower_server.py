"""I/O: the watchtower daemon: stores clients' encrypted justice kits, punishes breaches alone.

The shell around :class:`channel.tower.Watchtower` (decisions) and
:class:`channel.tower_store.SqliteTowerStore` (durable state). The chain is injected
(``channel.chain.ChainBackend``), so this module never imports ``regtest``.

* Clients connect over BOLT 8; the handshake authenticates their static key (their node id),
  and an upload is accepted only when its signing key is that same key and the operator has
  registered it (``register`` on the control socket: ``chanlab tower register NAME NODE``).
  After both ``init`` messages, uploads and acks are the odd messages of
  :mod:`channel.tower_wire`; an ack is sent only once the blob is committed to SQLite.
* Every mempool transaction (bitcoind's ZMQ ``rawtx``, backed by polling) and every block
  transaction goes through :meth:`Watchtower.on_raw_transaction`. A justice transaction found
  is recorded first (so a crash cannot lose it) and broadcast at once; unconfirmed ones are
  rebroadcast at every block until they confirm, or until another transaction (the client's own
  penalty, say) spends their input in a block.
* The last scanned block is a bookmark in the same database: after a restart the tower scans
  the blocks it missed (from a few blocks before the bookmark, for reorgs) and the mempool
  before it follows new events, so a breach that happened while it was down is still punished.

Control: a Unix socket ``<home>/control.sock`` takes one JSON object per line,
``{"cmd": "...", "args": {...}}`` and answers ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": "..."}``: ``info``, ``register`` (``client_id``), ``events``,
``justice`` (the justice txs made since the start, each with its ``status``: ``new``,
``broadcast``, ``not accepted: ...``, ``confirmed at height H``, ``superseded by TXID``),
``stop``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import coincurve
from bitcoin.core import CTransaction

from channel.chain import BlockEvent, ChainBackend, TxEvent
from channel.control_api import TOWER_COMMANDS
from channel.daemon import DaemonShell
from channel.errors import (
    ChainError,
    ChanlabError,
    InvalidSignature,
    MalformedMessage,
    PeerProtocolError,
    UnknownEvenMessage,
)
from channel.messages import decode_message, encode_message
from channel.tasks import BackgroundTasks
from channel.tower import (
    SignedUpload,
    Watchtower,
    scan_raw_transaction,
)
from channel.tower_store import SqliteTowerStore
from channel.tower_wire import (
    TOWER_UPLOAD,
    AckStatus,
    TowerAck,
    decode_tower_message,
    encode_tower_ack,
)
from channel.transport import Transport, serve
from channel.wire import REGTEST_CHAIN_HASH, Features, Init, Ping, WarningMessage, pong_for

__all__ = ["TowerServer", "TowerSettings"]

log = logging.getLogger("chanlab.tower")

RESCAN_DEPTH = 6          # blocks re-read below the bookmark after a restart (reorg margin)
MAX_CATCH_UP = 2016       # blocks a restarted tower looks back at most
INIT_TIMEOUT_S = 10.0
_SUPERSEDED = -1          # confirmed_height of a justice tx whose input another tx took


@dataclass(frozen=True, slots=True, kw_only=True)
class TowerSettings:
    """Where a tower lives and listens."""

    name: str
    home: Path
    host: str = "127.0.0.1"
    port: int = 0


@dataclass(slots=True)
class _Pending:
    """An unconfirmed justice tx of ours and the outpoint it spends."""

    raw: bytes
    spends: tuple[bytes, int]


class TowerServer:
    """A long-lived watchtower. ``await tower.start()``, then ``await tower.serve_forever()``."""

    def __init__(self, settings: TowerSettings, chain: ChainBackend) -> None:
        self.settings = settings
        self.chain = chain
        self.shell = DaemonShell(settings.home, info_file="tower.json", key_file="tower_key",
                                 commands=TOWER_COMMANDS, handlers={
                                     "info": self.cmd_info, "register": self.cmd_register,
                                     "events": self.cmd_events, "justice": self.cmd_justice,
                                     "stop": self.cmd_stop})
        self._secret = self.shell.secret
        self.tower_id: bytes = coincurve.PrivateKey(self._secret).public_key.format(True)
        db_path = settings.home / "tower.db"
        if not db_path.exists():
            os.close(os.open(db_path, os.O_CREAT | os.O_WRONLY, 0o600))
        self.store = SqliteTowerStore(db_path)
        self.watchtower = Watchtower(self.store)
        self.port = settings.port
        self.events: list[str] = []      # what the tower saw and did, for `events`
        self.justice: list[dict[str, Any]] = []   # justice txs made since the start
        self._entries: dict[bytes, dict[str, Any]] = {}   # txid -> its entry in self.justice
        self._parents: dict[bytes, int] = {}   # txid -> how many watched outpoints it has
        self.uploads = {"accepted": 0, "duplicate": 0, "refused": 0, "unregistered": 0}
        self._pending: dict[bytes, _Pending] = {}   # txid -> unconfirmed justice tx
        self._watched: dict[tuple[bytes, int], bytes] = {}   # outpoint -> justice txid
        self._connected: dict[bytes, int] = {}
        self._scanned = -1
        self._server: asyncio.Server | None = None
        self._tasks = BackgroundTasks(log)

    @property
    def address(self) -> str:
        """``tower_id@host:port``: what a client is given (``--tower``)."""
        return f"{self.tower_id.hex()}@{self.settings.host}:{self.port}"

    # -- life cycle ------------------------------------------------------------------------

    async def start(self) -> None:
        for txid, raw in self.store.unconfirmed_justice():
            self._track(txid, raw)
        bookmark = self.store.get_meta("scanned_height")
        tip = await self.chain.height()
        self._scanned = tip if bookmark is None else max(
            int(bookmark) - RESCAN_DEPTH, tip - MAX_CATCH_UP, -1)
        if bookmark is None:   # first start: nothing before now concerns us, all after does
            self.store.set_meta("scanned_height", str(tip))
        self._server = await serve(self.settings.host, self.settings.port,
                                   local_static=self._secret, on_connection=self._on_client)
        self.port = self._server.sockets[0].getsockname()[1]
        await self.shell.open_control()
        self.shell.publish({"name": self.settings.name, "tower_id": self.tower_id.hex(),
                            "host": self.settings.host, "port": self.port,
                            "address": self.address, "chain": self.chain.chain})
        # Catch up before serving chain events: a breach mined while we were down is punished
        # from the blocks, one still in the mempool from the mempool.
        await self._catch_up(tip)
        self._spawn(self._watch_chain())
        log.info("tower %s (%s) listening on %s:%d, %d blob(s) stored, %d client(s)",
                 self.settings.name, self.tower_id.hex(), self.settings.host, self.port,
                 self.store.count_blobs(), len(self.store.clients()))

    def request_stop(self) -> None:
        """Ask :meth:`serve_forever` to stop (safe from a signal handler)."""
        self.shell.stopping.set()

    async def serve_forever(self) -> None:
        await self.shell.stopping.wait()
        await self.stop()

    async def stop(self) -> None:
        self.shell.close()
        if self._server is not None:
            self._server.close()
        await self._tasks.cancel_all()
        await self.chain.aclose()
        self.store.close()
        self.shell.release_lock()

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[Any]:
        return self._tasks.spawn(coro)

    def _say(self, text: str) -> None:
        self.events.append(text)
        log.info("%s", text)

    # -- clients ---------------------------------------------------------------------------

    async def _on_client(self, transport: Transport) -> None:
        client = transport.remote_pubkey
        short = client.hex()[:16]
        try:
            await transport.send(encode_message(Init.ours(Features())))
            first = decode_message(await asyncio.wait_for(transport.recv(), INIT_TIMEOUT_S))
            if not isinstance(first, Init):
                raise MalformedMessage("the first message must be init")
            if not first.supports_chain(REGTEST_CHAIN_HASH):
                raise MalformedMessage("client is on another chain")
        except (ChanlabError, EOFError, ConnectionError, TimeoutError,
                asyncio.IncompleteReadError) as exc:
            log.info("client %s rejected during init: %s", short, exc)
            return
        self._connected[client] = self._connected.get(client, 0) + 1
        log.info("client %s connected%s", short,
                 "" if self.store.is_client(client) else " (not registered)")
        try:
            await self._client_loop(transport, client)
        except (ConnectionError, OSError) as exc:   # it hung up while we answered
            log.info("client %s: %s", short, exc)
        finally:
            self._connected[client] -= 1
            if not self._connected[client]:
                del self._connected[client]
            log.info("client %s disconnected", short)

    async def _client_loop(self, transport: Transport, client: bytes) -> None:
        while not self.shell.stopping.is_set():
            try:
                raw = await transport.recv()
            except (EOFError, ConnectionError, asyncio.IncompleteReadError, MalformedMessage):
                return
            try:
                msg_type = int.from_bytes(raw[:2], "big") if len(raw) >= 2 else -1
                if msg_type == TOWER_UPLOAD:
                    upload = decode_tower_message(msg_type, raw[2:])
                    if not isinstance(upload, SignedUpload):
                        raise MalformedMessage("not an upload")
                    await transport.send(encode_tower_ack(self._accept(client, upload)))
                    continue
                message = decode_message(raw)
            except MalformedMessage as exc:   # UnknownEvenMessage included
                level = "unknown even message" if isinstance(exc, UnknownEvenMessage) \
                    else "malformed message"
                log.warning("client %s sent a %s: %s", client.hex()[:16], level, exc)
                with contextlib.suppress(ConnectionError, OSError):
                    await transport.send(encode_message(
                        WarningMessage.with_text(bytes(32), f"{level}: {exc}"[:500])))
                return
            if isinstance(message, Ping):
                pong = pong_for(message)
                if pong is not None:
                    await transport.send(encode_message(pong))
            # anything else (odd unknowns, a repeated init, channel messages) is ignored

    def _accept(self, client: bytes, upload: SignedUpload) -> TowerAck:
        """Store one upload from the authenticated ``client``; the ack to send."""
        hint = upload.hint if len(upload.hint) == 16 else bytes(16)
        status, reason = AckStatus.REFUSED, ""
        if upload.client_pubkey != client:
            reason = "the upload is signed by another key than this connection's"
        elif not self.store.is_client(client):
            status, reason = AckStatus.UNREGISTERED, \
                "this client is not registered with the tower operator"
        else:
            try:
                status = AckStatus.ACCEPTED if self.watchtower.accept(upload) \
                    else AckStatus.DUPLICATE
            except InvalidSignature as exc:
                reason = str(exc)
            except PeerProtocolError as exc:
                reason = str(exc)
        self.uploads[status.name.lower()] += 1
        if not status.stored:
            log.info("upload from %s refused (%s): %s", client.hex()[:16], status.name, reason)
        return TowerAck(hint=hint, status=status, reason=reason)

    # -- chain -----------------------------------------------------------------------------

    async def _catch_up(self, tip: int) -> None:
        if self._scanned < tip:
            log.info("scanning blocks %d..%d missed while down", self._scanned + 1, tip)
        while self._scanned < tip:
            block = await self.chain.block_at(self._scanned + 1)
            await self._on_block(block)
        for raw in await self.chain.mempool_transactions():
            await self._on_transaction(raw, None)
        for txid, pending in list(self._pending.items()):
            await self._broadcast(txid, pending.raw, first=False)   # recorded before a crash

    async def _watch_chain(self) -> None:
        while not self.shell.stopping.is_set():
            try:
                # from our bookmark, not the tip: a block mined between the catch-up and
                # this subscription would otherwise wait for the next block to be read
                async for event in self.chain.events(from_height=self._scanned):
                    if isinstance(event, TxEvent):
                        await self._on_transaction(event.raw_tx, None)
                    elif isinstance(event, BlockEvent):
                        # blocks come in order; fill a gap (found between the catch-up and
                        # the start of the feed) from the backend
                        while event.height > self._scanned + 1:
                            await self._on_block(await self.chain.block_at(self._scanned + 1))
                        await self._on_block(event)
            except (ChainError, OSError) as exc:
                log.info("chain feed failed (%s); resuming in 1 s", exc)
                await asyncio.sleep(1.0)

    async def _on_transaction(self, raw: bytes, height: int | None) -> None:
        """Punish ``raw`` if it is a breach one of our clients told us about."""
        try:
            found = self.watchtower.on_raw_transaction(raw)
        except MalformedMessage as exc:
            log.info("unparsable transaction from the chain backend: %s", exc)
            return
        # record every justice tx of this breach before broadcasting any (a crash in between
        # loses none), then broadcast them all
        fresh = [(justice, justice.tx.serialize()) for justice in found
                 if self.store.record_justice(justice)]   # False: seen before (e.g. a rescan)
        where = "in the mempool" if height is None else f"in block {height}"
        for justice, raw in fresh:
            self._track(justice.txid, raw)
            self._say(f"breach {justice.breach_txid[::-1].hex()} seen {where}: "
                      f"{justice.description}")
            entry = {"txid": justice.txid[::-1].hex(),
                     "breach_txid": justice.breach_txid[::-1].hex(),
                     "spends": str(justice.spends), "amount_sat": justice.amount_sat,
                     "fee_sat": justice.fee_sat, "client_id": justice.client_pubkey.hex(),
                     "status": "new"}
            self.justice.append(entry)
            self._entries[justice.txid] = entry
        for justice, raw in fresh:
            await self._broadcast(justice.txid, raw, first=True)

    async def _broadcast(self, txid: bytes, raw: bytes, *, first: bool) -> None:
        entry = self._entries.get(txid)
        try:
            await self.chain.broadcast(raw)
        except (ChainError, OSError) as exc:   # refused or unreachable: retried next block
            log.info("justice %s not accepted%s: %s", txid[::-1].hex(),
                     " yet" if first else " on rebroadcast", exc)
            if entry is not None and txid in self._pending:
                entry["status"] = f"not accepted: {exc}"
            return
        if entry is not None and txid in self._pending:
            entry["status"] = "broadcast"
        if first:
            self._say(f"broadcast justice {txid[::-1].hex()}")

    def _track(self, txid: bytes, raw: bytes) -> None:
        tx = CTransaction.deserialize(raw)
        prevout = tx.vin[0].prevout
        spends = (bytes(prevout.hash), int(prevout.n))
        self._pending[txid] = _Pending(raw=raw, spends=spends)
        if spends not in self._watched:
            self._parents[spends[0]] = self._parents.get(spends[0], 0) + 1
        self._watched[spends] = txid

    def _untrack(self, txid: bytes, status: str) -> None:
        pending = self._pending.pop(txid, None)
        if pending is not None and self._watched.get(pending.spends) == txid:
            del self._watched[pending.spends]
            parent = pending.spends[0]
            self._parents[parent] -= 1
            if not self._parents[parent]:
                del self._parents[parent]
        entry = self._entries.get(txid)
        if entry is not None:
            entry["status"] = status

    async def _on_block(self, block: BlockEvent) -> None:
        height = block.height
        if height <= self._scanned:
            # a reorg (or our rescan): what confirmed from here on is unconfirmed again
            for txid in self.store.justice_confirmed_from(height):
                self.store.set_justice_height(txid, None)
            for txid, raw in self.store.unconfirmed_justice():
                if txid not in self._pending:
                    self._track(txid, raw)
                    if txid in self._entries:
                        self._entries[txid]["status"] = "broadcast"
        for raw in block.transactions:
            await self._on_transaction(raw, height)
            try:
                txid, prevouts = scan_raw_transaction(raw)
            except MalformedMessage:
                continue
            if txid in self._pending:
                self.store.set_justice_height(txid, height)
                self._untrack(txid, f"confirmed at height {height}")
                self._say(f"justice {txid[::-1].hex()} confirmed at height {height}")
            elif any(p in self._parents for p in prevouts):
                self._note_conflicts(CTransaction.deserialize(raw), txid, height)
        self._scanned = height
        self.store.set_meta("scanned_height", str(height))
        for txid, pending in list(self._pending.items()):
            await self._broadcast(txid, pending.raw, first=False)

    def _note_conflicts(self, tx: CTransaction, txid: bytes, height: int) -> None:
        for txin in tx.vin:
            justice = self._watched.get((bytes(txin.prevout.hash), int(txin.prevout.n)))
            if justice is None or justice == txid:
                continue
            self.store.set_justice_height(justice, _SUPERSEDED)
            self._untrack(justice, f"superseded by {txid[::-1].hex()}")
            self._say(f"justice {justice[::-1].hex()} superseded: {txid[::-1].hex()} spent "
                      f"its input at height {height}")

    # -- control ---------------------------------------------------------------------------

    async def cmd_info(self) -> dict[str, Any]:
        return {"name": self.settings.name, "tower_id": self.tower_id.hex(),
                "address": self.address, "chain": self.chain.chain,
                "scanned_height": self._scanned, "blobs": self.store.count_blobs(),
                "clients": [c.hex() for c in self.store.clients()],
                "connected": [c.hex() for c in self._connected],
                "uploads": dict(self.uploads),
                "unconfirmed_justice": [t[::-1].hex() for t in self._pending]}

    async def cmd_register(self, client_id: str) -> dict[str, Any]:
        """Allow a client (its node id, 33 bytes hex) to store blobs."""
        key = bytes.fromhex(client_id)
        known = self.store.is_client(key)
        self.watchtower.register_client(key)   # ValueError unless a valid compressed point
        if not known:
            self._say(f"registered client {client_id}")
        return {"client_id": client_id, "new": not known}

    async def cmd_events(self) -> list[str]:
        return list(self.events)

    async def cmd_justice(self) -> list[dict[str, Any]]:
        return list(self.justice)

    async def cmd_stop(self) -> dict[str, Any]:
        asyncio.get_running_loop().call_soon(self.shell.stopping.set)
        return {"stopping": True}
