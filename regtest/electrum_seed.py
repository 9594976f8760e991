"""Electrum seed phrases derived from a chanlab seed, so a seeded demo's Electrum wallet repeats.

Pure. ``chanlab demo electrum --seed N`` restores Erin's wallet from :func:`electrum_seed_words`
instead of letting Electrum draw a new one: the same ``N`` gives the same phrase, hence the same
on-chain addresses and, because the phrase is an Electrum *segwit* seed, the same Lightning node
key and channel funding keys (Electrum derives its ``lightning_xprv`` at ``m/67'`` of the seed's
root key only for segwit seeds; a BIP 39 phrase or an imported master key gets a random one).

What makes a phrase an Electrum segwit seed (Electrum's ``mnemonic.is_new_seed``): the hex of
HMAC-SHA512(key ``"Seed version"``, the normalized phrase) starts with ``"100"``. Any words
pass that test, but we draw them from Electrum's own English word list (it ships it), so the
phrase reads like the ones Electrum makes. One try in 4,096 passes, so the search is short.
Regtest only: whoever knows the demo seed knows the wallet.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from itertools import count

from channel.seeded import seeded_entropy

__all__ = ["SEGWIT_SEED_PREFIX", "electrum_seed_type_prefix", "electrum_seed_words"]

#: Electrum's version prefix of a segwit (p2wpkh) seed (its ``version.SEED_PREFIX_SW``).
SEGWIT_SEED_PREFIX = "100"
WORDS_PER_PHRASE = 12
_WORDLIST_SIZE = 2048


def electrum_seed_type_prefix(phrase: str) -> str:
    """The hex digest Electrum reads a phrase's seed type from (its first digits are the type).

    The phrase must already be normalized the way Electrum normalizes it: lower case ASCII
    words separated by single spaces (what :func:`electrum_seed_words` returns)."""
    return hmac.new(b"Seed version", phrase.encode(), hashlib.sha512).hexdigest()


def electrum_seed_words(seed: bytes, wordlist: Sequence[str]) -> str:
    """Twelve words of ``wordlist`` forming an Electrum segwit seed, drawn from ``seed``.

    Each try draws twelve fresh word indices from the seeded stream; the first phrase whose
    seed-version digest starts with :data:`SEGWIT_SEED_PREFIX` is the answer, so the same seed
    and word list always give the same phrase."""
    if len(wordlist) != _WORDLIST_SIZE:
        raise ValueError(f"an Electrum word list has {_WORDLIST_SIZE} words, not {len(wordlist)}")
    if any(not word.isascii() or not word.islower() or " " in word for word in wordlist):
        raise ValueError("the word list must hold lower-case ASCII words (Electrum's English)")
    draw = seeded_entropy(seed, "electrum seed words")
    for _ in count():
        indices = [int.from_bytes(draw(2), "big") % _WORDLIST_SIZE
                   for _ in range(WORDS_PER_PHRASE)]
        phrase = " ".join(wordlist[i] for i in indices)
        if electrum_seed_type_prefix(phrase).startswith(SEGWIT_SEED_PREFIX):
            return phrase
    raise AssertionError("unreachable: count() never ends")
