"""bench.figures: targets, the closing table, breach-to-penalty latency, bench.tower parsing."""

from __future__ import annotations

import pytest

from bench.figures import (
    Figure,
    Goal,
    Sighting,
    parse_tower_output,
    penalty_latency_s,
    render_table,
    summarize,
)

BREACH = "aa" * 32
OTHER = "bb" * 32


def _fig(value: float | None, target: float | None = None, goal: Goal = Goal.AT_LEAST,
         note: str = "") -> Figure:
    return Figure(section="s", name="n", value=value, unit="x/s", how="h", target=target,
                  goal=goal, note=note)


def test_target_verdicts_both_directions() -> None:
    """A figure meets an at-least target from the target up, an at-most one up to it."""
    assert _fig(100, 100).met is True
    assert _fig(99.9, 100).met is False
    assert _fig(200, 200, Goal.AT_MOST).met is True
    assert _fig(200.1, 200, Goal.AT_MOST).met is False
    assert _fig(5).met is None
    assert _fig(None, 100, note="skipped").met is None


def test_invalid_figures_are_refused() -> None:
    """A figure needs a name, a finite value, and a reason when it has no value."""
    with pytest.raises(ValueError):
        Figure(section="s", name="", value=1, unit="", how="")
    with pytest.raises(ValueError):
        _fig(float("nan"))
    with pytest.raises(ValueError):
        _fig(None)


def test_value_and_target_text() -> None:
    """Values read as people write them: thousands separated, no float noise."""
    assert _fig(1042.4).value_text() == "1,042 x/s"
    assert _fig(83.25).value_text() == "83.2 x/s"
    assert _fig(5.271).value_text() == "5.27 x/s"
    assert _fig(0.00123).value_text() == "0.00123 x/s"
    assert _fig(1, 1000).target_text() == ">= 1,000 x/s"
    assert _fig(1, 200, Goal.AT_MOST).target_text() == "<= 200 x/s"
    assert _fig(None, note="why").value_text() == "not measured"


def test_table_groups_sections_and_marks_misses() -> None:
    """The table lists each section once, in first-seen order, with a verdict and how per
    row."""
    figures = [
        Figure(section="payments", name="one in flight", value=83.0, unit="payments/s",
               how="", target=100),
        Figure(section="breach", name="node", value=5.3, unit="ms", how="", target=200,
               goal=Goal.AT_MOST),
        Figure(section="payments", name="batched", value=1042.0, unit="payments/s",
               how="6000 payments", target=1000),
        Figure(section="breach", name="tower", value=None, unit="ms", how="",
               note="tower not running"),
    ]
    lines = render_table(figures).splitlines()
    assert [line for line in lines if line in ("payments", "breach")] == ["payments", "breach"]

    def row(name: str) -> str:
        (found,) = [line for line in lines if line.startswith(f"  {name}  ")]
        return found

    assert row("one in flight").split()[3:] == ["83", "payments/s", ">=", "100", "payments/s",
                                                "BELOW", "TARGET"]
    assert row("batched").split()[1:] == ["1,042", "payments/s", ">=", "1,000", "payments/s",
                                          "ok", "6000", "payments"]
    assert row("node").split()[1:] == ["5.30", "ms", "<=", "200", "ms", "ok"]
    assert row("tower").split()[1:] == ["not", "measured", "tower", "not", "running"]
    assert lines.index(row("batched")) < lines.index("breach") < lines.index(row("node"))


def test_summarize_median_min_max() -> None:
    """summarize gives (median, min, max) and refuses no samples."""
    assert summarize([9.0, 1.0, 5.0]) == (5.0, 1.0, 9.0)
    assert summarize([4.0, 2.0]) == (3.0, 2.0, 4.0)
    with pytest.raises(ValueError):
        summarize([])


def test_penalty_latency_from_the_first_spend_of_a_penalized_output() -> None:
    """Latency runs from the breach's sighting to the first tx spending a penalized output;
    spends of other outputs or other transactions do not count."""
    sightings = [
        Sighting(at_s=10.0, txid=OTHER, spends=()),
        Sighting(at_s=10.5, txid=BREACH, spends=(("cc" * 32, 0),)),
        Sighting(at_s=10.6, txid="01" * 32, spends=((BREACH, 1),)),   # to_remote: not penalized
        Sighting(at_s=10.7, txid="02" * 32, spends=((OTHER, 0),)),
        Sighting(at_s=10.8125, txid="03" * 32, spends=((OTHER, 1), (BREACH, 0))),
        Sighting(at_s=11.0, txid="04" * 32, spends=((BREACH, 2),)),
    ]
    hit = penalty_latency_s(sightings, BREACH, frozenset({0, 2}))
    assert hit is not None
    latency, penalty = hit
    assert latency == pytest.approx(0.3125)
    assert penalty.txid == "03" * 32


def test_penalty_latency_waits_for_both_sightings() -> None:
    """Without the breach, or without a spend of a penalized output, there is no figure."""
    spend = Sighting(at_s=2.0, txid="03" * 32, spends=((BREACH, 0),))
    assert penalty_latency_s([spend], BREACH, frozenset({0})) is None
    breach = Sighting(at_s=1.0, txid=BREACH, spends=())
    assert penalty_latency_s([breach], BREACH, frozenset({0})) is None
    assert penalty_latency_s([breach, spend], BREACH, frozenset({1})) is None


TOWER_OUTPUT = """\
watchtower benchmark (python 3.11.7, 2 CPUs)
bytes per revoked state (kit = plaintext; stored = 16 B hint + ciphertext + 16 B tag)
  static_remotekey 0 HTLC: kit  165 B, stored  197 B  (client builds+signs it in 1.3 ms)
  static_remotekey 1 HTLC: kit  398 B, stored  430 B  (client builds+signs it in 0.4 ms)
  anchors          0 HTLC: kit  165 B, stored  199 B  (client builds+signs it in 0.2 ms)
  anchors          1 HTLC: kit  334 B, stored  366 B  (client builds+signs it in 0.3 ms)
store filled to 100,000 states (real blobs + random blobs of 181 B)
  dict store:      4.7 us per non-matching tx (scan raw tx + 3 hint lookups), mean of 20,000
  SQLite store:    5.2 us per non-matching tx, mean of 20,000; file 247 B per state (24.7 MB)
  breach hit:     0.93 ms from raw breach tx to 3 signed, verified justice txs
"""


def test_parse_tower_output() -> None:
    """Each figure of bench.tower's report is read; per HTLC count, the largest format wins."""
    assert parse_tower_output(TOWER_OUTPUT) == {
        "stored_bytes_0_htlc": 199.0,
        "stored_bytes_1_htlc": 430.0,
        "states": 100_000.0,
        "sqlite_lookup_us": 5.2,
        "sqlite_file_bytes_per_state": 247.0,
        "dict_lookup_us": 4.7,
        "hit_ms": 0.93,
    }
    assert parse_tower_output("nothing here") == {}


def test_callgrind_dump_total_and_instruction_lines() -> None:
    """A callgrind dump's total is read from its summary line (a file without one is refused),
    and --instructions prints each batch size's counts and ratio."""
    from bench.ab_driver import dumped_instructions
    from bench.compare import instruction_lines
    dump = "version: 1\ncreator: callgrind-3.22.0\nevents: Ir\nsummary: 1242127635\n\nfn=x\n"
    assert dumped_instructions(dump) == 1_242_127_635
    with pytest.raises(ValueError):
        dumped_instructions("version: 1\nevents: Ir\n")
    lines = instruction_lines({"today": {1: 33_180_000.0, 200: 7_770_000.0},
                               "rev": {1: 29_390_000.0, 200: 6_970_000.0}})
    assert lines == [
        "one in flight: today 33.18 M instructions per payment (both nodes), REV 29.39 M; "
        "today/REV 1.129",
        "batched (200 per commitment): today 7.77 M instructions per payment (both nodes), "
        "REV 6.97 M; today/REV 1.115"]
