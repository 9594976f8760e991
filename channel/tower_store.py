"""I/O: the watchtower's durable storage, one SQLite file (WAL, synchronous=FULL).

Implements :class:`channel.tower.TowerStore`: registered client keys and the encrypted blobs,
looked up by hint through the primary-key index of a WITHOUT ROWID table (a blob sits in the
index leaf, so a lookup is one B-tree descent). Almost every transaction the tower sees matches
nothing, so a set of the hints' first 8 bytes, kept in memory (loaded at open, about 60 bytes of
RAM per state), answers those in O(1) without touching SQLite. Every write is committed before
the method returns, so an upload acknowledged to a client survives a crash or ``kill -9``. Also
keeps the justice transactions the tower produced, so its daemon can rebroadcast them after a
restart until they confirm.

Schema (``PRAGMA user_version`` = 1)::

    clients(id INTEGER PRIMARY KEY, pubkey BLOB UNIQUE)
    blobs(hint BLOB, client_id INTEGER, blob BLOB, PRIMARY KEY (hint, client_id)) WITHOUT ROWID
    justice(txid BLOB PRIMARY KEY, breach_txid BLOB, raw BLOB, confirmed_height INTEGER)
    meta(key TEXT PRIMARY KEY, value TEXT)      the daemon's bookmarks (e.g. last scanned block)
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType

from channel.tower import JusticeTransaction

__all__ = ["SqliteTowerStore"]

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS clients (id INTEGER PRIMARY KEY, pubkey BLOB NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS blobs (
    hint BLOB NOT NULL, client_id INTEGER NOT NULL REFERENCES clients(id), blob BLOB NOT NULL,
    PRIMARY KEY (hint, client_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS justice (
    txid BLOB PRIMARY KEY, breach_txid BLOB NOT NULL, raw BLOB NOT NULL,
    confirmed_height INTEGER);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class SqliteTowerStore:
    """A :class:`channel.tower.TowerStore` in the SQLite file ``path`` (created if missing)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA foreign_keys=ON")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, _SCHEMA_VERSION):
            raise ValueError(f"{self.path}: tower schema version {version}, expected "
                             f"{_SCHEMA_VERSION}")
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")
        self._prefixes: set[int] = {
            _prefix(bytes(hint)) for (hint,) in self._db.execute("SELECT hint FROM blobs")}
        self._ids: dict[bytes, int] = {}
        self._pubkeys: dict[int, bytes] = {}
        for client_id, pubkey in self._db.execute("SELECT id, pubkey FROM clients"):
            self._ids[bytes(pubkey)] = client_id
            self._pubkeys[client_id] = bytes(pubkey)

    # -- TowerStore --------------------------------------------------------------------------

    def add_client(self, client_pubkey: bytes) -> None:
        if client_pubkey in self._ids:
            return
        cur = self._db.execute("INSERT INTO clients (pubkey) VALUES (?)", (client_pubkey,))
        client_id = cur.lastrowid
        if client_id is None:
            raise sqlite3.DatabaseError("INSERT INTO clients returned no rowid")
        self._ids[client_pubkey] = client_id
        self._pubkeys[client_id] = client_pubkey

    def is_client(self, client_pubkey: bytes) -> bool:
        return client_pubkey in self._ids

    def clients(self) -> list[bytes]:
        """Every registered client key, in registration order."""
        return [self._pubkeys[i] for i in sorted(self._pubkeys)]

    def get_blob(self, client_pubkey: bytes, hint: bytes) -> bytes | None:
        client_id = self._ids.get(client_pubkey)
        if client_id is None:
            return None
        row = self._db.execute("SELECT blob FROM blobs WHERE hint = ? AND client_id = ?",
                               (hint, client_id)).fetchone()
        return None if row is None else bytes(row[0])

    def put_blob(self, client_pubkey: bytes, hint: bytes, blob: bytes) -> None:
        self.put_blobs(client_pubkey, [(hint, blob)])

    def put_blobs(self, client_pubkey: bytes, items: Iterable[tuple[bytes, bytes]]) -> None:
        """Store many (hint, blob) of one client in one transaction (one fsync)."""
        client_id = self._ids.get(client_pubkey)
        if client_id is None:
            raise KeyError("unknown client")
        rows = [(hint, client_id, blob) for hint, blob in items]
        with self._transaction():
            self._db.executemany(
                "INSERT OR REPLACE INTO blobs (hint, client_id, blob) VALUES (?, ?, ?)", rows)
        self._prefixes.update(_prefix(hint) for hint, _, _ in rows)

    def blobs_for_hint(self, hint: bytes) -> list[tuple[bytes, bytes]]:
        if _prefix(hint) not in self._prefixes:
            return []
        rows = self._db.execute("SELECT client_id, blob FROM blobs WHERE hint = ?",
                                (hint,)).fetchall()
        return [(self._pubkeys[client_id], bytes(blob)) for client_id, blob in rows]

    def count_blobs(self) -> int:
        row = self._db.execute("SELECT COUNT(*) FROM blobs").fetchone()
        return int(row[0])

    # -- justice transactions ----------------------------------------------------------------

    def record_justice(self, justice: JusticeTransaction) -> bool:
        """Remember a justice tx to (re)broadcast; False if it was already recorded."""
        cur = self._db.execute(
            "INSERT OR IGNORE INTO justice (txid, breach_txid, raw, confirmed_height) "
            "VALUES (?, ?, ?, NULL)", (justice.txid, justice.breach_txid,
                                       justice.tx.serialize()))
        return cur.rowcount == 1

    def unconfirmed_justice(self) -> list[tuple[bytes, bytes]]:
        """(txid, raw tx) of every justice tx not confirmed yet: rebroadcast them."""
        rows = self._db.execute(
            "SELECT txid, raw FROM justice WHERE confirmed_height IS NULL ORDER BY rowid")
        return [(bytes(txid), bytes(raw)) for txid, raw in rows]

    def set_justice_height(self, txid: bytes, height: int | None) -> None:
        """Mark a justice tx confirmed at ``height`` (None: back to unconfirmed, a reorg)."""
        self._db.execute("UPDATE justice SET confirmed_height = ? WHERE txid = ?",
                         (height, txid))

    def justice_confirmed_from(self, height: int) -> list[bytes]:
        """Txids of justice txs marked confirmed at ``height`` or above (a reorg undoes them)."""
        rows = self._db.execute("SELECT txid FROM justice WHERE confirmed_height >= ?",
                                (height,))
        return [bytes(txid) for (txid,) in rows]

    # -- bookmarks -------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # -- lifecycle ------------------------------------------------------------------------------

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db)

    def close(self) -> None:
        """Close the database (a WAL checkpoint happens on the last close)."""
        self._db.close()

    def __enter__(self) -> SqliteTowerStore:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def _prefix(hint: bytes) -> int:
    return int.from_bytes(hint[:8], "little")


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back if the body raises."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
