"""I/O: the chain watcher: feeds blocks and mempool transactions to the channels' monitors and
broadcasts the claims they ask for (LDK's ChainMonitor + broadcaster).

It follows the injected :class:`~channel.chain.ChainBackend`; after a restart it first replays
the blocks the monitors have not seen (a bounded look-back) and the mempool. Claims go out once,
are sent again at every block while unconfirmed (bitcoind may have dropped them), and zero-fee
anchors HTLC transactions get fee inputs from the node's wallet first.

It also feeds the node's :class:`~channel.chain_view.ChainView` (the circuit breaker): the tip
at start, each new block with its header time, each failed or recovered poll of the backend,
and the passing of time (:meth:`ChainWatcher.watch_tip_age`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from bitcoin.core import CTransaction

from channel.chain import BackendHealth, BlockEvent, ChainBackend, TxEvent
from channel.chain_view import ChainView, ChainViewStatus
from channel.errors import ChainError
from channel.manager import SWEEP_FEERATE_PER_KW, ChannelManager

if TYPE_CHECKING:   # the monitor loads with the first channel (idle node RSS)
    from channel.monitor import Claim, HtlcFeeBump

__all__ = ["ChainWatcher"]

log = logging.getLogger("chanlab.chain")

MAX_CATCH_UP = 2016   # blocks a restarted node looks back at most for an unknown monitor tip


def _htlc_input_weight(bump: HtlcFeeBump) -> int:
    """Weight of an anchors HTLC tx's input 0 once signed, for the wallet's fee estimate.

    41 non-witness bytes (outpoint, empty scriptSig, nSequence) count 4 each; the BOLT 3
    witness ``0 <remotehtlcsig> <localhtlcsig> <payment_preimage or empty> <witness_script>``
    counts 1 each, with signatures at their largest (72 DER bytes + the sighash byte)."""
    items = (0, 73, 73, 32 if bump.payment_preimage is not None else 0,
             len(bump.htlc_tx.htlc_output.witness_script))
    witness = 1 + sum((1 if n < 0xFD else 3) + n for n in items)
    return 41 * 4 + witness


class ChainWatcher:
    """Blocks and mempool transactions -> the manager's monitors; their claims -> the chain."""

    def __init__(self, chain: ChainBackend, manager: ChannelManager, *,
                 check_funding: Callable[[], Awaitable[None]],
                 persist_monitors: Callable[[], Awaitable[None]],
                 chain_view: ChainView | None = None,
                 on_chain_view: Callable[[ChainViewStatus], None] | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self._chain = chain
        self._view = chain_view
        self._on_view = on_chain_view      # the node: one log line, payments told
        self._clock = clock
        self._manager = manager
        self._check_funding = check_funding          # the node: funding depths -> channel_ready
        self._persist_monitors = persist_monitors    # the node: a flight of dirty monitors
        self._broadcast: dict[str, set[str]] = {}          # channel key -> claim txids sent
        self._fee_bumped: dict[str, dict[str, bytes]] = {}  # channel key -> txid -> tx sent

    async def run(self, from_height: int) -> None:
        """Catch up, then follow the chain until cancelled."""
        await self._view_start_tip(from_height)   # first: an old tip refuses HTLCs at once
        await self._check_funding()
        await self._catch_up(from_height)
        async for event in self._chain.events(from_height=from_height):
            if isinstance(event, BackendHealth):
                self._view_health(event)
            elif isinstance(event, BlockEvent):
                self._view_block(event)
                reorg = event.height <= self._manager.height  # replayed: undo the old branch
                txs = [CTransaction.deserialize(raw) for raw in event.transactions]
                self._manager.block_connected(event.height, txs, reorg=reorg)
                await self._check_funding()
                await self._rebroadcast_pending()
                await self._after_chain_event()
            elif isinstance(event, TxEvent):
                self._manager.transaction_seen(CTransaction.deserialize(event.raw_tx))
                await self._after_chain_event()

    # -- the chain view (circuit breaker) ----------------------------------------------------

    async def watch_tip_age(self, interval_s: float = 1.0) -> None:
        """Until cancelled: let the chain view notice a tip growing old with no event."""
        while True:
            await asyncio.sleep(interval_s)
            if self._view is not None:
                self._told(self._view.tick(self._clock()))

    async def _view_start_tip(self, height: int) -> None:
        """The tip found at start: its header time alone says how old it is."""
        if self._view is None:
            return
        try:
            block = await self._chain.block_at(height)
        except ChainError as exc:
            self._told(self._view.unreachable(self._clock(), str(exc)))
            return
        self._told(self._view.tip(self._clock(), height=height,
                                  header_time_s=block.header_time, new_block=False))

    def _view_block(self, event: BlockEvent) -> None:
        if self._view is not None:
            self._told(self._view.tip(self._clock(), height=event.height,
                                      header_time_s=event.header_time, new_block=True))

    def _view_health(self, event: BackendHealth) -> None:
        if self._view is None:
            return
        now = self._clock()
        self._told(self._view.reachable(now) if event.reachable
                   else self._view.unreachable(now, event.error))

    def _told(self, changed: ChainViewStatus | None) -> None:
        if changed is not None and self._on_view is not None:
            self._on_view(changed)

    async def _catch_up(self, tip_height: int) -> None:
        """After a restart: replay the blocks the monitors have not seen, and the mempool."""
        tips = [m.tip_height for _, m in self._manager.live_monitors()]
        known = [t for t in tips if t is not None]
        if not tips:
            return
        start = min(known) + 1 if len(known) == len(tips) else max(0, tip_height - MAX_CATCH_UP)
        for height in range(start, tip_height + 1):
            block = await self._chain.block_at(height)
            txs = [CTransaction.deserialize(raw) for raw in block.transactions]
            for handle, monitor in self._manager.live_monitors():
                tip = monitor.tip_height
                if tip is None or tip < height:
                    self._manager.note(handle, monitor.block_connected(height, txs))
        for raw in await self._chain.mempool_transactions():
            self._manager.transaction_seen(CTransaction.deserialize(raw))
        await self._after_chain_event()

    async def _rebroadcast_pending(self) -> None:
        """Once a block, send again our claims that are out but still unconfirmed: bitcoind may
        have dropped them (a restart without its mempool, a reorg, eviction)."""
        for handle in list(self._manager.handles.values()):
            if handle.monitor is None:
                continue
            sent = self._broadcast.get(handle.key, set())
            bumped = self._fee_bumped.setdefault(handle.key, {})
            for claim in handle.monitor.claims_to_broadcast(self._manager.height):
                if claim.txid_hex not in sent:
                    continue
                try:
                    await self._chain.broadcast(bumped.get(claim.txid_hex)
                                                or claim.tx.serialize())
                except ChainError as exc:  # e.g. its input is gone: the monitor re-plans
                    log.info("claim %s not re-broadcast: %s", claim.txid_hex, exc)
                    if bumped.pop(claim.txid_hex, None) is not None:
                        sent.discard(claim.txid_hex)  # fee inputs gone: re-fund

    async def _after_chain_event(self) -> None:
        """Broadcast what the monitors want now, and persist monitors that changed."""
        for handle in list(self._manager.handles.values()):
            if handle.monitor is None:
                continue
            sent = self._broadcast.setdefault(handle.key, set())
            for claim in handle.monitor.claims_to_broadcast(self._manager.height):
                if claim.txid_hex in sent:
                    continue
                try:
                    raw = await self._with_fees(claim)
                    # the monitor follows a fee-bumped tx under its own txid: mark both sent
                    sent.add(await self._chain.broadcast(raw))
                    sent.add(claim.txid_hex)
                    if claim.fee_bump is not None:
                        self._fee_bumped.setdefault(handle.key, {})[claim.txid_hex] = raw
                    self._manager.events.append(
                        f"channel {handle.key[:8]}: broadcast {claim.description}")
                except ChainError as exc:  # retried at the next block
                    log.info("claim %s not accepted yet: %s", claim.txid_hex, exc)
        await self._persist_monitors()

    async def _with_fees(self, claim: Claim) -> bytes:
        """``claim``'s tx, ready to send: a zero-fee anchors HTLC tx gets wallet fee inputs."""
        bump = claim.fee_bump
        if bump is None:
            raw: bytes = claim.tx.serialize()
            return raw
        funded = await self._chain.add_fee_inputs(
            bump.htlc_tx.tx.serialize(), external_input_weight=_htlc_input_weight(bump),
            feerate_sat_per_vb=-(-SWEEP_FEERATE_PER_KW * 4 // 1000))
        signed: bytes = bump.sign_htlc_input(CTransaction.deserialize(funded)).serialize()
        return signed
