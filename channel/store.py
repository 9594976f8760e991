"""I/O: a node's durable state in SQLite: channels, monitors, payments, invoices.

One write per protocol flight: :meth:`NodeStore.commit_flight` writes everything a flight
changed in one transaction, and SQLite's WAL with ``synchronous=FULL`` makes it durable (fsync
of the WAL) before it returns; the peer loop sends the flight's messages only afterwards. The
database holds channel secrets, so it is created with mode 0600.
"""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from channel.errors import StartRefused

__all__ = ["ChannelRow", "ForwardRow", "NodeStore", "PaymentRow", "holds_state"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS channels (
    key TEXT PRIMARY KEY,          -- temporary_channel_id hex: stable for the channel's life
    peer_id TEXT NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS monitors (
    key TEXT PRIMARY KEY,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS monitor_updates (
    key TEXT NOT NULL,             -- updates applied since the monitor's last snapshot
    seq INTEGER NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (key, seq)
);
CREATE TABLE IF NOT EXISTS payments (
    payment_hash TEXT PRIMARY KEY,
    direction TEXT NOT NULL,       -- 'in' (an invoice of ours) or 'out'
    amount_msat INTEGER NOT NULL,
    status TEXT NOT NULL,          -- pending, succeeded, failed
    preimage TEXT,
    payment_secret TEXT,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS forwards (
    incoming_key TEXT NOT NULL,    -- a forwarded HTLC: incoming channel key and htlc id
    incoming_htlc_id INTEGER NOT NULL,
    record TEXT NOT NULL,          -- channel.forwarder.ForwardLink
    PRIMARY KEY (incoming_key, incoming_htlc_id)
);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS


def _dumps(record: dict[str, Any]) -> str:
    """Compact JSON, as ``json.dumps(record, separators=(",", ":"))`` writes it.

    orjson: a channel record with a few hundred HTLCs in flight is a megabyte of JSON written
    on every flight, ten times faster this way. Non-str keys become strings as in ``json``;
    dataclasses are refused as ``json`` refuses them.
    """
    return orjson.dumps(record, option=_ORJSON_OPTIONS).decode()


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelRow:
    key: str
    peer_id: str
    record: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentRow:
    payment_hash: str
    direction: str
    amount_msat: int
    status: str
    preimage: str | None = None
    payment_secret: str | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class ForwardRow:
    """A forward link to write (``record``) or, resolved on both sides, to delete (None)."""

    incoming_key: str
    incoming_htlc_id: int
    record: dict[str, Any] | None


def holds_state(path: Path) -> bool:
    """Whether ``path`` is a node database that ever recorded anything (a started node writes
    its sweep script on its first start): False for a missing, empty or blank file."""
    if not path.exists() or path.stat().st_size == 0:
        return False
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            (count,) = db.execute("SELECT count(*) FROM kv").fetchone()
        finally:
            db.close()
    except sqlite3.OperationalError:   # no kv table: a blank database
        return False
    except sqlite3.DatabaseError:      # not a database at all: NodeStore says so
        return True
    return bool(count)


class NodeStore:
    """The node's SQLite database (one connection, used from the node's event loop only)."""

    def __init__(self, path: Path) -> None:
        new = not path.exists()
        if new:
            fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
            os.close(fd)
        os.chmod(path, 0o600)
        self._db = sqlite3.connect(path, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(_SCHEMA)
            self._db.execute("SELECT count(*) FROM channels").fetchone()
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise StartRefused(f"{path} is not a readable node database ({exc}): restore it "
                               f"from your last copy of it; starting fresh beside this key "
                               f"would forget its channels") from None

    def close(self) -> None:
        self._db.close()

    def commit_flight(self, *, channels: Iterable[ChannelRow] = (),
                      monitors: Iterable[tuple[str, dict[str, Any]]] = (),
                      monitor_updates: Iterable[tuple[str, int, dict[str, Any]]] = (),
                      payments: Iterable[PaymentRow] = (),
                      kv: Iterable[tuple[str, str]] = (),
                      forget: Iterable[str] = (), kv_delete: Iterable[str] = (),
                      forwards: Iterable[ForwardRow] = ()) -> None:
        """Write a flight's changes atomically and durably (``forget``: channel keys whose
        rows go; ``kv_delete``: kv keys that go)."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            # an empty executemany still costs a statement lookup: a payment's flight writes
            # one channel row and a monitor update or two, so only those run
            gone = [(k,) for k in forget]
            if gone:
                for table in ("channels", "monitors", "monitor_updates"):
                    db.executemany(f"DELETE FROM {table} WHERE key = ?", gone)
            kv_gone = [(f"funding_tx:{k}",) for (k,) in gone] + [(k,) for k in kv_delete]
            if kv_gone:
                db.executemany("DELETE FROM kv WHERE key = ?", kv_gone)
            channel_rows = [(c.key, c.peer_id, _dumps(c.record)) for c in channels]
            if channel_rows:
                db.executemany("INSERT OR REPLACE INTO channels VALUES (?, ?, ?)", channel_rows)
            snapshots = [(k, _dumps(r)) for k, r in monitors]
            if snapshots:
                db.executemany("INSERT OR REPLACE INTO monitors VALUES (?, ?)", snapshots)
                # a snapshot includes every update before it
                db.executemany("DELETE FROM monitor_updates WHERE key = ?",
                               [(k,) for k, _ in snapshots])
            update_rows = [(k, seq, _dumps(r)) for k, seq, r in monitor_updates]
            if update_rows:
                db.executemany("INSERT OR REPLACE INTO monitor_updates VALUES (?, ?, ?)",
                               update_rows)
            payment_rows = [(p.payment_hash, p.direction, p.amount_msat, p.status, p.preimage,
                             p.payment_secret, p.detail) for p in payments]
            if payment_rows:
                db.executemany("INSERT OR REPLACE INTO payments VALUES (?, ?, ?, ?, ?, ?, ?)",
                               payment_rows)
            kv_rows = list(kv)
            if kv_rows:
                db.executemany("INSERT OR REPLACE INTO kv VALUES (?, ?)", kv_rows)
            for f in forwards:   # in order: a link may be written, then deleted, in one flight
                if f.record is None:
                    db.execute("DELETE FROM forwards WHERE incoming_key = ? AND "
                               "incoming_htlc_id = ?", (f.incoming_key, f.incoming_htlc_id))
                else:
                    db.execute("INSERT OR REPLACE INTO forwards VALUES (?, ?, ?)",
                               (f.incoming_key, f.incoming_htlc_id, _dumps(f.record)))
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def forwards(self) -> list[dict[str, Any]]:
        """The forward links in flight (records of ``channel.forwarder.ForwardLink``)."""
        rows = self._db.execute("SELECT record FROM forwards").fetchall()
        return [json.loads(r) for (r,) in rows]

    def channels(self) -> list[ChannelRow]:
        rows = self._db.execute("SELECT key, peer_id, record FROM channels").fetchall()
        return [ChannelRow(key=k, peer_id=p, record=json.loads(r)) for k, p, r in rows]

    def monitors(self) -> dict[str, dict[str, Any]]:
        rows = self._db.execute("SELECT key, record FROM monitors").fetchall()
        return {k: json.loads(r) for k, r in rows}

    def monitor_updates(self, key: str) -> list[dict[str, Any]]:
        """Updates of monitor ``key`` not yet folded into its snapshot, in order."""
        rows = self._db.execute("SELECT record FROM monitor_updates WHERE key = ? ORDER BY seq",
                                (key,)).fetchall()
        return [json.loads(r) for (r,) in rows]

    def payments(self) -> list[PaymentRow]:
        rows = self._db.execute(
            "SELECT payment_hash, direction, amount_msat, status, preimage, payment_secret, "
            "detail FROM payments").fetchall()
        return [PaymentRow(payment_hash=h, direction=d, amount_msat=a, status=s, preimage=pre,
                           payment_secret=sec, detail=det)
                for h, d, a, s, pre, sec, det in rows]

    def payment(self, payment_hash: str) -> PaymentRow | None:
        for p in self.payments_where(payment_hash):
            return p
        return None

    def payments_where(self, payment_hash: str) -> list[PaymentRow]:
        rows = self._db.execute(
            "SELECT payment_hash, direction, amount_msat, status, preimage, payment_secret, "
            "detail FROM payments WHERE payment_hash = ?", (payment_hash,)).fetchall()
        return [PaymentRow(payment_hash=h, direction=d, amount_msat=a, status=s, preimage=pre,
                           payment_secret=sec, detail=det)
                for h, d, a, s, pre, sec, det in rows]

    def get(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def kv_with_prefix(self, prefix: str) -> dict[str, str]:
        """The kv entries whose key starts with ``prefix``, by the rest of their key."""
        rows = self._db.execute("SELECT key, value FROM kv WHERE key >= ? AND key < ?",
                                (prefix, prefix + "\U0010ffff")).fetchall()
        return {str(k)[len(prefix):]: str(v) for k, v in rows}
