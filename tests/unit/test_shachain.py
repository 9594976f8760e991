"""BOLT 3 Appendix D: per-commitment secret generation and the receiver's compact storage."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from channel.errors import InvalidRevocation
from channel.shachain import (
    MAX_INDEX,
    RevocationStore,
    commitment_for_index,
    generate_from_seed,
    index_for_commitment,
)

APP_D = json.loads((Path(__file__).parent.parent / "vectors" / "bolt3.json").read_text())[
    "appendix_d_per_commitment_secrets"]


@pytest.mark.parametrize("case", APP_D["generation_tests"],
                         ids=[c["name"] for c in APP_D["generation_tests"]])
def test_generate_from_seed(case: dict[str, Any]) -> None:
    """generate_from_seed reproduces each Appendix D generation vector."""
    secret = generate_from_seed(bytes.fromhex(case["seed"]), case["I"])
    assert secret.hex() == case["output"].lower()


@pytest.mark.parametrize("case", APP_D["storage_tests"],
                         ids=[c["name"] for c in APP_D["storage_tests"]])
def test_storage_sequence(case: dict[str, Any]) -> None:
    """Each storage sequence accepts its OK steps and rejects exactly its ERROR step."""
    store = RevocationStore()
    for step in case["steps"]:
        secret = bytes.fromhex(step["secret"])
        if step["expected"] == "ERROR":
            with pytest.raises(InvalidRevocation, match="does not derive"):
                store.add_secret(step["I"], secret)
        else:
            store.add_secret(step["I"], secret)
            assert store.get_secret(step["I"]) == secret
    assert case["must_fail_at_last_step"] == (case["steps"][-1]["expected"] == "ERROR")


def test_storage_derives_every_earlier_secret_after_many_inserts() -> None:
    """After 1000 in-order inserts, every secret given is still derivable, with <= 49 kept."""
    seed = bytes(range(32))
    store = RevocationStore()
    for n in range(1000):
        store.add_secret_for_commitment(n, generate_from_seed(seed, index_for_commitment(n)))
    assert len(store.to_bytes()) <= 2 + 49 * 39
    for n in range(1000):
        assert store.get_secret_for_commitment(n) == generate_from_seed(
            seed, index_for_commitment(n))
    assert store.get_secret_for_commitment(1000) is None


def test_storage_rejects_out_of_order() -> None:
    """A secret must carry the next index down: skipping or repeating one raises."""
    seed = b"\x42" * 32
    store = RevocationStore()
    store.add_secret(MAX_INDEX, generate_from_seed(seed, MAX_INDEX))
    with pytest.raises(InvalidRevocation):
        store.add_secret(MAX_INDEX - 2, generate_from_seed(seed, MAX_INDEX - 2))
    with pytest.raises(InvalidRevocation):
        store.add_secret(MAX_INDEX, generate_from_seed(seed, MAX_INDEX))
    assert store.next_index == MAX_INDEX - 1


def test_storage_round_trip_and_copy() -> None:
    """to_bytes/from_bytes and copy() preserve the store; the copy is independent."""
    seed = b"\x07" * 32
    store = RevocationStore()
    for n in range(37):
        store.add_secret_for_commitment(n, generate_from_seed(seed, index_for_commitment(n)))
    restored = RevocationStore.from_bytes(store.to_bytes())
    assert restored == store
    assert restored.get_secret_for_commitment(5) == generate_from_seed(
        seed, index_for_commitment(5))
    clone = store.copy()
    clone.add_secret_for_commitment(37, generate_from_seed(seed, index_for_commitment(37)))
    assert store.get_secret_for_commitment(37) is None
    assert clone != store
    with pytest.raises(ValueError):
        RevocationStore.from_bytes(store.to_bytes()[:-1])


def test_index_mapping() -> None:
    """Commitment number n maps to shachain index 2^48-1-n and back."""
    assert index_for_commitment(0) == 2**48 - 1
    assert index_for_commitment(42) == 2**48 - 43
    assert commitment_for_index(index_for_commitment(12345)) == 12345
    with pytest.raises(ValueError):
        index_for_commitment(2**48)
