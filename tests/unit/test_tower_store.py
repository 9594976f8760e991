"""The tower's SQLite store: durable settings, restart survival, lookup by hint, justice log."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from chanpair import breach
from segwit_check import verify_spends

from channel.keys import PrivateKey
from channel.tower import TowerClient, Watchtower, justice_kit_for_state
from channel.tower_store import SqliteTowerStore
from channel.types import CommitmentFormat

CLIENT = TowerClient(PrivateKey(b"\x31" * 32))
OTHER = TowerClient(PrivateKey(b"\x32" * 32))


def test_store_uses_wal_and_full_sync(tmp_path: Path) -> None:
    """The database is in WAL mode with synchronous=FULL, schema version 1."""
    with SqliteTowerStore(tmp_path / "tower.db") as store:
        db = store._db
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA synchronous").fetchone()[0] == 2
        assert db.execute("PRAGMA user_version").fetchone()[0] == 1


def test_tower_survives_restart(tmp_path: Path) -> None:
    """Clients and blobs stored before a restart answer a breach seen after it, identically."""
    p, old = breach(CommitmentFormat.STATIC_REMOTEKEY, offered=True, received=True)
    path = tmp_path / "tower.db"
    store = SqliteTowerStore(path)
    tower = Watchtower(store)
    tower.register_client(CLIENT.pubkey)
    for number in p.bob_monitor.revoked_commitment_numbers:
        txid, kit = justice_kit_for_state(p.bob_monitor, number)
        assert tower.accept(CLIENT.upload_kit(kit, txid)) is True
    stored = store.count_blobs()
    before = tower.on_raw_transaction(old.commitment_tx.serialize())
    store.close()
    with SqliteTowerStore(path) as reopened:
        again = Watchtower(reopened)
        assert reopened.is_client(CLIENT.pubkey)
        assert not reopened.is_client(OTHER.pubkey)
        assert reopened.count_blobs() == stored == len(p.bob_monitor.revoked_commitment_numbers)
        after = again.on_raw_transaction(old.commitment_tx.serialize())
        assert [j.tx.serialize() for j in after] == [j.tx.serialize() for j in before]
        assert len(after) == 3
        for j in after:
            verify_spends(j.tx, {old.commitment.txid: old.commitment_tx})
        txid, kit = justice_kit_for_state(p.bob_monitor, old.commitment.commitment_number)
        assert again.accept(CLIENT.upload_kit(kit, txid)) is False   # duplicate, still stored


def test_lookup_by_hint_returns_every_client(tmp_path: Path) -> None:
    """Two clients storing under the same hint both come back from one lookup."""
    with SqliteTowerStore(tmp_path / "t.db") as store:
        store.add_client(CLIENT.pubkey)
        store.add_client(OTHER.pubkey)
        store.add_client(CLIENT.pubkey)
        store.put_blob(CLIENT.pubkey, b"h" * 16, b"one" * 10)
        store.put_blob(OTHER.pubkey, b"h" * 16, b"two" * 10)
        store.put_blob(OTHER.pubkey, b"i" * 16, b"three" * 10)
        assert sorted(store.blobs_for_hint(b"h" * 16)) == sorted(
            [(CLIENT.pubkey, b"one" * 10), (OTHER.pubkey, b"two" * 10)])
        assert store.get_blob(OTHER.pubkey, b"i" * 16) == b"three" * 10
        assert store.get_blob(CLIENT.pubkey, b"i" * 16) is None
        assert store.blobs_for_hint(b"j" * 16) == []
        assert store.count_blobs() == 3
        with pytest.raises(KeyError):
            store.put_blob(b"\x02" * 33, b"h" * 16, b"x" * 20)


def test_justice_log_survives_restart(tmp_path: Path) -> None:
    """Justice txs recorded before a restart are still to be rebroadcast after it, until
    marked confirmed; a reorg can mark one unconfirmed again."""
    p, old = breach(CommitmentFormat.ANCHORS, offered=False, received=False)
    path = tmp_path / "tower.db"
    with SqliteTowerStore(path) as store:
        tower = Watchtower(store)
        tower.register_client(CLIENT.pubkey)
        txid, kit = justice_kit_for_state(p.bob_monitor, old.commitment.commitment_number)
        tower.accept(CLIENT.upload_kit(kit, txid))
        (justice,) = tower.on_transaction(old.commitment_tx)
        assert store.record_justice(justice) is True
        assert store.record_justice(justice) is False
    with SqliteTowerStore(path) as store:
        assert store.unconfirmed_justice() == [(justice.txid, justice.tx.serialize())]
        store.set_justice_height(justice.txid, 812)
        assert store.unconfirmed_justice() == []
        store.set_justice_height(justice.txid, None)
        assert [t for t, _ in store.unconfirmed_justice()] == [justice.txid]


def test_unknown_schema_version_is_refused(tmp_path: Path) -> None:
    """A database written by a future schema is not silently reused."""
    path = tmp_path / "t.db"
    db = sqlite3.connect(path)
    db.execute("PRAGMA user_version=7")
    db.close()
    with pytest.raises(ValueError, match="schema version 7"):
        SqliteTowerStore(path)
