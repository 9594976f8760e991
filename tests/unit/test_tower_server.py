"""The tower daemon's chain feed: a block found while it starts is read without waiting for
the next one.

The chain is a stub :class:`channel.chain.ChainBackend` that keeps its blocks in a list and
follows bitcoind's ``events`` contract (blocks after ``from_height``; None: after the tip).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

from chanpair import BOB_DEST, Pair, breach

from channel.chain import BlockEvent, FundingTransaction, TxEvent
from channel.errors import ChainError
from channel.keys import PrivateKey
from channel.tower import (
    MemoryTowerStore,
    SignedUpload,
    TowerClient,
    Watchtower,
    justice_kit_for_state,
)
from channel.tower_server import TowerServer, TowerSettings
from channel.tower_store import SqliteTowerStore
from channel.types import CommitmentFormat, OutPoint

CLIENT = TowerClient(PrivateKey(b"\x41" * 32))


class _Chain:
    """Blocks in a list; ``race`` is mined while the tower reads the mempool, the last step of
    its catch-up, i.e. after it read the tip and before it follows new blocks."""

    def __init__(self, race: tuple[bytes, ...]) -> None:
        self.blocks = [self._block(0, ())]
        self.race: tuple[bytes, ...] | None = race
        self.broadcasts: list[bytes] = []

    @staticmethod
    def _block(height: int, transactions: tuple[bytes, ...]) -> BlockEvent:
        block_hash = hashlib.sha256(height.to_bytes(4, "big")).hexdigest()
        return BlockEvent(height=height, block_hash=block_hash, transactions=transactions)

    @property
    def chain(self) -> str:
        return "regtest"

    async def height(self) -> int:
        return len(self.blocks) - 1

    async def block_at(self, height: int) -> BlockEvent:
        return self.blocks[height]

    async def mempool_transactions(self) -> list[bytes]:
        if self.race is not None:
            self.blocks.append(self._block(len(self.blocks), self.race))
            self.race = None
        return []

    async def events(self, from_height: int | None = None
                     ) -> AsyncIterator[BlockEvent | TxEvent]:
        seen = await self.height() if from_height is None else from_height
        while True:
            while seen < len(self.blocks) - 1:
                seen += 1
                yield self.blocks[seen]
            await asyncio.sleep(0.005)

    async def broadcast(self, raw_tx: bytes) -> str:
        self.broadcasts.append(raw_tx)
        return hashlib.sha256(hashlib.sha256(raw_tx).digest()).digest()[::-1].hex()

    async def confirmations(self, txid_hex: str) -> int:
        return 0

    async def fund_output(self, script_pubkey: bytes, amount_sat: int,
                          feerate_sat_per_vb: int) -> FundingTransaction:
        raise ChainError("a tower has no wallet")

    async def add_fee_inputs(self, raw_tx: bytes, *, external_input_weight: int,
                             feerate_sat_per_vb: int) -> bytes:
        raise ChainError("a tower has no wallet")

    async def release_inputs(self, raw_tx: bytes) -> None:
        raise ChainError("a tower has no wallet")

    async def new_script_pubkey(self) -> bytes:
        raise ChainError("a tower has no wallet")

    async def wallet_balance_sat(self) -> int:
        raise ChainError("a tower has no wallet")

    async def aclose(self) -> None:
        return None


def _uploads(p: Pair) -> list[SignedUpload]:
    """What Bob's node uploaded: one signed kit per revoked state."""
    out = []
    for number in p.bob_monitor.revoked_commitment_numbers:
        txid, kit = justice_kit_for_state(p.bob_monitor, number)
        out.append(CLIENT.upload_kit(kit, txid))
    return out


def _fill(tower: Watchtower, uploads: list[SignedUpload]) -> None:
    tower.register_client(CLIENT.pubkey)
    for upload in uploads:
        assert tower.accept(upload) is True


def test_a_breach_mined_while_the_tower_starts_is_punished_without_a_later_block(
        tmp_path: Path) -> None:
    """A revoked commitment confirmed between the tower's catch-up and its subscription to new
    blocks is read at once: the tower bookmarks that block and broadcasts its justice tx."""
    p, old = breach(CommitmentFormat.STATIC_REMOTEKEY, offered=False, received=False)
    uploads = _uploads(p)
    home = tmp_path / "t"
    home.mkdir(mode=0o700)
    with SqliteTowerStore(home / "tower.db") as store:
        _fill(Watchtower(store), uploads)
    breach_raw = old.commitment_tx.serialize()
    chain = _Chain(race=(breach_raw,))

    async def run() -> int:
        server = TowerServer(TowerSettings(name="t", home=home), chain)
        await server.start()
        try:
            for _ in range(200):   # up to 1 s; the stub feeds the block within a few ms
                if (await server.cmd_info())["scanned_height"] == 1:
                    break
                await asyncio.sleep(0.005)
            return int((await server.cmd_info())["scanned_height"])
        finally:
            await server.stop()

    assert asyncio.run(run()) == 1
    # the justice tx is the one the pure tower makes from the same uploads: to_local to Bob
    reference = Watchtower(MemoryTowerStore())
    _fill(reference, uploads)
    (justice,) = reference.on_raw_transaction(breach_raw)
    c = old.commitment
    assert c.to_local_vout is not None
    assert justice.spends == OutPoint(txid=c.txid, vout=c.to_local_vout)
    assert bytes(justice.tx.vout[0].scriptPubKey) == BOB_DEST
    assert chain.broadcasts and set(chain.broadcasts) == {justice.tx.serialize()}
