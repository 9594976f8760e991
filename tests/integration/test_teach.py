"""What learners run by hand, on two real node processes: ``trace``, ``payments``, channel
prefixes, ``graph`` and ``channel`` through the ``chanlab`` command line."""

from __future__ import annotations

import io
import json
import re
import secrets
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from bitcoin.core import CTransaction

from channel.trace import trace_bytes
from regtest.cli import main
from regtest.cluster import Cluster, NodeProcess
from regtest.demo import Narrator, run_demo
from regtest.demo_story import StoryBook
from regtest.drills import breach_victim_returns, peer_down
from regtest.txgraph import format_sat

FUNDING_SAT = 1_000_000
PAYMENT_MSAT = 5_000_000


def _name(role: str) -> str:
    return f"{role}-{secrets.token_hex(3)}"


def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.fixture
def pair(cluster: Cluster, monkeypatch: pytest.MonkeyPatch
         ) -> tuple[Cluster, NodeProcess, NodeProcess, dict[str, str]]:
    monkeypatch.setenv("CHANLAB_HOME", str(cluster.home))
    alice = cluster.start_node(_name("alice"), funds_sat=2_000_000)
    bob = cluster.start_node(_name("bob"))
    opened = cluster.open_channel(alice, bob, FUNDING_SAT)
    assert cluster.pay(alice, bob, PAYMENT_MSAT)["status"] == "succeeded"
    return cluster, alice, bob, opened


def test_trace_decodes_every_message_of_open_pay_close_and_payments_are_listed(
        pair: tuple[Cluster, NodeProcess, NodeProcess, dict[str, str]],
        capsys: pytest.CaptureFixture[str]) -> None:
    """After open, pay and a cooperative close named by a 6-digit channel_id prefix, `trace`
    shows every message from open_channel to closing_signed with its BOLT field names, every
    recorded message decodes, `trace --follow` prints the latest until Ctrl-C, and `payments`
    lists the payment on both sides with its unit."""
    cluster, alice, bob, opened = pair
    prefix = opened["channel_id"][:6]
    code, out, _ = _cli(capsys, alice.name, "close", prefix)
    assert code == 0 and out.startswith(f"channel {opened['channel']}\nclosing_txid: ")
    cluster.mine(1)
    code, _, err = _cli(capsys, alice.name, "close", "0" * 63 + "x")
    assert code == 1 and len(err.strip().splitlines()) == 1 and "not a channel id" in err

    code, out, _ = _cli(capsys, alice.name, "trace", "--limit", "0")
    assert code == 0
    names = [line.split()[4] for line in out.splitlines() if line.startswith("#")]
    for message in ("init", "open_channel", "accept_channel", "funding_created",
                    "funding_signed", "channel_ready", "update_add_htlc", "commitment_signed",
                    "revoke_and_ack", "update_fulfill_htlc", "shutdown", "closing_signed"):
        assert message in names, f"{message} missing from alice's trace"
    assert names.index("open_channel") < names.index("closing_signed")
    for field in ("temporary_channel_id", "funding_satoshis", "to_self_delay",
                  "payment_hash", "amount_msat", "cltv_expiry", "fee_satoshis",
                  "scriptpubkey", "per_commitment_secret"):
        assert f"    {field} " in out, f"field {field} not shown"
    assert f"{FUNDING_SAT:,} sat" in out and f"{PAYMENT_MSAT:,} msat" in out
    assert f"to {bob.name}" in out and f"from {bob.name}" in out
    for node in (alice, bob):
        records = node.call("trace", limit=0)
        assert len(records) >= 12
        for record in records:
            traced = trace_bytes(bytes.fromhex(record["data"]))
            assert not traced.name.startswith("unknown_") and traced.field("error") is None

    def interrupt(_: float) -> None:
        raise KeyboardInterrupt   # Ctrl-C while --follow waits for more
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("regtest.client_views.time.sleep", interrupt)
        code, out, _ = _cli(capsys, alice.name, "trace", "--follow", "--limit", "3")
    assert code == 130 and [line.split()[4] for line in out.splitlines()
                            if line.startswith("#")] == names[-3:]

    code, out, _ = _cli(capsys, alice.name, "--json", "payments")
    sent = json.loads(out)
    assert [(p["direction"], p["status"], p["amount_msat"], p["fee_msat"]) for p in sent] == \
        [("sent", "succeeded", PAYMENT_MSAT, 0)]
    assert sent[0]["route"] == [bob.node_id]   # one hop: straight to the payee, no fee
    code, out, _ = _cli(capsys, bob.name, "payments")
    assert out.startswith(f"received succeeded {PAYMENT_MSAT:,} msat (5,000 sat)")


def _on_chain(cluster: Cluster, txid: str) -> CTransaction:
    raw = cluster.bitcoind.rpc.call("getrawtransaction", txid)
    return CTransaction.deserialize(bytes.fromhex(str(raw)))


def test_force_close_graph_names_every_on_chain_output_with_its_amount(
        pair: tuple[Cluster, NodeProcess, NodeProcess, dict[str, str]],
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    """After a force-close, `channel` counts down the blocks left on to_local; after both
    sweeps, `graph` writes valid SVG naming every output of the funding tx, the commitment
    and the sweeps with its amount in sat; `channel` prints them with the fees; the accepter
    draws the channel too; `graph --dot` writes Graphviz text."""
    cluster, alice, bob, opened = pair
    code, out, _ = _cli(capsys, alice.name, "force-close", opened["channel"][:5])
    assert code == 0 and f"channel {opened['channel']}" in out
    cluster.mine(1)
    code, out, _ = _cli(capsys, alice.name, "channel", opened["channel"][:6])
    assert code == 0 and "Unresolved outputs:" in out
    assert re.search(r"to_local .* \[alice-[0-9a-f]+\]", out) and \
        re.search(r"in \d+ blocks \(tip at height \d+\)", out), out
    confirmed: list[str] = []
    for _ in range(20):   # to_self_delay 10: alice's to_local sweep, bob's to_remote sweep
        facts = alice.call("channel-facts", channel=opened["channel"])
        confirmed = [t["txid"] for t in facts["transactions"]
                     if t["broadcast"] and t["height"] is not None]
        if len(confirmed) >= 3:
            break
        cluster.mine(1)
        time.sleep(0.3)   # the nodes see the block, broadcast their sweeps
    assert len(confirmed) >= 3, f"commitment and two sweeps expected, got {confirmed}"

    svg_path = tmp_path / "channel.svg"
    code, out, _ = _cli(capsys, alice.name, "graph", opened["channel_id"][:8], "-o",
                        str(svg_path))
    assert code == 0 and str(svg_path) in out
    root = ET.fromstring(svg_path.read_text())
    text = " ".join(t for t in root.itertext())
    for txid in [opened["funding_txid"], *confirmed]:
        tx = _on_chain(cluster, txid)
        assert txid[:8] in text
        for out_ in tx.vout:
            if txid == opened["funding_txid"] and out_.nValue != FUNDING_SAT:
                continue   # the wallet's change: not the channel's
            assert format_sat(out_.nValue) in text, f"{txid[:8]}: {out_.nValue} sat missing"

    code, out, _ = _cli(capsys, alice.name, "channel", opened["channel"][:6])
    assert code == 0 and out.startswith(f"channel {opened['channel']} (channel_id ")
    # the accepter has no copy of the funding tx: the command line reads it from bitcoind
    bob_svg = tmp_path / "bob.svg"
    code, _, _ = _cli(capsys, bob.name, "graph", opened["channel_id"][:8], "-o", str(bob_svg))
    bob_text = " ".join(ET.fromstring(bob_svg.read_text()).itertext())
    assert code == 0 and f"{format_sat(FUNDING_SAT)} · {alice.name}+{bob.name}" in bob_text
    assert "Fees paid by broadcast transactions:" in out and "fee " in out
    dot_path = tmp_path / "channel.dot"
    code, _, _ = _cli(capsys, alice.name, "graph", opened["channel"], "--dot", "-o",
                      str(dot_path))
    assert code == 0 and dot_path.read_text().startswith("digraph")


def test_a_drill_writes_a_story_page_whose_svgs_name_every_output_and_steps_show_messages(
        cluster: Cluster, tmp_path: Path) -> None:
    """The peer-down drill with a story book: the page has SVG pictures that parse as XML,
    the last one names every output of every confirmed transaction of the channel with its
    amount, and ``--step`` paused before each step after printing the BOLT messages."""
    out = io.StringIO()
    pauses: list[str] = []
    book = StoryBook(step=True, out=out, wait=lambda prompt: pauses.append(prompt) or "")
    say = Narrator(out, book)
    say.watch(cluster)
    outcome = peer_down(cluster, say, names=(_name("alice"), _name("bob")))
    say.snapshot()
    files = book.write(tmp_path / "story", "peer-down")
    page = files.page.read_text()
    assert files.page.name == "index.html" and page.count("<svg") == len(files.pictures) >= 2
    texts = [" ".join(ET.fromstring(p.read_text()).itertext()) for p in files.pictures]
    last = texts[-1]
    chain = cluster.miner
    for txid in [outcome.funding.txid_hex, *outcome.settlement.order]:
        tx = CTransaction.deserialize(chain.get_transaction(txid))
        for vout, output in enumerate(tx.vout):
            if txid == outcome.funding.txid_hex and vout != outcome.funding.vout:
                continue   # the funding tx's change belongs to Alice's wallet, not the channel
            assert format_sat(output.nValue) in last, f"{txid[:8]}:{vout} missing"
    assert len(book.svgs) == len(files.pictures) and len(pauses) >= 5
    printed = out.getvalue()
    assert "BOLT messages since the previous step" in printed
    assert "open_channel (type 32)" in printed and "funding_satoshis" in printed


def _seeded_run(seed: str, folder: Path) -> tuple[list[tuple[str, str]], str]:
    out = io.StringIO()
    run_demo("peer-down", out=out, seed=seed, story_dir=folder)
    text = out.getvalue()
    return re.findall(r"^   height +(\d+)  ([0-9a-f]{64})$", text, re.M), text


def test_the_same_seed_gives_the_same_txids_and_another_seed_other_ones(tmp_path: Path) -> None:
    """Two runs of the peer-down demo with seed 7 list the same txids in the same order
    (funding, commitment, sweeps; the heights of the sweeps follow how fast the nodes answer
    the blocks mined); seed 8 gives none of them; each run writes its story page, whose last
    picture names every one of its transactions."""
    first, text = _seeded_run("7", tmp_path / "one")
    second, _ = _seeded_run("7", tmp_path / "two")
    other, _ = _seeded_run("8", tmp_path / "three")
    assert len(first) >= 4, text
    assert [txid for _, txid in first] == [txid for _, txid in second]
    assert not {txid for _, txid in first} & {txid for _, txid in other}
    pictures = sorted((tmp_path / "one").glob("index-*.svg"))
    assert (tmp_path / "one" / "index.html").exists() and pictures
    last = " ".join(ET.fromstring(pictures[-1].read_text()).itertext())
    for _, txid in first:
        assert f"{txid[:8]}…{txid[-4:]}" in last


def test_a_breach_is_drawn_from_the_victims_side_revoked_and_punished(
        cluster: Cluster, tmp_path: Path) -> None:
    """In the breach-victim-returns drill the last picture is Bob's: Alice's commitment is
    marked REVOKED, Bob's penalty spends it, and every output of every confirmed transaction
    of the channel is named with its amount."""
    book = StoryBook()
    say = Narrator(io.StringIO(), book)
    say.watch(cluster)
    names = (_name("alice"), _name("bob"))
    outcome = breach_victim_returns(cluster, say, names=names)
    say.snapshot()
    files = book.write(tmp_path / "story", "breach")
    last = " ".join(ET.fromstring(files.pictures[-1].read_text()).itertext())
    assert f"between {names[1]} and {names[0]}" in last
    assert "REVOKED" in last and f"{names[1]}'s penalty" in last
    chain = cluster.miner
    for txid in outcome.settlement.order:
        for output in CTransaction.deserialize(chain.get_transaction(txid)).vout:
            assert format_sat(output.nValue) in last, f"{txid[:8]}: {output.nValue} sat missing"
