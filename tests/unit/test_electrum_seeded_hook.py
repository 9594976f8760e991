"""The seeded Electrum hook: one channel seed per funding key, and nothing without its key."""

from __future__ import annotations

import os
import sys

import pytest

from regtest.electrum_seeded_hook import KEY_ENV, channel_seed, install

KEY = bytes(range(32))
FUNDING_A = bytes.fromhex("02" + "11" * 32)
FUNDING_B = bytes.fromhex("03" + "11" * 32)


def test_each_funding_key_and_each_demo_key_gives_its_own_channel_seed() -> None:
    """The same (key, funding pubkey) gives the same 32 bytes; another pubkey or key others."""
    seed = channel_seed(KEY, FUNDING_A)
    assert len(seed) == 32 and channel_seed(KEY, FUNDING_A) == seed
    assert len({seed, channel_seed(KEY, FUNDING_B), channel_seed(bytes(32), FUNDING_A)}) == 3


def test_without_its_key_the_hook_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no key in the environment ``install`` leaves Python's importers as they were."""
    monkeypatch.delenv(KEY_ENV, raising=False)
    before = list(sys.meta_path)
    install()
    assert sys.meta_path == before


def test_with_its_key_the_hook_waits_for_electrums_lnworker_only(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With a key, ``install`` adds one importer that answers no other module, and takes the
    key out of the environment (nothing Electrum starts inherits it)."""
    monkeypatch.setenv(KEY_ENV, KEY.hex())
    before = list(sys.meta_path)
    install()
    try:
        added = [finder for finder in sys.meta_path if finder not in before]
        assert len(added) == 1 and KEY_ENV not in os.environ
        assert added[0].find_spec("json", None) is None
    finally:
        sys.meta_path[:] = before
