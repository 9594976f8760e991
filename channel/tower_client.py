"""I/O: a node's watchtower client: one BOLT 8 connection per tower, uploads after revocations.

After each ``revoke_and_ack`` from the peer, the node's monitor knows one more revoked
commitment; this module builds its justice kit (:func:`channel.tower.justice_kit_for_state`),
signs it with the node's key (the same key the BOLT 8 handshake authenticates) and uploads it
to every tower as a ``tower_upload`` (:mod:`channel.tower_wire`).

Nothing here is on a payment's path: :meth:`WatchtowerClient.revoked` only records a number
and wakes the uploader tasks; kits are built and sent in the background, and the node never
waits for a tower.

Durability without an extra write per payment: the revoked states are already durable in the
monitor (the node persists its updates in every flight), and a channel's revoked commitment
numbers are consecutive. So per tower and channel the node only keeps the highest number the
tower has acknowledged (kv ``tower_acked:<tower id>``, written once per batch of acks); after a
restart (of the node or the tower) every revoked state above it is uploaded again. A state
uploaded twice is acknowledged as a duplicate. A tower added later receives every past state.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from channel.errors import ChanlabError, HandshakeFailed, MalformedMessage
from channel.store import NodeStore
from channel.tasks import cancel_and_wait

if TYPE_CHECKING:   # the monitor loads with the first channel (idle node RSS)
    from types import ModuleType

    from channel.monitor import ChannelMonitor
    from channel.state import MonitorUpdate
    from channel.tower import TowerClient
    from channel.tower_wire import TowerAck
    from channel.transport import Transport


# ``channel.tower`` and ``channel.tower_wire`` load with the first tower: about 1 MB resident
# that a node without towers never needs.

@functools.cache
def _tower() -> ModuleType:
    import channel.tower
    return channel.tower


@functools.cache
def _wire() -> ModuleType:
    import channel.tower_wire
    return channel.tower_wire

__all__ = ["TowerAddress", "WatchtowerClient"]

log = logging.getLogger("chanlab.tower_client")

BATCH = 32                 # uploads in flight on one connection before waiting for their acks
ACK_TIMEOUT_S = 30.0
RETRY_MIN_S = 0.25
RETRY_MAX_S = 2.0          # a tower that comes back is found again within this
UNREGISTERED_RETRY_S = 2.0


@dataclass(frozen=True, slots=True, kw_only=True)
class TowerAddress:
    """``tower_id@host:port``."""

    tower_id: bytes
    host: str
    port: int

    def __post_init__(self) -> None:
        if len(self.tower_id) != 33 or not 0 < self.port < 65536:
            raise ValueError("a tower address needs a 33-byte id and a port")

    @classmethod
    def parse(cls, text: str) -> TowerAddress:
        node_hex, sep, addr = text.partition("@")
        host, colon, port = addr.rpartition(":")
        if not sep or not colon or not host:
            raise ValueError(f"not a tower address (tower_id@host:port): {text!r}")
        return cls(tower_id=bytes.fromhex(node_hex), host=host, port=int(port))

    def __str__(self) -> str:
        return f"{self.tower_id.hex()}@{self.host}:{self.port}"


@dataclass(slots=True)
class _Item:
    channel_key: str
    commitment_number: int
    message: bytes | None      # None: nothing to upload for this state (advance past it)
    hint: bytes = b""


@dataclass(slots=True)
class _Link:
    """One tower: where it is, what it acknowledged, how the connection is doing."""

    address: TowerAddress
    acked: dict[str, int] = field(default_factory=dict)   # channel key -> highest acked
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    connected: bool = False
    uploaded: int = 0
    refused: int = 0
    last_error: str = ""
    task: asyncio.Task[None] | None = None


class WatchtowerClient:
    """The node's towers. ``start()`` once the monitors are loaded; ``revoked()`` per new
    revoked state; ``stop()`` before the store closes."""

    def __init__(self, *, node_secret: bytes, store: NodeStore,
                 monitor_of: Callable[[str], ChannelMonitor | None]) -> None:
        self._secret = node_secret
        self._tower_client: TowerClient | None = None
        self._store = store
        self._monitor_of = monitor_of
        self._revealed: dict[str, int] = {}   # channel key -> highest revoked number
        self._links: dict[bytes, _Link] = {}
        self._stopping = False

    @property
    def _client(self) -> TowerClient:
        if self._tower_client is None:
            from channel.keys import PrivateKey  # with the first tower (idle node RSS)
            self._tower_client = _tower().TowerClient(PrivateKey(self._secret))
        client: TowerClient = self._tower_client
        return client

    @property
    def client_id(self) -> bytes:
        """The key towers register (the node id)."""
        return self._client.pubkey

    # -- life cycle ------------------------------------------------------------------------

    def start(self, monitors: Iterable[tuple[str, ChannelMonitor]],
              extra: Iterable[str] = ()) -> None:
        """Learn the revoked states of ``monitors``, connect to the stored towers and to
        ``extra`` (addresses, stored too). Call from the running event loop."""
        for key, monitor in monitors:
            numbers = monitor.revoked_commitment_numbers
            if numbers:
                self._revealed[key] = numbers[-1]
        for text in [*json.loads(self._store.get("towers") or "[]"), *extra]:
            self.add(text)

    def add(self, text: str) -> dict[str, Any]:
        """Use the tower at ``text`` (``tower_id@host:port``) from now on, remembered across
        restarts; a known tower's address is updated."""
        address = TowerAddress.parse(text)
        link = self._links.get(address.tower_id)
        if link is not None and link.address == address:
            return self._status(link)
        if link is not None and link.task is not None:
            link.task.cancel()
        acked = json.loads(self._store.get(f"tower_acked:{address.tower_id.hex()}") or "{}")
        link = _Link(address=address, acked={str(k): int(v) for k, v in acked.items()})
        self._links[address.tower_id] = link
        self._store.commit_flight(kv=[("towers", json.dumps(
            [str(x.address) for x in self._links.values()]))])
        link.task = asyncio.ensure_future(self._run(link))
        return self._status(link)

    async def stop(self) -> None:
        self._stopping = True
        tasks = [link.task for link in self._links.values() if link.task is not None]
        await cancel_and_wait(tasks)

    # -- from the node ---------------------------------------------------------------------

    def note_updates(self, channel_key: str, updates: Iterable[MonitorUpdate]) -> None:
        """Pick the revocations out of a flight's monitor updates (cheap: no kit built here)."""
        for update in updates:
            # an update's maker loaded the state machine: a dict lookup (idle node RSS)
            from channel.state import CounterpartySecretRevealed
            if isinstance(update, CounterpartySecretRevealed):
                self.revoked(channel_key, update.commitment_number)

    def revoked(self, channel_key: str, commitment_number: int) -> None:
        """The peer revoked its commitment ``commitment_number`` on channel ``channel_key``."""
        if commitment_number > self._revealed.get(channel_key, -1):
            self._revealed[channel_key] = commitment_number
            for link in self._links.values():
                link.wake.set()

    def status(self) -> list[dict[str, Any]]:
        """Per tower: address, connection, uploads, states not acknowledged yet."""
        return [self._status(link) for link in self._links.values()]

    def _status(self, link: _Link) -> dict[str, Any]:
        return {"tower": str(link.address), "connected": link.connected,
                "uploaded": link.uploaded, "refused": link.refused,
                "pending": self._pending_count(link), "last_error": link.last_error}

    def _pending_count(self, link: _Link) -> int:
        return sum(max(0, top - link.acked.get(key, -1))
                   for key, top in self._revealed.items())

    # -- the uploader ----------------------------------------------------------------------

    async def _run(self, link: _Link) -> None:
        delay = RETRY_MIN_S
        while not self._stopping:
            transport: Transport | None = None
            try:
                transport = await self._open(link)
                link.connected, link.last_error, delay = True, "", RETRY_MIN_S
                log.info("tower %s connected", link.address)
                await self._pump(link, transport)
            except (ChanlabError, EOFError, ConnectionError, OSError, TimeoutError,
                    asyncio.IncompleteReadError) as exc:
                link.last_error = f"{type(exc).__name__}: {exc}"
                log.info("tower %s: %s", link.address, link.last_error)
            finally:
                link.connected = False
                if transport is not None:
                    await transport.close()
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_S)

    async def _open(self, link: _Link) -> Transport:
        # BOLT 8 loads with the first tower (idle node RSS, see
        # tests/integration/test_idle_footprint.py)
        from channel.messages import decode_message, encode_message
        from channel.transport import connect
        from channel.wire import REGTEST_CHAIN_HASH, Features, Init
        a = link.address
        transport = await connect(a.host, a.port, local_static=self._secret,
                                  remote_static_pubkey=a.tower_id)
        try:
            await transport.send(encode_message(Init.ours(Features())))
            first = decode_message(await asyncio.wait_for(transport.recv(), 10))
            if not isinstance(first, Init) or not first.supports_chain(REGTEST_CHAIN_HASH):
                raise HandshakeFailed("the tower's first message is not a regtest init")
        except BaseException:
            await transport.close()
            raise
        return transport

    async def _pump(self, link: _Link, transport: Transport) -> None:
        while not self._stopping:
            link.wake.clear()
            items = await self._next_batch(link)
            if not items:
                await self._idle(link, transport)
                continue
            uploads = [item for item in items if item.message is not None]
            if uploads:
                await transport.send_many([item.message for item in uploads
                                           if item.message is not None])
            done: list[_Item] = []
            blocked = ""
            for item in items:
                if item.message is not None:
                    ack = await self._recv_ack(transport)
                    if ack.hint != item.hint:
                        raise MalformedMessage("tower ack out of order")
                    if ack.status is _wire().AckStatus.UNREGISTERED:
                        blocked = ack.reason or "not registered"
                        continue   # drain the other acks, advance nothing from here on
                    if ack.status is _wire().AckStatus.REFUSED:
                        link.refused += 1
                        log.warning("tower %s refused the kit of commitment %d on %s: %s",
                                    link.address, item.commitment_number,
                                    item.channel_key[:16], ack.reason)
                    else:
                        link.uploaded += 1
                if not blocked:
                    done.append(item)
            self._advance(link, done)
            if blocked:
                link.last_error = f"tower refused: {blocked}"
                await asyncio.sleep(UNREGISTERED_RETRY_S)

    @staticmethod
    async def _idle(link: _Link, transport: Transport) -> None:
        """Wait for work; meanwhile notice the tower hanging up (it sends nothing unasked, so
        a read here only ends with the connection, and cancelling it loses no bytes)."""
        woken = asyncio.ensure_future(link.wake.wait())
        hangup = asyncio.ensure_future(transport.recv())
        try:
            await asyncio.wait({woken, hangup}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await cancel_and_wait((woken, hangup))
        if hangup.done() and not hangup.cancelled():
            error = hangup.exception()
            if error is not None:
                raise error
            raise MalformedMessage("the tower sent a message nobody asked for")

    async def _recv_ack(self, transport: Transport) -> TowerAck:
        from channel.messages import decode_message  # loaded by _open: a dict lookup
        while True:
            raw = await asyncio.wait_for(transport.recv(), ACK_TIMEOUT_S)
            msg_type = int.from_bytes(raw[:2], "big") if len(raw) >= 2 else -1
            wire = _wire()
            if msg_type == wire.TOWER_ACK:
                ack = wire.decode_tower_message(msg_type, raw[2:])
                if isinstance(ack, wire.TowerAck):
                    found: TowerAck = ack
                    return found
            decode_message(raw)   # even/odd rule: an unknown even type raises here

    def _advance(self, link: _Link, done: list[_Item]) -> None:
        if not done:
            return
        for item in done:
            link.acked[item.channel_key] = max(link.acked.get(item.channel_key, -1),
                                               item.commitment_number)
        self._store.commit_flight(kv=[(f"tower_acked:{link.address.tower_id.hex()}",
                                       json.dumps(link.acked))])

    async def _next_batch(self, link: _Link) -> list[_Item]:
        """The next revoked states this tower lacks, as signed uploads (oldest first)."""
        items: list[_Item] = []
        for key, top in list(self._revealed.items()):
            monitor = self._monitor_of(key)
            start = link.acked.get(key, -1) + 1
            if monitor is None or monitor.is_resolved:
                if start <= top:   # closed and settled: no breach can matter any more
                    items.append(_Item(channel_key=key, commitment_number=top, message=None))
                continue
            for number in range(start, top + 1):
                items.append(self._item(monitor, key, number))
                if len(items) >= BATCH:
                    return items
                await asyncio.sleep(0)   # building kits costs signatures: let payments run
        return items

    def _item(self, monitor: ChannelMonitor, key: str, number: int) -> _Item:
        try:
            txid, kit = _tower().justice_kit_for_state(monitor, number)
        except KeyError:   # a state this monitor never saw signed: nothing to punish with
            return _Item(channel_key=key, commitment_number=number, message=None)
        except ValueError as exc:
            log.warning("no justice kit for commitment %d on %s: %s", number, key[:16], exc)
            return _Item(channel_key=key, commitment_number=number, message=None)
        upload = self._client.upload_kit(kit, txid)
        if len(upload.blob) > _wire().MAX_UPLOAD_BLOB_BYTES:
            log.warning("justice kit of commitment %d on %s is %d bytes, over one message: "
                        "only the node's own monitor covers it", number, key[:16],
                        len(upload.blob))
            return _Item(channel_key=key, commitment_number=number, message=None)
        return _Item(channel_key=key, commitment_number=number,
                     message=_wire().encode_tower_upload(upload), hint=upload.hint)
