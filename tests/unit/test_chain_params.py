"""python-bitcoinlib's chain parameters are chosen once per process, never rebound per call."""

from __future__ import annotations

import bitcoin
import pytest

import regtest.chain as chain_module
from channel.keys import PrivateKey
from channel.scripts import p2wpkh
from regtest.chain import address_of, use_chain_params
from regtest.errors import RegtestError

SCRIPT = p2wpkh(PrivateKey(b"\x07" * 32).pubkey)


def test_address_of_selects_the_parameters_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many addresses, one selection at most: address_of no longer calls SelectParams each time,
    and the regtest address is the bcrt1 one."""
    calls: list[str] = []
    monkeypatch.setattr(chain_module, "_chosen_chain", None)
    monkeypatch.setattr(bitcoin, "SelectParams", calls.append)
    addresses = {address_of(SCRIPT, "regtest") for _ in range(50)}
    assert len(addresses) == 1
    assert next(iter(addresses)).startswith("bcrt1q")
    assert calls == []      # the test session selected regtest already: nothing to do


def test_another_chain_is_refused_once_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    """After regtest was chosen, asking for mainnet addresses raises instead of rebinding."""
    calls: list[str] = []
    monkeypatch.setattr(chain_module, "_chosen_chain", None)
    monkeypatch.setattr(bitcoin, "SelectParams", calls.append)
    use_chain_params("regtest")
    with pytest.raises(RegtestError, match="one process per chain"):
        use_chain_params("main")
    with pytest.raises(RegtestError):
        address_of(SCRIPT, "test")
    assert calls == []
    assert type(bitcoin.params) is bitcoin.RegTestParams
