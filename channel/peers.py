"""I/O: the peer manager: connections to other nodes (LDK's PeerManager).

It listens and dials over BOLT 8, exchanges ``init`` (BOLT 1: same chain, compatible
features), answers ``ping``, remembers where known peers live and dials them again after a
restart, and keeps one lock per peer so a peer's messages and the local commands touching its
channels take turns. Everything else a peer sends is decoded and handed to a
:class:`PeerHandler` (the node), batch by batch:

* every message already received from a peer joins one batch when ``coalesce`` is on (the
  node persists the batch once and sends its replies in one write), otherwise each message is
  its own batch;
* a message that cannot be decoded (malformed, unknown even type) gets a ``warning`` and the
  connection is dropped (BOLT 1), after what the batch already holds is completed.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from channel.effects import Effects
from channel.errors import (
    ChanlabError,
    HandshakeFailed,
    MalformedMessage,
    StartRefused,
    UnknownEvenMessage,
)
from channel.redial import Redialer
from channel.tasks import BackgroundTasks

if TYPE_CHECKING:
    from channel.transport import Transport
    from channel.wire import Features

__all__ = ["PeerHandler", "PeerManager"]

log = logging.getLogger("chanlab.peers")

INIT_TIMEOUT_S = 10.0
#: inbound connections still in the BOLT 8 handshake or before their ``init``: what strangers
#: can make the node hold at once (beyond it, the oldest is dropped)
MAX_UNAUTHENTICATED = 8
#: messages of one peer coalesced into one batch at most: a flood is cut into batches, and
#: the chain watcher gets its turn between two
MAX_BATCH_MESSAGES = 256
_LOST = (EOFError, ConnectionError, asyncio.IncompleteReadError, HandshakeFailed,
         MalformedMessage)  # a BOLT 8 MAC failure included: the stream is lost, hang up


class PeerHandler(Protocol):
    """What the peer manager hands over: connections, and batches of decoded messages."""

    async def peer_connected(self, peer_id: bytes) -> None: ...

    async def peer_disconnected(self, peer_id: bytes) -> None: ...

    async def deliver(self, peer_id: bytes, message: Any, fx: Effects) -> None: ...

    async def end_batch(self, fx: Effects) -> None: ...

    async def flush(self, fx: Effects) -> None: ...


#: pings answered per second and peer, after a burst of PING_BURST (a token bucket that
#: deep: an honest peer's keep-alive or a test's volley passes); pings beyond are ignored, and
#: a peer that keeps flooding (PING_FLOOD_DROP unanswered in a row) is dropped
MAX_PINGS_PER_S = 10
PING_BURST = 32
PING_FLOOD_DROP = 100


@dataclass(slots=True)
class PingBudget:
    """A token bucket: MAX_PINGS_PER_S answered per second, bursts of PING_BURST."""

    tokens: float = float(PING_BURST)
    at: float = field(default_factory=time.monotonic)
    unanswered: int = 0   # pings ignored in a row

    def take(self, now: float) -> bool:
        self.tokens = min(float(PING_BURST), self.tokens + (now - self.at) * MAX_PINGS_PER_S)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            self.unanswered = 0
            return True
        self.unanswered += 1
        return False


@dataclass(slots=True)
class Peer:
    node_id: bytes
    transport: Transport
    features: Features   # from the peer's ``init``
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    pings: PingBudget = field(default_factory=PingBudget)


class PeerManager:
    """Connected peers, their ``init``, ``ping`` and locks; known peers' addresses."""

    def __init__(self, *, node_secret: bytes, handler: PeerHandler, tasks: BackgroundTasks,
                 remember: Callable[[bytes, str], None], coalesce: bool = True,
                 wanted: Callable[[bytes], bool] = lambda _: False,
                 tap: Callable[[bytes, bool, bytes], None] | None = None) -> None:
        self._secret = node_secret
        self._handler = handler
        self._tasks = tasks
        self._remember = remember     # (peer_id, "host:port"): persisted by the node
        self._coalesce = coalesce
        self._tap = tap               # (peer_id, sent?, type ‖ payload): the node's trace
        self.peers: dict[bytes, Peer] = {}
        self._server: asyncio.Server | None = None
        self._stopping = False
        # inbound connections before their init, oldest first
        self._unauthenticated: dict[int, asyncio.StreamWriter] = {}
        # peers we have channels with (``wanted``) are dialled again whenever they are lost
        self.redialer = Redialer(tasks=tasks, dial=self.connect,
                                 connected=lambda peer_id: peer_id in self.peers, wanted=wanted)

    async def listen(self, host: str, port: int) -> int:
        """Accept inbound connections on ``host:port``; the port bound."""
        try:
            self._server = await asyncio.start_server(self._on_inbound, host, port)
        except OSError as exc:
            raise StartRefused(f"cannot listen on {host}:{port}: {exc.strerror or exc}; stop "
                               f"what uses that port or choose another --port") from None
        bound: int = self._server.sockets[0].getsockname()[1]
        return bound

    async def close(self) -> None:
        self._stopping = True
        self.redialer.stopping = True
        if self._server is not None:
            self._server.close()
        for peer in list(self.peers.values()):
            await peer.transport.close()

    def features_of(self, peer_id: bytes) -> Features:
        """The feature vector a connected peer sent in ``init`` (empty if not connected)."""
        peer = self.peers.get(peer_id)
        if peer is not None:
            return peer.features
        from channel.wire import Features  # BOLT 1 loads with the first connection
        return Features()

    def lock_of(self, peer_id: bytes) -> asyncio.Lock:
        """The peer's turn lock (a fresh one, uncontended, for a peer not connected)."""
        peer = self.peers.get(peer_id)
        return peer.lock if peer is not None else asyncio.Lock()

    @contextlib.asynccontextmanager
    async def every_turn(self) -> AsyncIterator[None]:
        """Every connected peer's turn lock, taken in one order (sorted node ids), for a flight
        that may send to any peer: its messages then never overtake a batch being answered."""
        async with contextlib.AsyncExitStack() as stack:
            for peer_id in sorted(self.peers):
                await stack.enter_async_context(self.lock_of(peer_id))
            yield

    async def send_many(self, peer_id: bytes, messages: list[bytes]) -> None:
        peer = self.peers.get(peer_id)
        if peer is None:
            return  # reestablish will retransmit what matters
        try:
            await peer.transport.send_many(messages)
        except (ConnectionError, OSError) as exc:
            log.info("send to %s failed: %s", peer_id.hex()[:16], exc)

    async def _on_inbound(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        if len(self._unauthenticated) >= MAX_UNAUTHENTICATED:
            # the oldest stranger goes, not the newcomer: an honest handshake takes
            # milliseconds, so silent connections cannot lock every peer out
            oldest = next(iter(self._unauthenticated))
            self._unauthenticated.pop(oldest).close()
        key = id(writer)
        self._unauthenticated[key] = writer

        def authenticated() -> None:
            self._unauthenticated.pop(key, None)

        try:
            # BOLT 8 loads with the first connection (idle node RSS, see
            # tests/integration/test_idle_footprint.py)
            from channel.transport import accept
            try:
                transport = await accept(reader, writer, local_static=self._secret)
            except HandshakeFailed as exc:
                log.info("inbound handshake failed: %s", exc)
                return
            await self._run(transport, on_init=authenticated)
        finally:
            authenticated()

    async def connect(self, node_id: bytes, host: str, port: int) -> None:
        """Dial a peer, exchange ``init``, and keep reading from it in the background."""
        if node_id in self.peers:
            return
        # (idle node RSS, see tests/integration/test_idle_footprint.py)
        from channel.transport import connect
        transport = await connect(host, port, local_static=self._secret,
                                  remote_static_pubkey=node_id)
        address = f"{host}:{port}"
        if self.redialer.addresses.get(node_id) != address:
            self._remember(node_id, address)
            self.redialer.learn(node_id, address)
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._tasks.spawn(self._run(transport, ready))
        await asyncio.wait_for(ready, INIT_TIMEOUT_S)

    def reconnect(self, known: Iterable[tuple[bytes, str]]) -> None:
        """Dial again, until they answer, the peers we have channels with (``(peer_id,
        "host:port")``, persisted)."""
        for peer_id, addr in known:
            self.redialer.learn(peer_id, addr)
            self.redialer.lost(peer_id, at_once=True)

    async def _run(self, transport: Transport, ready: asyncio.Future[None] | None = None,
                   on_init: Callable[[], None] = lambda: None) -> None:
        node_id = transport.remote_pubkey
        if self._tap is not None:
            transport.tap = functools.partial(self._tap, node_id)
        # BOLT 1/2 messages load with the first connection (idle node RSS, see
        # tests/integration/test_idle_footprint.py)
        from channel.messages import decode_message, encode_message
        from channel.wire import REGTEST_CHAIN_HASH, Init, check_compatible, our_features
        try:
            await transport.send(encode_message(Init.ours(our_features())))
            first = decode_message(await asyncio.wait_for(transport.recv(), INIT_TIMEOUT_S))
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
        on_init()
        old = self.peers.get(node_id)
        if old is not None:
            await old.transport.close()
        peer = Peer(node_id=node_id, transport=transport, features=first.combined_features())
        self.peers[node_id] = peer
        log.info("peer %s connected", node_id.hex()[:16])
        async with peer.lock:
            await self._handler.peer_connected(node_id)
        if ready is not None and not ready.done():
            ready.set_result(None)
        try:
            await self._read_loop(peer)
        finally:
            replaced = self.peers.get(node_id) is not peer   # a newer connection took over
            if not replaced:
                del self.peers[node_id]
                await self._handler.peer_disconnected(node_id)
            await transport.close()
            log.info("peer %s disconnected", node_id.hex()[:16])
            if not self._stopping and node_id not in self.peers:
                self.redialer.lost(node_id)

    async def _read_loop(self, peer: Peer) -> None:
        while not self._stopping:
            try:
                raw = await peer.transport.recv()
            except _LOST:
                return
            async with peer.lock:
                fx = Effects()
                handled = 0
                try:
                    while True:
                        if not await self._handle_one(peer, raw, fx):
                            return
                        handled += 1
                        if not self._coalesce or not peer.transport.has_buffered_data() or \
                                handled >= MAX_BATCH_MESSAGES:
                            break
                        try:
                            raw = await peer.transport.recv()
                        except _LOST:
                            return
                finally:
                    await self._handler.end_batch(fx)
            # a peer whose bytes are already buffered never makes recv() wait: give the chain
            # watcher and other peers their turn after such a batch (otherwise recv() waits,
            # and that is their turn; a yield there would cost every payment a loop pass)
            if peer.transport.has_buffered_data():
                await asyncio.sleep(0)

    async def _handle_one(self, peer: Peer, raw: bytes, fx: Effects) -> bool:
        """One message into ``fx``; False once the peer must be dropped."""
        from channel.messages import decode_message, encode_message  # loaded by _run
        from channel.wire import Ping, Pong, UnknownMessage, pong_for
        try:
            message = decode_message(raw)
            if isinstance(message, Ping):
                if not peer.pings.take(time.monotonic()):
                    if peer.pings.unanswered >= PING_FLOOD_DROP:
                        await self._drop(peer, fx, f"ping flood: over {MAX_PINGS_PER_S} a second")
                        return False
                    return True   # over the rate: ignored, not answered
                pong = pong_for(message)
                if pong is not None:
                    await peer.transport.send(encode_message(pong))
            elif not isinstance(message, Pong | UnknownMessage):   # odd unknown: ignore
                await self._handler.deliver(peer.node_id, message, fx)
        except UnknownEvenMessage as exc:
            await self._drop(peer, fx, f"unknown even message: {exc}")
            return False
        except MalformedMessage as exc:
            await self._drop(peer, fx, f"malformed message: {exc}")
            return False
        return True

    async def _drop(self, peer: Peer, fx: Effects, text: str) -> None:
        """BOLT 1: ``warning`` then disconnect, once what ``fx`` holds so far is completed."""
        from channel.messages import encode_message  # loaded by _run
        from channel.wire import WarningMessage
        log.warning("peer %s: %s", peer.node_id.hex()[:16], text)
        await self._handler.flush(fx)
        try:
            await peer.transport.send(
                encode_message(WarningMessage.with_text(bytes(32), text[:500])))
        except (ConnectionError, OSError) as exc:
            log.info("warning to %s not sent: %s", peer.node_id.hex()[:16], exc)
        await peer.transport.close()
