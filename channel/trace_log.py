"""I/O: the node's record of every BOLT message it sent and received, for ``chanlab NAME trace``.

An append-only text file in the node's home, one line per message::

    SEQ TIME S|R PEER_ID_HEX TYPE_AND_PAYLOAD_HEX

Bounded: when the current file holds :data:`KEEP_MESSAGES` lines it becomes ``trace.log.1``
(replacing the older one) and a new file starts, so the last ``KEEP_MESSAGES`` messages (and
at most twice that) are always on disk. The trace is a teaching aid, not channel state: lines
are buffered and written :data:`FLUSH_AFTER_S` after the first of them (one ``write`` for a
whole flight of messages, not one per message: the payment path sends thousands a second),
never fsynced, and the node's one durable write per flight stays the only one
(``channel.store``). :meth:`TraceLog.read` (``trace``, ``trace --follow``) writes the buffer
first, so a reader through the node sees every message at once.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Final

if TYPE_CHECKING:
    from channel.trace import Direction

__all__ = ["FLUSH_AFTER_S", "KEEP_MESSAGES", "MAX_PENDING", "TraceLog", "TraceRecord"]

#: Messages kept at least (at most twice as many are on disk).
KEEP_MESSAGES: Final = 10_000
#: How long a recorded line may wait in memory before it is written to the file.
FLUSH_AFTER_S: Final = 0.05
#: At most this many recorded messages wait in memory (a flood is written as it comes).
MAX_PENDING: Final = 2_000


@dataclass(frozen=True, slots=True, kw_only=True)
class TraceRecord:
    """One recorded message: its sequence number, time (Unix seconds), way, peer and bytes."""

    seq: int
    time: float
    direction: Direction
    peer_id: bytes
    data: bytes

    def to_json(self) -> dict[str, object]:
        return {"seq": self.seq, "time": self.time, "direction": self.direction.value,
                "peer_id": self.peer_id.hex(), "data": self.data.hex()}


def _parse(line: str) -> TraceRecord | None:
    # imported here: channel.trace draws every message (tower ones too) and recording never
    # needs it, so an idle node does not load it (``make bench``: idle node RSS)
    from channel.trace import Direction
    parts = line.split()
    if len(parts) != 5 or parts[2] not in ("S", "R"):
        return None  # a line cut short by a crash
    try:
        return TraceRecord(seq=int(parts[0]), time=float(parts[1]),
                           direction=Direction.SENT if parts[2] == "S" else Direction.RECEIVED,
                           peer_id=bytes.fromhex(parts[3]), data=bytes.fromhex(parts[4]))
    except ValueError:
        return None


class TraceLog:
    """The trace file of one node: :meth:`record` appends, :meth:`read` returns the latest."""

    def __init__(self, path: Path, keep: int = KEEP_MESSAGES) -> None:
        self._path = path
        self._old = path.with_name(path.name + ".1")
        self._keep = keep
        current = self._lines(self._path)
        self._count = len(current)
        last = _parse(current[-1]) if current else None
        if last is None:
            older = self._lines(self._old)
            last = _parse(older[-1]) if older else None
        self._seq = last.seq if last is not None else 0
        self._file: IO[str] | None = None
        self._flush_due = False
        self._peer_hex: dict[bytes, str] = {}
        self._pending: list[tuple[float, bool, bytes, bytes]] = []

    @staticmethod
    def _lines(path: Path) -> list[str]:
        try:
            return path.read_text().splitlines()
        except FileNotFoundError:
            return []

    def record(self, peer_id: bytes, sent: bool, data: bytes) -> None:
        """Append one message (``type ‖ payload``) sent to or received from ``peer_id``."""
        # kept as bytes and written as text at the flush: the hex and the write of a flight
        # happen after it, while the peer works on its answer, not on the payment's path
        self._pending.append((time.time(), sent, peer_id, data))
        if self._file is None:   # the file exists from the first message on
            self._file = self._path.open("a", encoding="ascii")
        if len(self._pending) >= MAX_PENDING:   # a flood: memory stays bounded
            self.flush()
        if self._flush_due:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:   # no event loop (a tool or test): write the line now
            self.flush()
            return
        self._flush_due = True
        loop.call_later(FLUSH_AFTER_S, self.flush)

    def flush(self) -> None:
        """Write the recorded messages to the file now."""
        self._flush_due = False
        pending, self._pending = self._pending, []
        for when, sent, peer_id, data in pending:
            if self._file is None or self._count >= self._keep:
                if self._file is not None:
                    self._file.close()
                    self._path.replace(self._old)
                    self._count = 0
                self._file = self._path.open("a", encoding="ascii")
            self._seq += 1
            self._count += 1
            peer_hex = self._peer_hex.get(peer_id)
            if peer_hex is None:
                peer_hex = self._peer_hex[peer_id] = peer_id.hex()
            self._file.write(f"{self._seq} {when:.6f} {'S' if sent else 'R'} "
                             f"{peer_hex} {data.hex()}\n")
        if self._file is not None:
            self._file.flush()

    def read(self, limit: int, since: int = 0) -> list[TraceRecord]:
        """The last ``limit`` messages with a sequence number above ``since``, oldest first."""
        self.flush()
        records = [r for line in self._lines(self._old) + self._lines(self._path)
                   if (r := _parse(line)) is not None and r.seq > since]
        return records[-limit:] if limit > 0 else records

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None
