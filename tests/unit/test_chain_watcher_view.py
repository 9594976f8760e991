"""The chain watcher feeds the node's chain view: the start tip, failed and recovered polls,
new blocks with their header times; one callback per transition, in order."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

from test_manager import Net

from channel.chain import BackendHealth, BlockEvent, FundingTransaction, TxEvent
from channel.chain_view import ChainView, ChainViewStatus
from channel.chain_watcher import ChainWatcher
from channel.errors import ChainError

T0 = 1_800_000_000.0
LIMIT_S = 10.0


def _block(height: int, header_time: float) -> BlockEvent:
    return BlockEvent(height=height, block_hash=hashlib.sha256(bytes([height])).hexdigest(),
                      transactions=(), header_time=int(header_time))


class _ScriptedChain:
    """A tip at height 5, then ``script``: (the clock when it comes, the event)."""

    def __init__(self, script: list[tuple[float, BlockEvent | BackendHealth]]) -> None:
        self.script = script
        self.now = T0

    @property
    def chain(self) -> str:
        return "regtest"

    async def height(self) -> int:
        return 5

    async def block_at(self, height: int) -> BlockEvent:
        return _block(height, T0 - 1)

    async def mempool_transactions(self) -> list[bytes]:
        return []

    async def events(self, from_height: int | None = None,
                     ) -> AsyncIterator[BlockEvent | TxEvent | BackendHealth]:
        for now, event in self.script:
            self.now = now
            yield event

    async def broadcast(self, raw_tx: bytes) -> str:
        raise ChainError("not in this test")

    async def confirmations(self, txid_hex: str) -> int:
        return 0

    async def fund_output(self, script_pubkey: bytes, amount_sat: int,
                          feerate_sat_per_vb: int) -> FundingTransaction:
        raise ChainError("not in this test")

    async def add_fee_inputs(self, raw_tx: bytes, *, external_input_weight: int,
                             feerate_sat_per_vb: int) -> bytes:
        raise ChainError("not in this test")

    async def release_inputs(self, raw_tx: bytes) -> None:
        raise ChainError("not in this test")

    async def new_script_pubkey(self) -> bytes:
        raise ChainError("not in this test")

    async def wallet_balance_sat(self) -> int:
        return 0

    async def aclose(self) -> None:
        return None


async def _nothing() -> None:
    return None


def test_watcher_reports_each_transition_of_the_chain_view() -> None:
    """Unreachable -> stale; a good poll -> fresh; an old block arriving -> stale by tip age;
    a current block -> fresh: four callbacks, nothing for events that change nothing."""
    chain = _ScriptedChain([
        (T0 + 1, BackendHealth(reachable=False, error="connection refused")),
        (T0 + 2, BackendHealth(reachable=False, error="connection refused")),
        (T0 + 3, BackendHealth(reachable=True)),
        (T0 + 4, _block(6, T0 + 4)),
        (T0 + 5, _block(7, T0 - 3600)),   # bitcoind catching up: an hour-old block
        (T0 + 6, _block(8, T0 + 6)),
    ])
    manager = Net().add("alice")
    view = ChainView(max_tip_age_s=LIMIT_S, now_s=T0)
    changes: list[ChainViewStatus] = []
    watcher = ChainWatcher(chain, manager, check_funding=_nothing, persist_monitors=_nothing,
                           chain_view=view, on_chain_view=changes.append,
                           clock=lambda: chain.now)
    asyncio.run(watcher.run(5))
    assert [(c.freshness.value, c.reason and c.reason.value, c.detail, c.since_s)
            for c in changes] == [
        ("stale", "bitcoind_unreachable", "bitcoind unreachable: connection refused", T0 + 1),
        ("fresh", None, "tip 5, 4 s old", T0 + 3),
        ("stale", "tip_too_old", "tip 7 is 3605.0 s old, over the 10 s limit", T0 + 5),
        ("fresh", None, "tip 8, 0 s old", T0 + 6),
    ]
    assert manager.height == 8
