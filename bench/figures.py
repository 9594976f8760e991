"""What ``make bench`` reports: measured figures, their targets, and the closing table.

Pure: no I/O. The measuring modules build :class:`Figure` values; :func:`render_table` lays them
out; :func:`penalty_latency_s` turns timestamped mempool sightings into a breach-to-penalty
latency; :func:`parse_tower_output` reads the figures ``python -m bench.tower`` prints.
"""

from __future__ import annotations

import enum
import math
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = [
    "Figure",
    "Goal",
    "Sighting",
    "parse_tower_output",
    "penalty_latency_s",
    "render_table",
    "summarize",
]


class Goal(enum.Enum):
    """Which way a figure is better."""

    AT_LEAST = ">="
    AT_MOST = "<="


@dataclass(frozen=True, slots=True, kw_only=True)
class Figure:
    """One measured number (``value`` None when it could not be measured: ``note`` says why)."""

    section: str
    name: str
    value: float | None
    unit: str
    how: str
    target: float | None = None
    goal: Goal = Goal.AT_LEAST
    note: str = ""

    def __post_init__(self) -> None:
        if not self.name or not self.section:
            raise ValueError("a figure needs a section and a name")
        if self.value is not None and not math.isfinite(self.value):
            raise ValueError(f"{self.name}: value must be finite, got {self.value}")
        if self.value is None and not self.note:
            raise ValueError(f"{self.name}: a missing value needs a note saying why")

    @property
    def met(self) -> bool | None:
        """True/False against the target; None without a target or a value."""
        if self.target is None or self.value is None:
            return None
        if self.goal is Goal.AT_LEAST:
            return self.value >= self.target
        return self.value <= self.target

    def value_text(self) -> str:
        if self.value is None:
            return "not measured"
        return f"{_number(self.value)} {self.unit}".rstrip()

    def target_text(self) -> str:
        if self.target is None:
            return ""
        return f"{self.goal.value} {_number(self.target)} {self.unit}".rstrip()


def _number(value: float) -> str:
    """Three significant figures at least, thousands separated, no float noise."""
    magnitude = abs(value)
    if magnitude >= 100 or value == int(value):
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:,.1f}"
    if magnitude >= 1:
        return f"{value:,.2f}"
    return f"{value:.3g}"


def render_table(figures: Sequence[Figure]) -> str:
    """The closing table: one row per figure, grouped by section (in first-seen order), with
    target, verdict and a few words on how it was measured."""
    header = ("figure", "measured", "target", "verdict", "how")
    rows: list[tuple[str, ...]] = []
    sections: list[str] = []
    for fig in figures:
        if fig.section not in sections:
            sections.append(fig.section)
    for section in sections:
        rows.append((section,))
        for fig in figures:
            if fig.section != section:
                continue
            verdict = {True: "ok", False: "BELOW TARGET" if fig.goal is Goal.AT_LEAST
                       else "ABOVE TARGET", None: ""}[fig.met]
            if fig.value is None:
                verdict = fig.note
            rows.append(("  " + fig.name, fig.value_text(), fig.target_text(), verdict,
                         fig.how))
    full = [header, *(r for r in rows if len(r) > 1)]
    widths = [max(len(r[i]) for r in full) for i in range(len(header))]

    def line(row: tuple[str, ...]) -> str:
        cells = [f"{row[0]:<{widths[0]}}", f"{row[1]:>{widths[1]}}",
                 *(f"{cell:<{width}}" for cell, width in zip(row[2:], widths[2:], strict=True))]
        return "  ".join(cells).rstrip()

    rule = "-" * len(line(tuple("-" * w for w in widths)))
    lines = [rule, line(header), rule]
    lines += [row[0] if len(row) == 1 else line(row) for row in rows]
    lines.append(rule)
    return "\n".join(lines)


def summarize(samples: Iterable[float]) -> tuple[float, float, float]:
    """(median, min, max) of at least one sample."""
    values = sorted(samples)
    if not values:
        raise ValueError("no samples")
    return statistics.median(values), values[0], values[-1]


@dataclass(frozen=True, slots=True, kw_only=True)
class Sighting:
    """A transaction as bitcoind's ZMQ ``rawtx`` feed announced it, on the bench's clock."""

    at_s: float
    txid: str
    spends: tuple[tuple[str, int], ...]   # (txid, vout) of every input


def penalty_latency_s(sightings: Sequence[Sighting], breach_txid: str,
                      penalized_vouts: frozenset[int]) -> tuple[float, Sighting] | None:
    """Seconds from the breach's first sighting to the first transaction spending one of the
    breach's ``penalized_vouts`` (its to_local / HTLC outputs), and that transaction; None
    while either has not been seen. Both instants come from the same feed, so the feed's own
    delay cancels out."""
    breach = next((s for s in sightings if s.txid == breach_txid), None)
    if breach is None:
        return None
    for s in sightings:
        if s.txid == breach_txid:
            continue
        if any(txid == breach_txid and vout in penalized_vouts for txid, vout in s.spends):
            return s.at_s - breach.at_s, s
    return None


_TOWER_STORED = re.compile(r"(\w+)\s+(\d+) HTLC: kit\s+(\d+) B, stored\s+(\d+) B")
_TOWER_SQLITE = re.compile(r"SQLite store:\s+([\d.]+) us per non-matching tx.*?file (\d+) B per "
                           r"state")
_TOWER_DICT = re.compile(r"dict store:\s+([\d.]+) us per non-matching tx")
_TOWER_STATES = re.compile(r"store filled to ([\d,]+) states")
_TOWER_HIT = re.compile(r"breach hit:\s+([\d.]+) ms")


def parse_tower_output(text: str) -> dict[str, float]:
    """Figures from ``python -m bench.tower``'s output (keys present only when found):

    ``stored_bytes_0_htlc`` / ``_1_htlc`` / ``_2_htlc`` (largest over the commitment formats),
    ``states``, ``sqlite_lookup_us``, ``sqlite_file_bytes_per_state``, ``dict_lookup_us``,
    ``hit_ms``."""
    out: dict[str, float] = {}
    for _fmt, htlcs, _kit, stored in _TOWER_STORED.findall(text):
        key = f"stored_bytes_{htlcs}_htlc"
        out[key] = max(out.get(key, 0.0), float(stored))
    if m := _TOWER_STATES.search(text):
        out["states"] = float(m.group(1).replace(",", ""))
    if m := _TOWER_SQLITE.search(text):
        out["sqlite_lookup_us"] = float(m.group(1))
        out["sqlite_file_bytes_per_state"] = float(m.group(2))
    if m := _TOWER_DICT.search(text):
        out["dict_lookup_us"] = float(m.group(1))
    if m := _TOWER_HIT.search(text):
        out["hit_ms"] = float(m.group(1))
    return out
