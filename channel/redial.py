"""I/O: dialling known peers again until they answer (after a restart, after a lost connection).

A node that knows where a peer listens (it dialled it once; the address is persisted) keeps
dialling it while it has a channel with it: at start, and whenever the connection drops. The
side that was dialled knows no address to dial back, so it waits; the two sides together
still always find each other again. Attempts back off exponentially with jitter (so a
restarted hub is not hit by all its peers at the same instant) up to a cap, and stop as soon
as the peer is connected (whoever dialled), is no longer wanted, or the node stops.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

from channel.errors import ChanlabError
from channel.tasks import BackgroundTasks

__all__ = ["FIRST_DELAY_S", "MAX_DELAY_S", "Redialer", "backoff_delays"]

log = logging.getLogger("chanlab.redial")

FIRST_DELAY_S = 0.25
MAX_DELAY_S = 30.0


def backoff_delays(rng: random.Random, first_s: float = FIRST_DELAY_S,
                   cap_s: float = MAX_DELAY_S) -> Callable[[], float]:
    """Successive waits: doubling from ``first_s`` up to ``cap_s``, each drawn in [½, 1] of
    its step (jitter spreads the peers of a restarted node)."""
    step = first_s

    def next_delay() -> float:
        nonlocal step
        delay = step * rng.uniform(0.5, 1.0)
        step = min(step * 2, cap_s)
        return delay

    return next_delay


class Redialer:
    """One dialling loop at most per peer."""

    def __init__(self, *, tasks: BackgroundTasks,
                 dial: Callable[[bytes, str, int], Awaitable[None]],
                 connected: Callable[[bytes], bool], wanted: Callable[[bytes], bool],
                 rng: random.Random | None = None) -> None:
        self._tasks = tasks
        self._dial = dial
        self._connected = connected
        self._wanted = wanted
        self._rng = rng if rng is not None else random.Random()
        self.addresses: dict[bytes, str] = {}   # peer_id -> "host:port" it listens on
        self._loops: set[bytes] = set()
        self.stopping = False

    def learn(self, peer_id: bytes, address: str) -> None:
        self.addresses[peer_id] = address

    def lost(self, peer_id: bytes, *, at_once: bool = False) -> None:
        """Start dialling ``peer_id`` if we know where it listens and still want it."""
        if self.stopping or peer_id in self._loops or peer_id not in self.addresses:
            return
        self._loops.add(peer_id)
        self._tasks.spawn(self._loop(peer_id, at_once))

    async def _loop(self, peer_id: bytes, at_once: bool) -> None:
        delays = backoff_delays(self._rng)
        try:
            if not at_once:
                await asyncio.sleep(delays())
            while not self.stopping and not self._connected(peer_id) and self._wanted(peer_id):
                address = self.addresses[peer_id]
                host, port = address.rsplit(":", 1)
                try:
                    await self._dial(peer_id, host, int(port))
                except (OSError, ChanlabError, TimeoutError) as exc:
                    delay = delays()
                    log.info("peer %s not reachable at %s (%s): next try in %.1f s",
                             peer_id.hex()[:16], address, exc, delay)
                    await asyncio.sleep(delay)
        finally:
            self._loops.discard(peer_id)
