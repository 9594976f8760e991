"""chanlab as a test harness for other projects: the pytest plugin and ``Lab``, installed the
way a downstream project installs them.

A fresh virtual environment outside the repository gets ``pip install <this repository>
pytest`` (the machine's pip configuration and cache; real dependencies, no ``--no-deps``).
There, plain ``pytest`` runs ``examples/test_with_chanlab.py`` (the file ``docs/testing.md``
shows) plus one test that fails on purpose, with no conftest; and ``examples/lab_story.py``
runs. Each run gets a private ``$TMPDIR``, which must be empty afterwards, and no process may
be left running from the environment's folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chanlab import Bitcoind, Lab, NodeError, NodeFactory, WaitFor

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_TEST = REPO / "examples" / "test_with_chanlab.py"
LAB_STORY = REPO / "examples" / "lab_story.py"
DOCS = REPO / "docs" / "testing.md"

FAILING_TEST = '''

def test_fails_on_purpose_to_show_the_logs(node_factory: NodeFactory) -> None:
    """Fails on purpose: its report must carry the node's log."""
    node = node_factory.get_node("logged")
    assert node.balance().onchain_sat == 1, "fails on purpose"
'''


@dataclass(frozen=True)
class Downstream:
    """A virtual environment with chanlab installed from this repository, outside it."""

    root: Path
    python: Path
    install_s: float


def _leftover_processes(root: Path) -> list[str]:
    """Command lines of running processes that mention ``root`` (its python, its temp dirs)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
        except OSError:
            continue
        if str(root) in cmdline:
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


@pytest.fixture(scope="module")
def downstream() -> Iterator[Downstream]:
    root = Path(tempfile.mkdtemp(prefix="chanlab-downstream-"))
    build_dir = REPO / "build"
    had_build_dir = build_dir.exists()
    try:
        started = time.monotonic()
        venv.EnvBuilder(with_pip=True, system_site_packages=False).create(root / "venv")
        python = root / "venv" / "bin" / "python"
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(REPO), "pytest"],
                       check=True, cwd=root, capture_output=True, timeout=600)
        install_s = time.monotonic() - started
        print(f"\nfresh venv + pip install of chanlab and pytest: {install_s:.1f} s",
              file=sys.stderr)
        yield Downstream(root=root, python=python, install_s=install_s)
    finally:
        if not had_build_dir:   # setuptools builds in the source tree; leave it as it was
            shutil.rmtree(build_dir, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)


def _run(env_of: Downstream, workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the environment's python in ``workdir`` with a private, checked-empty ``$TMPDIR``."""
    tmp = workdir / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTEST_ADDOPTS",
                        "CHANLAB_HOME", "VIRTUAL_ENV")}
    env["TMPDIR"] = str(tmp)
    result = subprocess.run([str(env_of.python), *args], cwd=workdir, env=env, text=True,
                            capture_output=True, timeout=600)
    assert sorted(p.name for p in tmp.iterdir()) == [], result.stdout[-3000:]
    assert _leftover_processes(env_of.root) == []
    return result


def test_docs_show_the_example_test_file_verbatim() -> None:
    """docs/testing.md carries examples/test_with_chanlab.py whole, so the docs' file is the
    one this module runs."""
    assert EXAMPLE_TEST.read_text() in DOCS.read_text()


def test_plain_pytest_in_a_fresh_venv_runs_the_example_and_reports_logs(
        downstream: Downstream) -> None:
    """Installed from a path into a fresh venv, the plugin's fixtures run the example tests
    (open, pay, force-close, exact wallets, kill/restart) with no conftest; a failing test's
    report shows its node's log; nothing is left running or on disk."""
    workdir = downstream.root / "project"
    workdir.mkdir()
    (workdir / "test_example.py").write_text(EXAMPLE_TEST.read_text() + FAILING_TEST)
    result = _run(downstream, workdir, "-m", "pytest", "-p", "no:cacheprovider",
                  "test_example.py")
    out = result.stdout
    assert result.returncode == 1, out[-3000:]
    assert "3 passed" in out and "1 failed" in out, out[-3000:]
    assert not list(workdir.glob("conftest.py"))
    failure = out[out.index("test_fails_on_purpose_to_show_the_logs"):]
    assert "fails on purpose" in failure
    assert "chanlab node logged log" in failure, failure[-3000:]
    assert "node logged (" in failure and "listening on 127.0.0.1:" in failure, failure[-3000:]
    # the passing tests attach nothing
    assert out.count("chanlab node ") == failure.count("chanlab node ")


def test_lab_script_in_a_fresh_venv_tells_the_story(downstream: Downstream) -> None:
    """examples/lab_story.py, run with the fresh venv's python, opens, pays, force-closes and
    checks both wallets to the satoshi, then leaves nothing behind."""
    workdir = downstream.root / "script"
    workdir.mkdir()
    script = workdir / "lab_story.py"
    shutil.copy(LAB_STORY, script)
    result = _run(downstream, workdir, str(script))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "both wallets match the chain to the satoshi" in result.stdout


def test_lab_cleans_up_after_an_interrupt() -> None:
    """Ctrl-C (KeyboardInterrupt) inside ``with Lab()`` stops the node and bitcoind and
    removes their folders."""
    with pytest.raises(KeyboardInterrupt), Lab() as lab:
        (node,) = lab.nodes("interrupted", funds_sat=0)
        home, process = lab.factory.home, node.process
        datadir = lab.bitcoind.datadir
        assert process.running and home.is_dir() and datadir.is_dir()
        raise KeyboardInterrupt
    assert not process.running
    assert not home.exists() and not datadir.exists()
    with pytest.raises(NodeError, match="not running"):
        node.info()


# -- the plugin's fixtures and node methods, in this repository's own run -------------------

def test_line_graph_of_three_opens_two_normal_channels(node_factory: NodeFactory) -> None:
    """line_graph(3) starts three nodes with a confirmed channel between neighbours only; each
    opener holds the whole channel, and the middle node pays its right neighbour."""
    left, middle, right = node_factory.line_graph(3, fundamount=300_000)
    assert [len(n.channels()) for n in (left, middle, right)] == [1, 2, 1]
    for opener, accepter in ((left, middle), (middle, right)):
        (record,) = [c for c in opener.channels() if c.peer_id == accepter.node_id]
        assert record.state == "normal" and record.funding_sat == 300_000
        assert record.local_msat == 300_000_000 and record.remote_msat == 0
    paid = middle.pay(right.invoice(7_000_000))
    assert paid.status == "succeeded" and paid.payment_preimage is not None
    assert right.balance().offchain_msat == 7_000_000


def test_cooperative_close_pays_both_wallets_and_ends_closed(
        bitcoind: Bitcoind, node_factory: NodeFactory, wait_for: WaitFor) -> None:
    """close() returns the closing txid; mined, it pays each side its balance (the opener
    also pays the fee) and both nodes list the channel closed."""
    alice = node_factory.get_node("alice", funds_sat=700_000)
    bob = node_factory.get_node("bob")
    channel = alice.open_channel(bob, 400_000, confirm=True)
    alice.pay(bob.invoice(30_000_000))
    closed = alice.close(channel)
    closing = bitcoind.tx(closed.closing_txid)
    assert channel.funding_outpoint is not None
    funding_txid, funding_vout = channel.funding_outpoint.split(":")
    assert closing.inputs == ((funding_txid, int(funding_vout)),)
    assert closing.output_paying(30_000).value_sat == 30_000          # Bob's share, whole
    closing.output_paying(370_000 - closing.fee_sat)                  # Alice's, minus the fee
    bitcoind.generate_block(6)    # a node calls a channel closed once it is 6 blocks deep
    for node in (alice, bob):
        assert node.wait_for_channel(channel, "closed").closing_txid == closed.closing_txid
    wait_for(lambda: bob.balance().onchain_sat == 30_000, what="Bob's wallet to see 30,000 sat")


def test_node_errors_are_one_line_naming_the_node(node_factory: NodeFactory) -> None:
    """A refused command raises NodeError: one line, the node's name first, the reason."""
    alice, bob = node_factory.line_graph(2, fundamount=200_000)
    invoice = bob.invoice(1_000_000)
    alice.pay(invoice)
    with pytest.raises(NodeError) as paid_twice:
        alice.pay(invoice)
    assert str(paid_twice.value).startswith(f"{alice.name}: payment failed: ")
    assert "already paid" in str(paid_twice.value)
    with pytest.raises(NodeError) as no_cheating:
        alice.cheat(alice.channels()[0], state=0)
    message = str(no_cheating.value)
    assert "\n" not in message and message.startswith(f"{alice.name}: UnsafeOperation: ")
    assert "--allow-cheating" in message


def test_cheat_broadcasts_a_revoked_commitment(
        bitcoind: Bitcoind, node_factory: NodeFactory) -> None:
    """On a node started with allow_cheating, cheat(state=0) broadcasts the first commitment,
    revoked by the payment since: it lands in the mempool with that state's txid."""
    alice, bob = node_factory.line_graph(2, fundamount=200_000, allow_cheating=True)
    alice.pay(bob.invoice(5_000_000))
    cheated = alice.cheat(alice.channels()[0], state=0)
    assert cheated.state == 0
    assert cheated.revoked_commitment_txid in bitcoind.rpc.getrawmempool()
    assert bitcoind.tx(cheated.revoked_commitment_txid).output_paying(200_000 - bitcoind.tx(
        cheated.revoked_commitment_txid).fee_sat).value_sat > 0
