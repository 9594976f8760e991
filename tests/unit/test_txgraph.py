"""The channel transaction graph: labels from keys, spends, fees, SVG/dot, story page, text view."""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pytest
from bitcoin.core import COutPoint, CTransaction, CTxIn, CTxOut
from bitcoin.core.script import CScript

from channel.keys import ChannelKeys
from channel.monitor import ChannelMonitor
from channel.state import Channel, ChannelConfig, ChannelState, ForceCloseTransactions
from channel.sweeps import build_penalty_transaction, build_sweep_transaction, delayed_output
from channel.types import CommitmentFormat, HtlcDirection, OutPoint
from regtest.onchain_view import render_onchain_view, spend_path_status
from regtest.story_page import StoryStep, render_story_page, write_story_page
from regtest.txclassify import ChannelFacts, SeenTx, classify
from regtest.txgraph import (
    OutputLabel,
    ScriptKind,
    SpendPath,
    TxRecord,
    TxRole,
    build_graph,
)
from regtest.txgraph_render import render_dot, render_svg, wrap_text
from regtest.txlabels import (
    CommitmentView,
    commitment_record,
    funding_record,
    htlc_tx_record,
    label_commitment,
    wallet_record,
)
from tests.unit.chanpair import ALICE_DEST, BOB_DEST, FUNDING_SAT, TO_SELF_DELAY, Pair

SVG_NS = "{http://www.w3.org/2000/svg}"
WALLET_COIN_SAT = 1_500_000
FUNDING_FEE_SAT = 1_234
OWNERS = {ALICE_DEST: "Alice", BOB_DEST: "Bob"}


@dataclass
class FundedPair(Pair):
    """A :class:`Pair` whose funding outpoint is a real (unsigned) funding transaction."""

    funding_tx: CTransaction = field(init=False)

    def __post_init__(self) -> None:
        cfg = ChannelConfig(to_self_delay=TO_SELF_DELAY)
        a, open_msg = Channel.open_outbound(
            keys=ChannelKeys.from_seed(b"alice".ljust(32, b".")), config=cfg,
            funding_sat=FUNDING_SAT, push_msat=0, feerate_per_kw=2000,
            temporary_channel_id=b"t" * 32, commitment_format=self.fmt)
        b, accept = Channel.accept_inbound(keys=ChannelKeys.from_seed(b"bob".ljust(32, b".")),
                                           config=cfg, msg=open_msg)
        a.on_accept_channel(accept)
        coin = COutPoint(hashlib.sha256(b"alice's wallet coin").digest(), 0)
        change = WALLET_COIN_SAT - FUNDING_SAT - FUNDING_FEE_SAT
        self.funding_tx = CTransaction(
            [CTxIn(coin)],
            [CTxOut(FUNDING_SAT, CScript(a.funding_script_pubkey)),
             CTxOut(change, CScript(ALICE_DEST))], 0, 2)
        a_created = a.funding_created(OutPoint(txid=bytes(self.funding_tx.GetTxid()), vout=0))
        self.alice, self.bob = a, b
        self.alice_monitor = ChannelMonitor.from_channel(a, ALICE_DEST, 1000, peer_name="Bob")
        signed = b.on_funding_created(a_created)
        self.bob_monitor = ChannelMonitor.from_channel(b, BOB_DEST, 1000, peer_name="Alice")
        a.on_funding_signed(signed)
        b.on_channel_ready(a.funding_locked())
        a.on_channel_ready(b.funding_locked())
        assert a.state is ChannelState.NORMAL and b.state is ChannelState.NORMAL
        self.sync()

    def funding_record(self) -> TxRecord:
        keys = (self.alice.holder_params.basepoints.funding_pubkey,
                self.bob.holder_params.basepoints.funding_pubkey)
        return funding_record(self.funding_tx, funding_pubkeys=keys, names=("Alice", "Bob"),
                              opener="Alice", fee_sat=FUNDING_FEE_SAT, owners=OWNERS,
                              confirmation_height=101)


def _view(snapshot: ForceCloseTransactions, revoked: bool = False) -> CommitmentView:
    return CommitmentView.from_commitment(snapshot.commitment, broadcaster="Alice",
                                          countersignatory="Bob", revoked=revoked)


@dataclass(frozen=True)
class Breach:
    pair: FundedPair
    revoked: ForceCloseTransactions
    current: ForceCloseTransactions
    records: tuple[TxRecord, ...]
    penalty_fee_sat: int


def _breach(fmt: CommitmentFormat) -> Breach:
    """Alice's commitment with an offered and a received HTLC, revoked, broadcast at height
    110; Bob's penalty in the mempool; Alice's current commitment held, not broadcast."""
    p = FundedPair(fmt)
    p.pay(p.alice, 300_000_000, "warm-up")
    p.add(p.alice, 50_000_000, "offered")
    p.add(p.bob, 40_000_000, "received")
    old = p.snapshot(p.alice)
    p.fulfill(p.bob, "offered")
    p.fail(p.alice, "received")
    p.pay(p.alice, 10_000_000, "after")
    current = p.snapshot(p.alice)
    number = old.commitment.commitment_number
    penalty = build_penalty_transaction(
        old.commitment, revocation_privkey=p.bob_monitor.revocation_privkey(number),
        destination_script_pubkey=BOB_DEST, feerate_per_kw=1000,
        payment_privkey=p.bob.keys.payment_privkey())
    records = (
        p.funding_record(),
        commitment_record(old.commitment_tx, _view(old, revoked=True), confirmation_height=110),
        commitment_record(current.commitment_tx, _view(current), broadcast=False),
        wallet_record(penalty.tx, role=TxRole.PENALTY, holder="Bob", owners=OWNERS),
    )
    return Breach(pair=p, revoked=old, current=current, records=records,
                  penalty_fee_sat=penalty.fee_sat)


@pytest.fixture(scope="module", params=list(CommitmentFormat), ids=lambda f: f.value)
def breach(request: pytest.FixtureRequest) -> Breach:
    fmt: CommitmentFormat = request.param
    return _breach(fmt)


def _svg_text(svg: str) -> str:
    root = ET.fromstring(svg)
    return "\n".join("".join(t.itertext()) for t in root.iter(f"{SVG_NS}text"))


# --- labels -----------------------------------------------------------------------------------


def test_labels_classify_every_commitment_output(breach: Breach) -> None:
    """Matching scripts against the commitment's keys names every output with its BOLT 3 kind."""
    c = breach.revoked.commitment
    labels = label_commitment(breach.revoked.commitment_tx, _view(breach.revoked, revoked=True))
    assert len(labels) == len(c.tx.vout)
    by_vout = dict(enumerate(labels))
    assert c.to_local_vout is not None and c.to_remote_vout is not None
    assert by_vout[c.to_local_vout].kind is ScriptKind.TO_LOCAL
    assert by_vout[c.to_local_vout].owner == "Alice"
    assert by_vout[c.to_local_vout].amount_sat == c.to_local_amount_sat
    assert by_vout[c.to_local_vout].paths[0] == SpendPath(
        spender="Alice", key="the delayed key", csv_blocks=TO_SELF_DELAY)
    assert by_vout[c.to_remote_vout].kind is ScriptKind.TO_REMOTE
    assert by_vout[c.to_remote_vout].owner == "Bob"
    for out in c.htlc_outputs:
        label = by_vout[out.vout]
        offered = out.htlc.direction is HtlcDirection.OFFERED
        assert label.kind is (ScriptKind.OFFERED_HTLC if offered else ScriptKind.RECEIVED_HTLC)
        assert label.owner == ("Alice→Bob" if offered else "Bob→Alice")
        assert any(p.cltv_expiry == out.htlc.cltv_expiry for p in label.paths)
    anchors = [v for v in (c.to_local_anchor_vout, c.to_remote_anchor_vout) if v is not None]
    assert len(anchors) == (2 if c.commitment_format is CommitmentFormat.ANCHORS else 0)
    for vout in anchors:
        assert by_vout[vout].kind is ScriptKind.ANCHOR and by_vout[vout].amount_sat == 330
    assert all(label.kind is not ScriptKind.UNKNOWN for label in labels)


def test_revoked_to_local_condition_reads_as_the_spec() -> None:
    """The to_local of a revoked commitment reads "Alice after N blocks (CSV) ... or Bob ...
    with the revocation key", with the countdown when heights are given."""
    b = _breach(CommitmentFormat.STATIC_REMOTEKEY)
    c = b.revoked.commitment
    assert c.to_local_vout is not None
    label = b.records[1].outputs[c.to_local_vout]
    assert label.condition() == (
        f"Alice after {TO_SELF_DELAY} blocks (CSV) with the delayed key or Bob at once with "
        "the revocation key and the revealed secret (this state is revoked)")
    assert label.condition(110, 113).startswith(
        f"Alice after {TO_SELF_DELAY} blocks (CSV, 6 left) with the delayed key")


def test_unknown_script_is_not_guessed() -> None:
    """An output matching none of the commitment's scripts is labelled UNKNOWN, owner "?"."""
    b = _breach(CommitmentFormat.STATIC_REMOTEKEY)
    tx = b.revoked.commitment_tx
    odd = CTransaction(tx.vin, [*tx.vout, CTxOut(5_000, CScript(b"\x00\x14" + bytes(20)))],
                       tx.nLockTime, 2)
    labels = label_commitment(odd, _view(b.revoked))
    assert labels[-1] == OutputLabel(owner="?", amount_sat=5_000, kind=ScriptKind.UNKNOWN)


# --- graph ------------------------------------------------------------------------------------


def test_graph_links_spends_and_computes_fees(breach: Breach) -> None:
    """Funding -> both commitments (conflicting), revoked commitment -> penalty; fees exact."""
    graph = build_graph(breach.records)
    funding, revoked, current, penalty = (graph.node(bytes(CTransaction.deserialize(
        r.raw).GetTxid())) for r in breach.records)
    assert funding and revoked and current and penalty
    assert [n.column for n in (funding, revoked, current, penalty)] == [0, 1, 1, 2]
    funding_out = OutPoint(txid=funding.txid, vout=0)
    assert graph.spenders(funding_out) == (revoked, current)
    assert graph.is_resolved(funding_out)
    assert funding.fee_sat == FUNDING_FEE_SAT
    assert revoked.fee_sat == breach.revoked.commitment.fee_sat
    assert penalty.fee_sat == breach.penalty_fee_sat
    c = breach.revoked.commitment
    taken = {s.outpoint.vout for s in graph.spends if s.spender_txid == penalty.txid}
    assert taken == {c.to_local_vout, c.to_remote_vout, *(o.vout for o in c.htlc_outputs)}
    unresolved = {(n.txid, vout) for n, vout, _ in graph.unresolved()}
    anchors = {(revoked.txid, v) for v in (c.to_local_anchor_vout, c.to_remote_anchor_vout)
               if v is not None}
    assert unresolved == anchors   # the penalty takes everything but the anchors


def test_build_graph_refuses_labels_that_do_not_match() -> None:
    """A label whose amount differs from the output's, or a missing label, is an error."""
    b = _breach(CommitmentFormat.STATIC_REMOTEKEY)
    funding = b.records[0]
    wrong = OutputLabel(owner="Alice+Bob", amount_sat=FUNDING_SAT + 1, kind=ScriptKind.FUNDING)
    bad = TxRecord(raw=funding.raw, role=TxRole.FUNDING,
                   outputs=(wrong, funding.outputs[1]))
    with pytest.raises(ValueError, match="output 0 holds 1000000 sat"):
        build_graph([bad])
    with pytest.raises(ValueError, match="2 outputs but 1 labels"):
        build_graph([TxRecord(raw=funding.raw, role=TxRole.FUNDING, outputs=funding.outputs[:1])])
    with pytest.raises(ValueError, match="given twice"):
        build_graph([funding, funding])


# --- pictures ---------------------------------------------------------------------------------


def test_svg_is_valid_xml_names_every_output_and_marks_the_revoked_state(breach: Breach) -> None:
    """The SVG parses as XML, shows every output's amount, marks the revoked commitment in red,
    dashes the unconfirmed penalty, and is byte-identical across two renders."""
    svg = render_svg(build_graph(breach.records), title="breach <&> test")
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG_NS}svg"
    text = _svg_text(svg)
    for record in breach.records:
        for label in record.outputs:
            assert f"{label.amount_sat:,} sat" in text
        assert record.display_title() in text
    assert "REVOKED" in text
    assert "confirmed at height 110" in text and "unconfirmed (in the mempool)" in text
    rects = root.iter(f"{SVG_NS}rect")
    styles = [(r.get("stroke"), r.get("stroke-dasharray")) for r in rects]
    assert ("#c62828", None) in styles                 # the revoked commitment, confirmed
    assert ("#212121", "6 4") in styles                # the penalty, unconfirmed
    assert ("#212121", "2 4") in styles                # the current commitment, never broadcast
    graph2 = build_graph(breach.records)
    assert render_svg(graph2, title="breach <&> test").encode() == svg.encode()
    arrows = list(root.iter(f"{SVG_NS}path"))
    assert len(arrows) == len(build_graph(breach.records).spends) + 1   # + the marker's path


def test_force_close_picture_shows_htlc_tx_and_sweep() -> None:
    """A force-close with an HTLC-timeout and a to_local sweep: four columns, every amount
    shown, and the dot output links the same outputs to the same inputs."""
    p = FundedPair(CommitmentFormat.STATIC_REMOTEKEY)
    p.pay(p.alice, 300_000_000, "warm-up")
    p.add(p.alice, 50_000_000, "stuck")
    closing = p.snapshot(p.alice)
    (timeout_tx,) = closing.htlc_txs
    c = closing.commitment
    sweep = build_sweep_transaction(
        [delayed_output(c, p.alice.keys.delayed_payment_privkey(c.keys.per_commitment_point))],
        destination_script_pubkey=ALICE_DEST, feerate_per_kw=1000)
    view = _view(closing)
    records = [
        p.funding_record(),
        commitment_record(closing.commitment_tx, view, confirmation_height=120),
        htlc_tx_record(timeout_tx, view, timeout=True, confirmation_height=130),
        wallet_record(sweep.tx, role=TxRole.SWEEP, holder="Alice", owners=OWNERS,
                      confirmation_height=130 + TO_SELF_DELAY),
    ]
    graph = build_graph(records)
    assert [n.column for n in graph.nodes] == [0, 1, 2, 2]
    htlc_node = graph.nodes[2]
    assert htlc_node.record.outputs[0].kind is ScriptKind.HTLC_TX_OUTPUT
    assert htlc_node.fee_sat == c.htlc_outputs[0].amount_sat - int(timeout_tx.vout[0].nValue)
    text = _svg_text(render_svg(graph))
    for record in records:
        for label in record.outputs:
            assert f"{label.amount_sat:,} sat" in text
    dot = render_dot(graph)
    assert dot.startswith("digraph channel {") and dot == render_dot(build_graph(records))
    assert '  label="say \\"hi\\"";' in render_dot(graph, title='say "hi"')
    # funding -> commitment, HTLC output -> HTLC-timeout, to_local -> sweep
    assert dot.count(" -> ") == len(graph.spends) == 3
    assert f"tx1:out{c.htlc_outputs[0].vout}:e -> tx2:in0:w;" in dot
    assert c.to_remote_vout is not None
    assert {(n.record.role, vout) for n, vout, _ in graph.unresolved()} == {
        (TxRole.COMMITMENT, c.to_remote_vout), (TxRole.HTLC_TIMEOUT, 0)}


def test_wrap_text_keeps_words_and_width() -> None:
    """Wrapping never splits a word and keeps lines within the width when words allow."""
    lines = wrap_text("Alice after 6 blocks (CSV) with the delayed key or Bob at once", 20)
    assert lines == ["Alice after 6 blocks", "(CSV) with the", "delayed key or Bob", "at once"]
    assert wrap_text("") == [""]


def test_story_page_inlines_svgs_and_escapes_narration(tmp_path: Path, breach: Breach) -> None:
    """The HTML page holds each step in order, the SVG inline (no XML declaration), and the
    narration escaped; the picture is also written beside the page."""
    svg = render_svg(build_graph(breach.records))
    steps = [StoryStep(title="Open", narration="Alice <opens> a channel.\n\nSecond paragraph."),
             StoryStep(title="Breach", narration="Bob punishes.",
                       svg='<?xml version="1.0" encoding="UTF-8"?>\n' + svg, caption="penalty")]
    files = write_story_page(tmp_path / "out" / "story.html", "A breach", steps)
    page = files.page.read_text(encoding="utf-8")
    assert files.pictures == (tmp_path / "out" / "story-02.svg",)
    assert ET.fromstring(files.pictures[0].read_text(encoding="utf-8")).tag == f"{SVG_NS}svg"
    assert page == render_story_page("A breach", steps)
    assert "Alice &lt;opens&gt; a channel." in page and "<p>Second paragraph.</p>" in page
    assert "<?xml" not in page and page.count("<svg") == 1
    assert page.index('id="step-1"') < page.index('id="step-2"') < page.index("<svg")

    class Tags(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.tags: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.tags.append(tag)

    parser = Tags()
    parser.feed(page)
    assert parser.tags.count("section") == 2 and "script" not in parser.tags
    assert parser.tags.count("text") == _svg_text(svg).count("\n") + 1


# --- text view --------------------------------------------------------------------------------


def test_spend_path_countdown_matches_the_monitor_convention() -> None:
    """CSV D on an output confirmed at h is broadcastable at tip h+D-1; CLTV L at tip L."""
    csv = SpendPath(spender="Alice", key="the delayed key", csv_blocks=6)
    assert csv.broadcastable_at_height(100) == 105
    assert [csv.blocks_left(100, h) for h in (100, 103, 105, 120)] == [5, 2, 0, 0]
    assert csv.blocks_left(None, 100) is None
    cltv = SpendPath(spender="Bob", key="the HTLC key", csv_blocks=1, cltv_expiry=500)
    assert cltv.broadcastable_at_height(100) == 500 and cltv.blocks_left(100, 498) == 2
    assert csv.text(100, 103) == "Alice after 6 blocks (CSV, 2 left) with the delayed key"
    assert spend_path_status(csv, 100, 103) == \
        "Alice may spend in 2 blocks (tip at height 105) with the delayed key"
    assert spend_path_status(csv, None, 103).startswith("Alice may spend once its transaction")


def test_onchain_view_prints_outputs_fees_and_countdown() -> None:
    """After Alice's force-close at height 120 (tip 125), the view gives each output in spec
    notation, each fee, and who may spend each unresolved output and when."""
    p = FundedPair(CommitmentFormat.STATIC_REMOTEKEY)
    p.pay(p.alice, 300_000_000, "warm-up")
    closing = p.snapshot(p.alice)
    c = closing.commitment
    records = [p.funding_record(),
               commitment_record(closing.commitment_tx, _view(closing), confirmation_height=120)]
    view = render_onchain_view(build_graph(records), current_height=125)
    assert c.to_local_vout is not None and c.to_remote_vout is not None
    left = 120 + TO_SELF_DELAY - 1 - 125
    assert (f"  #{c.to_local_vout} to_local {c.to_local_amount_sat:,} sat [Alice] — Alice after "
            f"{TO_SELF_DELAY} blocks (CSV, {left} left) with the delayed key or Bob at once with "
            "the revocation key (only if Alice revokes this state)   [unspent]") in view
    assert "may spend now with the revocation key" not in view   # nobody holds it
    assert f"fee {c.fee_sat:,} sat" in view and f"fee {FUNDING_FEE_SAT:,} sat" in view
    assert f"Fees paid by broadcast transactions: {c.fee_sat + FUNDING_FEE_SAT:,} sat" in view
    assert f"    Alice may spend in {left} blocks (tip at height {120 + TO_SELF_DELAY - 1}) " \
        "with the delayed key" in view
    assert "    Bob may spend now with the payment key" in view
    assert "[spent by Alice's commitment #" in view


def test_svg_layout_boxes_do_not_overlap_and_arrows_run_left_to_right(breach: Breach) -> None:
    """Every box lies inside the canvas, no two boxes overlap, every line of text fits its box
    (at the renderer's glyph width) and every arrow goes from a column to a later one."""
    root = ET.fromstring(render_svg(build_graph(breach.records)))
    width, height = int(root.get("width", "0")), int(root.get("height", "0"))
    boxes = []
    for group in root.iter(f"{SVG_NS}g"):
        rect = group.find(f"{SVG_NS}rect")
        assert rect is not None
        x, y, w, h = (int(rect.get(k, "0")) for k in ("x", "y", "width", "height"))
        assert 0 <= x and x + w <= width and 0 <= y and y + h <= height
        for text in group.iter(f"{SVG_NS}text"):
            tx, ty = int(text.get("x", "0")), int(text.get("y", "0"))
            assert x < tx and tx + len(text.text or "") * 7.8 <= x + w
            assert y < ty < y + h
        boxes.append((x, y, w, h))
    for i, (x1, y1, w1, h1) in enumerate(boxes):
        for x2, y2, w2, h2 in boxes[i + 1:]:
            assert x1 + w1 <= x2 or x2 + w2 <= x1 or y1 + h1 <= y2 or y2 + h2 <= y1
    for path in root.findall(f"{SVG_NS}path"):
        start, *_, end_x, _end_y = path.get("d", "").replace(",", "").split()[1:]
        assert int(start) < int(end_x)


# --- classification ---------------------------------------------------------------------------


def _facts(p: FundedPair, *views: CommitmentView) -> ChannelFacts:
    return ChannelFacts(
        names=("Alice", "Bob"),
        funding_pubkeys=(p.alice.holder_params.basepoints.funding_pubkey,
                         p.bob.holder_params.basepoints.funding_pubkey),
        funding_outpoint=OutPoint(txid=bytes(p.funding_tx.GetTxid()), vout=0),
        views=views, owners=OWNERS, funding_fee_sat=FUNDING_FEE_SAT)


def _seen(record: TxRecord) -> SeenTx:
    return SeenTx(raw=record.raw, confirmation_height=record.confirmation_height,
                  broadcast=record.broadcast)


def test_classify_recognises_a_breach_from_raw_transactions(breach: Breach) -> None:
    """From raw transactions (in any order) and the channel's facts, classify finds the funding
    tx, tells the revoked commitment from the current one, and names Bob's penalty: the same
    records as built by hand."""
    facts = _facts(breach.pair, _view(breach.current), _view(breach.revoked, revoked=True))
    shuffled = [breach.records[i] for i in (3, 2, 0, 1)]
    assert classify(facts, [_seen(r) for r in shuffled]) == tuple(shuffled)


def test_classify_recognises_htlc_txs_sweeps_and_closing() -> None:
    """An HTLC-timeout, a to_local sweep, and (on a second timeline) a cooperative close."""
    p = FundedPair(CommitmentFormat.STATIC_REMOTEKEY)
    p.pay(p.alice, 300_000_000, "warm-up")
    p.add(p.alice, 50_000_000, "stuck")
    closing = p.snapshot(p.alice)
    (timeout_tx,) = closing.htlc_txs
    c = closing.commitment
    sweep = build_sweep_transaction(
        [delayed_output(c, p.alice.keys.delayed_payment_privkey(c.keys.per_commitment_point))],
        destination_script_pubkey=ALICE_DEST, feerate_per_kw=1000)
    view = _view(closing)
    expected = (
        p.funding_record(),
        commitment_record(closing.commitment_tx, view, confirmation_height=120),
        htlc_tx_record(timeout_tx, view, timeout=True, confirmation_height=130),
        wallet_record(sweep.tx, role=TxRole.SWEEP, holder="Alice", owners=OWNERS,
                      confirmation_height=131),
    )
    assert classify(_facts(p, view), [_seen(r) for r in expected]) == expected

    coop = CTransaction([CTxIn(COutPoint(p.funding_tx.GetTxid(), 0), nSequence=0xFFFFFFFF)],
                        [CTxOut(600_000, CScript(ALICE_DEST)), CTxOut(399_000, CScript(BOB_DEST))],
                        0, 2)
    (record,) = classify(_facts(p, view), [SeenTx(raw=coop.serialize(), confirmation_height=140)])
    assert record.role is TxRole.CLOSING
    assert [(o.owner, o.amount_sat, o.kind) for o in record.outputs] == [
        ("Alice", 600_000, ScriptKind.WALLET), ("Bob", 399_000, ScriptKind.WALLET)]
    assert build_graph([p.funding_record(), record]).nodes[1].fee_sat == 1_000


def test_bytes_that_are_not_a_transaction_are_refused() -> None:
    """Truncated or padded raw bytes raise ValueError naming the transaction."""
    b = _breach(CommitmentFormat.STATIC_REMOTEKEY)
    funding = b.records[0]
    for raw in (funding.raw[:-1], funding.raw + b"\x00"):
        bad = TxRecord(raw=raw, role=TxRole.FUNDING, outputs=funding.outputs, holder="Alice")
        with pytest.raises(ValueError, match="Alice's funding: raw bytes are not a transaction"):
            build_graph([bad])
        with pytest.raises(ValueError, match="not a transaction"):
            classify(_facts(b.pair), [SeenTx(raw=raw)])
