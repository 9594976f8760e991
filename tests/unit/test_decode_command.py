"""`chanlab decode`: the spec's invoice read for people and as JSON; a bad one is one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from regtest.cli import main

VECTORS = json.loads((Path(__file__).parent.parent / "vectors" / "bolt11.json").read_text())


def test_decode_prints_amount_with_both_units_and_the_description(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The spec's 2500u coffee invoice shows 250,000,000 msat = 250,000 sat and its memo."""
    example = VECTORS["valid"][1]
    assert main(["decode", example["invoice"]]) == 0
    out = capsys.readouterr().out
    assert "250000000 msat (250000 sat)" in out
    assert example["description"] in out
    assert example["payee_node_id"] in out


def test_decode_json_has_the_payment_hash(capsys: pytest.CaptureFixture[str]) -> None:
    """--json carries the fields a script needs, the payment hash among them."""
    example = VECTORS["valid"][1]
    assert main(["decode", "--json", example["invoice"]]) == 0
    fields = json.loads(capsys.readouterr().out)
    assert fields["payment_hash"] == example["payment_hash"]
    assert fields["amount_msat"] == 250_000_000


def test_invalid_invoice_is_one_line_and_exit_1(capsys: pytest.CaptureFixture[str]) -> None:
    """A corrupted checksum gives exit code 1 and one line that names the problem."""
    text = VECTORS["valid"][1]["invoice"]
    broken = text[:-1] + ("q" if text[-1] != "q" else "p")
    assert main(["decode", broken]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("chanlab: error:")
