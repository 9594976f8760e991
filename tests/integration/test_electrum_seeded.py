"""`chanlab demo electrum --seed N` repeats: the same Electrum wallet, the same txids, every run.

Each run of the demo starts its own bitcoind, ElectrumX and Electrum; Erin's wallet is
restored from seed words derived from the demo seed and her channel key seeds come from it too
(regtest/electrum_seeded_hook.py); Alice's keys and coins come from the same seed, so the
funding of Alice's wallet, the channel's funding, its commitments and its cooperative close
have the same txids on every run with one seed, and other txids with another seed.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path

from regtest.demo import run_demo
from regtest.electrum_provision import ElectrumInstall

WORKSHOP = Path(__file__).resolve().parents[2] / "docs" / "workshop.md"


@dataclass(frozen=True)
class SeededRun:
    txids: list[str]        # every non-coinbase transaction of the run, in chain order
    words: str              # Erin's seed words
    erin_node_id: str       # the start of Erin's Lightning node id, as the story prints it
    funding_txid: str
    closing_txid: str
    text: str


def _run(seed: str, folder: Path) -> SeededRun:
    import regtest.electrum_story  # noqa: F401  (registers the scenario, as the CLI does)

    out = io.StringIO()
    run_demo("electrum", out=out, seed=seed, story_dir=folder)
    text = out.getvalue()

    def one(pattern: str) -> str:
        found = re.search(pattern, text, re.M)
        assert found is not None, f"{pattern!r} not in:\n{text}"
        return found.group(1)

    return SeededRun(
        txids=re.findall(r"^   height +\d+  ([0-9a-f]{64})$", text, re.M),
        words=one(r'restored from the seed words "([a-z ]+)"'),
        erin_node_id=one(r"Erin's node id ([0-9a-f]{20})…"),
        funding_txid=one(r"^   funding ([0-9a-f]{64}):\d has"),
        closing_txid=one(r"^   closing transaction ([0-9a-f]{64}) confirmed"),
        text=text,
    )


def test_the_same_seed_gives_the_same_electrum_wallet_and_txids_another_seed_others(
        electrum_install: ElectrumInstall, tmp_path: Path) -> None:
    """Two runs with seed 1 restore Erin from the same 12 words, give her the same node id,
    list the same three txids in the same order (Alice's wallet funded, the channel's funding,
    the cooperative close, each the one the story names), the ones docs/workshop.md prints for
    learners to find, and draw byte-identical pictures (commitments included); seed 7 shares
    none of the txids."""
    first = _run("1", tmp_path / "one")
    second = _run("1", tmp_path / "two")
    other = _run("7", tmp_path / "three")
    assert len(first.txids) == 3, first.text
    assert first.txids[1:] == [first.funding_txid, first.closing_txid]
    assert second.txids == first.txids
    assert (second.words, second.erin_node_id) == (first.words, first.erin_node_id)
    assert len(first.words.split()) == 12
    assert not set(other.txids) & set(first.txids)
    assert other.words != first.words and other.erin_node_id != first.erin_node_id
    assert "Erin's request is PAID" in first.text and "Electrum reports success" in first.text
    # the pictures repeat too: the open channel's picture shows Alice's current commitment,
    # whose to_local pays Erin's revocation key (from Electrum's channel seed: the hook)
    pictures = sorted(p.name for p in (tmp_path / "one").glob("index-*.svg"))
    assert len(pictures) >= 2
    for name in pictures:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes(), \
            f"{name} differs between two runs with seed 1"
    worksheet = WORKSHOP.read_text()
    assert f"`{first.words}`" in " ".join(worksheet.split()), "the worksheet's seed words"
    for txid in first.txids:
        assert f"`{txid}`" in worksheet, f"docs/workshop.md lacks {txid} of seed 1"
