"""I/O: the node's outbox: every transaction the node must broadcast, kept until it confirms.

A flight's broadcasts (a funding tx, a cooperative close, our commitment on ``force-close``)
are written to the database in the flight's own transaction (kv ``outbox:<txid>``), then
sent. One that bitcoind did not take (it is down, restarting, or dropped it from its mempool)
is sent again every :data:`RETRY_S` seconds, across node restarts, until it has a confirmation.
One that a reachable bitcoind keeps refusing (a conflicting tx won) is given up after
:data:`MAX_REFUSALS` tries. Claims (sweeps, penalties) are the monitors' job: they are re-planned
from the persisted monitors and re-sent at every block by the chain watcher.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

from bitcoin.core import CTransaction

from channel.chain import ChainBackend
from channel.errors import ChainError
from channel.store import NodeStore

__all__ = ["MAX_REFUSALS", "OUTBOX_PREFIX", "RETRY_S", "Outbox"]

log = logging.getLogger("chanlab.outbox")

OUTBOX_PREFIX = "outbox:"
RETRY_S = 2.0
MAX_REFUSALS = 30


def _txid_hex(raw_tx: bytes) -> str:
    txid: str = CTransaction.deserialize(raw_tx).GetTxid()[::-1].hex()
    return txid


class Outbox:
    """Transactions to broadcast, persisted with the flight that made them."""

    def __init__(self, chain: ChainBackend, store: NodeStore) -> None:
        self._chain = chain
        self._store = store
        self._pending: dict[str, bytes] = {
            txid: bytes.fromhex(raw) for txid, raw in store.kv_with_prefix(OUTBOX_PREFIX).items()}
        self._refusals: dict[str, int] = {}
        self.unsent: set[str] = set(self._pending)   # txids bitcoind has not taken yet

    def rows(self, raw_txs: Iterable[bytes]) -> list[tuple[str, str]]:
        """The kv rows that make ``raw_txs`` durable (written with their flight)."""
        rows = []
        for raw in raw_txs:
            txid = _txid_hex(raw)
            self._pending[txid] = raw
            self.unsent.add(txid)
            rows.append((OUTBOX_PREFIX + txid, raw.hex()))
        return rows

    async def send(self, raw_tx: bytes) -> bool:
        """Broadcast now; False if bitcoind did not take it (it stays, to be sent again)."""
        txid = _txid_hex(raw_tx)
        try:
            log.info("broadcast %s", await self._chain.broadcast(raw_tx))
        except ChainError as exc:
            log.warning("broadcast of %s failed, will retry: %s", txid, exc)
            return False
        self.unsent.discard(txid)
        return True

    async def run(self) -> None:
        """Until cancelled: every RETRY_S, forget what confirmed, send again what did not."""
        while True:
            await asyncio.sleep(RETRY_S)
            with contextlib.suppress(ChainError):   # bitcoind unreachable: next round
                await self.retry()

    async def retry(self) -> None:
        for txid, raw in list(self._pending.items()):
            if await self._chain.confirmations(txid) > 0:
                self._done(txid)
                continue
            if await self.send(raw):
                self._refusals.pop(txid, None)
                continue
            await self._chain.height()   # raises if bitcoind is unreachable: not a refusal
            self._refusals[txid] = self._refusals.get(txid, 0) + 1
            if self._refusals[txid] >= MAX_REFUSALS:
                log.warning("giving up broadcasting %s: bitcoind refused it %d times",
                            txid, MAX_REFUSALS)
                self._done(txid)

    def _done(self, txid: str) -> None:
        self._pending.pop(txid, None)
        self._refusals.pop(txid, None)
        self.unsent.discard(txid)
        self._store.commit_flight(kv_delete=[OUTBOX_PREFIX + txid])
