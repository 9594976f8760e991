"""``python -m bench --compare REV``: today's payment figures against another revision's, on
the same machine in the same minutes.

A shared machine's speed drifts by ±20% within minutes, more than the differences worth
knowing, so two benchmark runs an hour apart (or even back to back) compare the machine, not
the code. Here both trees run at once, each with its own bitcoind and two nodes, and take turns
(:mod:`bench.ab_driver`): a chunk of one tree, then a chunk of the other, so each pair of
adjacent chunks saw the same machine. The figure is the median over chunks of the ratio of
adjacent runs. REV is checked out in a temporary worktree with its own venv (``make
.venv/.installed`` there: the revision's own dependencies).

``--instructions`` counts instead of timing: both nodes run under valgrind's callgrind and the
figure is their user-space instructions per payment (:mod:`bench.ab_driver`), which no
other load on the machine changes. It leaves out kernel time (the fsync of each flight, the
sockets), and an interpreted Python instruction costs more time than one of libsecp256k1's, so
it complements the rate rather than replacing it.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["compare_with", "instruction_lines", "instructions_with"]

_REPO = Path(__file__).resolve().parent.parent
_DRIVER = Path(__file__).resolve().parent / "ab_driver.py"

Say = Callable[[str], None]


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(_REPO), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


def _runs(rows: list[dict[str, Any]], tree: str, batch: int) -> dict[int, dict[str, Any]]:
    return {r["chunk"]: r for r in rows if r["tree"] == tree and r["batch"] == batch}


def summarise(rows: list[dict[str, Any]], batches: tuple[int, ...] = (1, 200)) -> list[str]:
    """One line per batch size: medians of each tree and of the adjacent-chunk ratios."""
    lines = []
    for batch in batches:
        ours, theirs = _runs(rows, "today", batch), _runs(rows, "rev", batch)
        chunks = sorted(set(ours) & set(theirs))
        if not chunks:
            continue
        rate = [ours[c]["payments_per_s"] / theirs[c]["payments_per_s"] for c in chunks]
        cpu = [ours[c]["cpu_ms_per_payment"] / theirs[c]["cpu_ms_per_payment"] for c in chunks]
        what = "one in flight" if batch == 1 else f"batched ({batch} per commitment)"
        today = statistics.median(r["payments_per_s"] for r in ours.values())
        then = statistics.median(r["payments_per_s"] for r in theirs.values())
        lines.append(
            f"{what}: today {today:.0f} payments/s, REV {then:.0f}; today/REV rate "
            f"{statistics.median(rate):.3f}, CPU per payment "
            f"{statistics.median(cpu):.3f} (median of {len(chunks)} adjacent pairs; rates "
            f"{min(rate):.2f}..{max(rate):.2f})")
    return lines


@contextlib.contextmanager
def _revision_tree(rev: str, say: Say) -> Iterator[tuple[Path, Path]]:
    """``rev`` checked out in a temporary worktree with its own venv; (worktree, scratch)."""
    commit = _git("rev-parse", "--verify", f"{rev}^{{commit}}")
    work = Path(tempfile.mkdtemp(prefix="chanlab-compare-"))
    tree = work / "rev"
    try:
        _git("worktree", "add", "--detach", str(tree), commit)
        say(f"REV {commit[:12]} in {tree}: making its venv")
        subprocess.run(["make", "-s", ".venv/.installed"], cwd=tree, check=True,
                       stdout=subprocess.DEVNULL)
        yield tree, work
    finally:
        subprocess.run(["git", "-C", str(_REPO), "worktree", "remove", "--force", str(tree)],
                       capture_output=True, check=False)
        shutil.rmtree(work, ignore_errors=True)


def compare_with(rev: str, say: Say, *, chunks: int = 8, one_in_flight: int = 300,
                 batched: int = 1000, rows_path: Path | None = None) -> list[str]:
    """Run today's tree and ``rev`` in turns; return the summary lines (and write every
    chunk's row to ``rows_path``: a drift over the chunks shows there)."""
    with _revision_tree(rev, say) as (tree, work):
        turn = work / "turn"
        procs = []
        for name, other, root, python in (
                ("today", "rev", _REPO, Path(sys.executable)),
                ("rev", "today", tree, tree / ".venv" / "bin" / "python")):
            procs.append(subprocess.Popen(
                [str(python), str(_DRIVER), name, other, str(turn), str(chunks),
                 str(one_in_flight), str(batched)],
                cwd=root, stdout=subprocess.PIPE, text=True))
        while not all((work / f"ready-{n}").exists() for n in ("today", "rev")):
            if any(p.poll() not in (None, 0) for p in procs):
                raise RuntimeError("a benchmark side failed before it was ready")
            time.sleep(0.2)
        say(f"both ready: {chunks} chunks of {one_in_flight} payments one in flight and "
            f"{batched} batched, in turns")
        turn.write_text("today\n")
        rows = []
        try:
            for proc in procs:
                out, _ = proc.communicate()
                if proc.returncode != 0:
                    raise RuntimeError(f"a benchmark side exited with {proc.returncode}")
                rows += [json.loads(line) for line in out.splitlines() if line.startswith("{")]
        finally:
            for proc in procs:   # one side failed: the other must not wait for its turn forever
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(timeout=60)
        if rows_path is not None:
            rows_path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return summarise(rows)


def instructions_with(rev: str, say: Say, *, one_in_flight: int = 60,
                      batched: int = 400) -> list[str]:
    """Both nodes' user-space instructions per payment, today's and ``rev``'s, counted by
    callgrind (:mod:`bench.ab_driver`): one after the other, since a count does not
    depend on what else the machine runs. Needs valgrind."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise RuntimeError("--instructions needs valgrind (callgrind): install it, or compare "
                           "rates without --instructions")
    with _revision_tree(rev, say) as (tree, work):
        counts: dict[str, dict[int, float]] = {}
        for name, root, python in (("today", _REPO, Path(sys.executable)),
                                   ("rev", tree, tree / ".venv" / "bin" / "python")):
            folder = work / f"callgrind-{name}"
            folder.mkdir()
            say(f"{name}: {one_in_flight} payments one in flight and {batched} batched, "
                "both nodes under callgrind")
            done = subprocess.run(
                [str(python), str(_DRIVER), "--instructions", str(folder), str(one_in_flight),
                 str(batched)], cwd=root, stdout=subprocess.PIPE, text=True, check=False)
            if done.returncode != 0:
                raise RuntimeError(f"the {name} side exited with {done.returncode}")
            rows = [json.loads(line) for line in done.stdout.splitlines()
                    if line.startswith("{")]
            counts[name] = {int(r["batch"]): float(r["instructions_per_payment"]) for r in rows}
    return instruction_lines(counts)


def instruction_lines(counts: dict[str, dict[int, float]]) -> list[str]:
    """One line per batch size: both trees' instructions per payment and their ratio."""
    lines = []
    for batch in sorted(set(counts["today"]) & set(counts["rev"])):
        ours, theirs = counts["today"][batch], counts["rev"][batch]
        what = "one in flight" if batch == 1 else f"batched ({batch} per commitment)"
        lines.append(f"{what}: today {ours / 1e6:.2f} M instructions per payment (both "
                     f"nodes), REV {theirs / 1e6:.2f} M; today/REV {ours / theirs:.3f}")
    return lines

