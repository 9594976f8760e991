"""Seed phrases for a seeded Electrum wallet: Electrum segwit seeds, the same for the same seed."""

from __future__ import annotations

import hashlib
import hmac
from itertools import product
from string import ascii_lowercase

import pytest

from channel.seeded import seed_from_text
from regtest.electrum_seed import electrum_seed_words

#: 2,048 distinct lower-case words standing in for Electrum's English list (not in the repo).
WORDS = ["".join(letters) for letters in product(ascii_lowercase, repeat=3)][:2048]


def _seed_version(phrase: str) -> str:
    return hmac.new(b"Seed version", phrase.encode(), hashlib.sha512).hexdigest()


def test_the_phrase_is_an_electrum_segwit_seed_of_twelve_listed_words() -> None:
    """The phrase is twelve words of the list whose seed-version HMAC starts with "100",
    the prefix Electrum reads as a segwit seed."""
    phrase = electrum_seed_words(seed_from_text("7/erin"), WORDS)
    words = phrase.split(" ")
    assert len(words) == 12 and set(words) <= set(WORDS)
    assert _seed_version(phrase)[:3] == "100"


def test_the_same_seed_gives_the_same_phrase_and_another_seed_another() -> None:
    """Seed 7 gives one phrase on every call; seeds 8 and 7/alice give two others."""
    first = electrum_seed_words(seed_from_text("7/erin"), WORDS)
    assert electrum_seed_words(seed_from_text("7/erin"), WORDS) == first
    others = {electrum_seed_words(seed_from_text(text), WORDS) for text in ("8/erin", "7/alice")}
    assert first not in others and len(others) == 2


def test_a_word_list_of_another_size_is_refused() -> None:
    """A list of 2,047 words is not Electrum's: ValueError, naming both sizes."""
    with pytest.raises(ValueError, match="2048 words, not 2047"):
        electrum_seed_words(seed_from_text("7"), WORDS[:-1])
