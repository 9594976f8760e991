"""Electrum's BTC strings convert to and from integer satoshis exactly."""

from __future__ import annotations

import pytest

from regtest.electrum import ElectrumError, btc_to_sat, sat_to_btc


@pytest.mark.parametrize(
    ("text", "amount_sat"),
    [("1.", 100_000_000), ("0.02", 2_000_000), ("0.00000001", 1), ("0", 0),
     ("20999999.9769", 2_099_999_997_690_000), ("0.01234567", 1_234_567)],
)
def test_btc_strings_become_exact_satoshis(text: str, amount_sat: int) -> None:
    """Every Electrum amount string maps to the same integer satoshis, with no float rounding."""
    assert btc_to_sat(text) == amount_sat


@pytest.mark.parametrize("amount_sat", [1, 546, 100_000, 2_000_000, 2_099_999_997_690_000])
def test_satoshis_round_trip_through_btc_strings(amount_sat: int) -> None:
    """sat -> BTC string -> sat gives the same integer (the string has no exponent)."""
    text = sat_to_btc(amount_sat)
    assert "E" not in text and btc_to_sat(text) == amount_sat


@pytest.mark.parametrize("text", ["0.000000001", "abc", ""])
def test_amounts_finer_than_a_satoshi_or_not_numbers_are_refused(text: str) -> None:
    """A fraction of a satoshi or a non-number is an error, never silently rounded."""
    with pytest.raises(ElectrumError):
        btc_to_sat(text)
