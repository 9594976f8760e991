"""I/O: the hostile load of issue 10's "done when", aimed at one node process.

Three strangers each send an ``init`` with a 65 kB feature field every second (a fresh BOLT 8
connection each time), a fourth sends 1,000 ``open_channel`` it never funds, a fifth floods
``ping`` (reconnecting whenever the node drops it). It runs in a thread with its own event
loop, so the caller (a test, ``make bench``) stages a breach meanwhile; the node's database
size is taken when the load starts and when it stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
import struct
import threading
from pathlib import Path
from types import TracebackType

from channel.errors import ChanlabError
from channel.keys import ChannelKeys
from channel.messages import encode_message
from channel.state import Channel, ChannelConfig
from channel.transport import Transport, connect
from channel.types import CommitmentFormat
from channel.wire import Init, Ping, our_features

__all__ = ["FEATURE_BYTES", "STRANGER_OPENS", "HostileLoad"]

FEATURE_BYTES = 65_000
INIT_STRANGERS = 3
STRANGER_OPENS = 1_000
PINGS_PER_BURST = 50
PING_BURST_EVERY_S = 0.05      # 1,000 pings a second
WARM_UP_TIMEOUT_S = 60.0
WARM_PINGS = 1_000
_LOST = (OSError, ChanlabError, EOFError, asyncio.IncompleteReadError, TimeoutError)


def _huge_init() -> bytes:
    """``init`` (16): no global features, a 65 kB local feature field, no TLVs."""
    features = b"\x00" * (FEATURE_BYTES - 1) + b"\x02"
    return struct.pack(">HHH", 16, 0, len(features)) + features


def _db_bytes(home: Path) -> int:
    return sum(p.stat().st_size for p in home.glob("node.db*"))


@dataclasses.dataclass
class LoadCounts:
    """What the load did."""

    huge_inits: int = 0
    opens: int = 0
    pings: int = 0
    ping_reconnects: int = 0


class HostileLoad:
    """``with HostileLoad(host, port, node_id, home):`` the load runs inside the block."""

    def __init__(self, host: str, port: int, node_id: bytes, home: Path) -> None:
        self._host, self._port, self._node_id, self._home = host, port, node_id, home
        self.counts = LoadCounts()
        self.db_growth_bytes = 0
        self._db_before = 0
        self._stop = threading.Event()
        self._warm = threading.Event()
        self._thread = threading.Thread(target=self._thread_main, name="hostile-load",
                                        daemon=True)
        self._error: BaseException | None = None

    def __enter__(self) -> HostileLoad:
        self._db_before = _db_bytes(self._home)
        self._thread.start()
        if not self._warm.wait(WARM_UP_TIMEOUT_S):
            raise RuntimeError(f"the hostile load did not get going: {self._error!r}")
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self._stop.set()
        self._thread.join(30)
        self.db_growth_bytes = _db_bytes(self._home) - self._db_before

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:   # reported by __enter__ if it never warmed up
            self._error = exc

    async def _main(self) -> None:
        tasks = [asyncio.ensure_future(self._huge_inits(secrets.token_bytes(32)))
                 for _ in range(INIT_STRANGERS)]
        tasks.append(asyncio.ensure_future(self._ping_flood()))
        opens = asyncio.ensure_future(self._opens())
        try:
            while not self._stop.is_set():
                # in full swing: every open sent, two rounds of inits, a second of pings
                if self.counts.opens >= STRANGER_OPENS and \
                        self.counts.huge_inits >= 2 * INIT_STRANGERS and \
                        self.counts.pings >= WARM_PINGS:
                    self._warm.set()
                await asyncio.sleep(0.05)
        finally:
            for task in [*tasks, opens]:
                task.cancel()
            await asyncio.gather(*tasks, opens, return_exceptions=True)

    async def _dial(self, secret: bytes) -> Transport:
        return await connect(self._host, self._port, local_static=secret,
                             remote_static_pubkey=self._node_id)

    async def _huge_inits(self, secret: bytes) -> None:
        while True:
            with contextlib.suppress(*_LOST):
                transport = await self._dial(secret)
                await transport.send(_huge_init())
                self.counts.huge_inits += 1
                await transport.close()
            await asyncio.sleep(1.0)

    async def _greeted(self, secret: bytes) -> tuple[Transport, asyncio.Task[None]]:
        transport = await self._dial(secret)
        await transport.send(encode_message(Init.ours(our_features())))

        async def drain() -> None:
            with contextlib.suppress(*_LOST):
                while True:
                    await transport.recv()

        return transport, asyncio.ensure_future(drain())

    async def _opens(self) -> None:
        _, template = Channel.open_outbound(
            keys=ChannelKeys.from_seed(secrets.token_bytes(32)), config=ChannelConfig(),
            funding_sat=200_000, push_msat=0, feerate_per_kw=1000,
            temporary_channel_id=secrets.token_bytes(32),
            commitment_format=CommitmentFormat.STATIC_REMOTEKEY)
        transport, drain = await self._greeted(secrets.token_bytes(32))
        try:
            for start in range(0, STRANGER_OPENS, 100):
                batch = [encode_message(dataclasses.replace(
                    template, temporary_channel_id=secrets.token_bytes(32)))
                    for _ in range(min(100, STRANGER_OPENS - start))]
                await transport.send_many(batch)
                self.counts.opens += len(batch)
            await asyncio.Event().wait()   # stay connected: the channels stay pending
        finally:
            drain.cancel()
            await transport.close()

    async def _ping_flood(self) -> None:
        secret = secrets.token_bytes(32)
        ping = encode_message(Ping(num_pong_bytes=8))
        while True:
            try:
                transport, drain = await self._greeted(secret)
            except _LOST:
                await asyncio.sleep(0.1)
                continue
            try:
                while not drain.done():
                    await transport.send_many([ping] * PINGS_PER_BURST)
                    self.counts.pings += PINGS_PER_BURST
                    await asyncio.sleep(PING_BURST_EVERY_S)
            except _LOST:
                pass
            finally:
                drain.cancel()
                await transport.close()
            self.counts.ping_reconnects += 1
