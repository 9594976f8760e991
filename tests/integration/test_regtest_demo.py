"""`chanlab demo` runs its story end to end on a private node and leaves nothing running."""

from __future__ import annotations

import io
import re
import socket
import tempfile
from pathlib import Path
from typing import Any

import pytest

import regtest.story  # noqa: F401  (registers the lifecycle scenario)
from regtest.cli import main
from regtest.demo import SCENARIOS, run_demo
from regtest.errors import RegtestError


def test_funding_demo_tells_the_story_and_stops_its_node() -> None:
    """The funding scenario confirms a 250,000 sat 2-of-2 output and stops bitcoind after."""
    out = io.StringIO()
    run_demo("funding", out=out)
    text = out.getvalue()
    assert "2 <02" in text or "2 <03" in text
    assert "OP_CHECKMULTISIG" in text
    funding = re.search(r"funding transaction ([0-9a-f]{64}) broadcast, output index (\d)", text)
    assert funding is not None
    assert f"output {funding[1]}:{funding[2]} holds 250,000 sat" in text
    assert "confirmed in block 103 (" in text
    assert "Bob's wallet still holds 1,000,000 sat" in text
    assert text.rstrip().endswith("bitcoind stopped cleanly; its temporary data folder is removed")
    port = re.search(r"RPC at http://127\.0\.0\.1:(\d+)", text)
    assert port is not None
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", int(port[1]))) != 0  # nothing listens any more


def test_demo_list_names_every_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    """`chanlab demo --list` prints each registered scenario with its summary."""
    assert main(["demo", "--list"]) == 0
    listed = capsys.readouterr().out
    rows = [line.split(None, 1) for line in listed.splitlines()]
    assert rows == [[name, entry.summary] for name, entry in SCENARIOS.items()]


def test_unknown_scenario_is_refused_before_starting_anything() -> None:
    """An unknown scenario name fails with the list of known ones."""
    with pytest.raises(RegtestError, match=r"no demo scenario 'no-such-story'; known: .*funding"):
        run_demo("no-such-story", out=io.StringIO())


def test_cli_reports_unknown_scenario_with_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    """The CLI turns the error into one line and exit code 1."""
    assert main(["demo", "no-such-story"]) == 1
    assert capsys.readouterr().err.startswith("chanlab: error: no demo scenario 'no-such-story'")


def test_a_demo_run_leaves_no_temp_folder_behind(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The default demo (bitcoind's datadir, the cluster home of two node processes) removes
    every temporary folder it made: the temp root is empty again after the run."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    made: list[str] = []
    real_mkdtemp = tempfile.mkdtemp

    def spy(*args: Any, **kwargs: Any) -> str:
        path = real_mkdtemp(*args, **kwargs)
        made.append(Path(path).name)
        return path

    monkeypatch.setattr(tempfile, "mkdtemp", spy)
    run_demo("lifecycle", out=io.StringIO())
    assert any(name.startswith("chanlab-bitcoind-") for name in made)
    assert any(name.startswith("chanlab-demo-") for name in made)   # the cluster's home
    assert sorted(p.name for p in scratch.iterdir()) == []


def test_funding_demo_draws_its_funding_transaction(tmp_path: Path) -> None:
    """The funding demo's story page carries an SVG (valid XML) naming the 250,000 sat 2-of-2
    output and Alice's change as hers."""
    from xml.etree import ElementTree

    run_demo("funding", out=io.StringIO(), story_dir=tmp_path / "story")
    svgs = sorted((tmp_path / "story").glob("*.svg"))
    assert (tmp_path / "story" / "index.html").exists() and len(svgs) == 1
    texts = " ".join(t.text or "" for t in ElementTree.parse(svgs[0]).iter()
                     if t.tag.endswith("text"))
    assert "250,000 sat · alice+bob · funding 2-of-2" in texts
    assert "sat · alice · wallet" in texts
