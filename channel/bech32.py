"""Bech32 text encoding (BIP 173 / BIP 350) and the address forms a BOLT 11 fallback renders to.

Pure. BOLT 11 uses bech32 with the BIP 173 checksum constant (1) but lifts the 90-character
limit, so these functions take no length limit; segwit addresses (for fallback display) use
bech32 for witness version 0 and bech32m (constant 0x2bc830a3) for versions 1-16, as BIP 350
says. Base58check renders the P2PKH and P2SH fallbacks.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

__all__ = [
    "CHARSET",
    "Bech32Error",
    "base58check",
    "bech32_decode",
    "bech32_encode",
    "bytes_to_words",
    "segwit_address",
    "words_to_bytes",
    "words_to_int",
]

#: The 32 characters of bech32, indexed by their 5-bit value.
CHARSET: Final = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_BECH32_CONST: Final = 1
_BECH32M_CONST: Final = 0x2BC830A3
_GENERATOR: Final = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
_WORD_OF: Final = {c: i for i, c in enumerate(CHARSET)}
_BASE32_DIGITS: Final = "0123456789abcdefghijklmnopqrstuv"
# bytes.translate tables (one C call per text instead of a dict lookup per character):
# character -> 5-bit value (0xFF: not bech32), and 5-bit value -> base-32 digit for int()
_WORD_TABLE: Final = bytes(_WORD_OF.get(chr(b), 0xFF) for b in range(256))
_DIGIT_TABLE: Final = (_BASE32_DIGITS + "!" * 224).encode("ascii")
_BASE58: Final = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"


class Bech32Error(ValueError):
    """Text that is not valid bech32; the message says which rule it breaks."""


def _generator_table() -> tuple[int, ...]:
    """XOR of the generators selected by each 5-bit value of the checksum's top bits."""
    table = []
    for top in range(32):
        value = 0
        for i, generator in enumerate(_GENERATOR):
            if (top >> i) & 1:
                value ^= generator
        table.append(value)
    return tuple(table)


_GENERATOR_TABLE: Final = _generator_table()


def _pair_table() -> tuple[int, ...]:
    """What the top 10 bits of the checksum add over two words (the step is linear over GF(2):
    the low 20 bits just shift by 10, the two words land in the low 10 bits)."""
    table = []
    for top in range(1024):
        chk = top << 20
        for _ in range(2):
            chk = (chk & 0x1FFFFFF) << 5 ^ _GENERATOR_TABLE[chk >> 25]
        table.append(chk)
    return tuple(table)


_PAIR_TABLE: Final = _pair_table()


def _polymod(values: Sequence[int]) -> int:
    """BIP 173's checksum polynomial, one table lookup per two words (same result as its loop:
    a BOLT 11 invoice is hundreds of words and this is the hot loop of reading one)."""
    chk = 1
    pairs = _PAIR_TABLE
    words = iter(values)
    for first, second in zip(words, words, strict=False):   # an odd last word: below
        chk = (chk & 0xFFFFF) << 10 ^ first << 5 ^ second ^ pairs[chk >> 20]
    if len(values) % 2:
        chk = (chk & 0x1FFFFFF) << 5 ^ values[-1] ^ _GENERATOR_TABLE[chk >> 25]
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _checksum(hrp: str, words: Sequence[int], const: int) -> list[int]:
    poly = _polymod([*_hrp_expand(hrp), *words, 0, 0, 0, 0, 0, 0]) ^ const
    return [(poly >> 5 * (5 - i)) & 31 for i in range(6)]


def bech32_decode(text: str) -> tuple[str, list[int]]:
    """Split ``text`` into its lower-case hrp and 5-bit data words (checksum verified, removed).

    BIP 173: all upper case is fine, mixed case is not (checked before lower-casing, which would
    hide it); the hrp ends at the **last** ``1``; hrp characters are ASCII 33-126.
    """
    if text.lower() != text and text.upper() != text:
        raise Bech32Error("mixes upper and lower case (BIP 173 allows one case only)")
    text = text.lower()
    pos = text.rfind("1")
    if pos < 1:
        raise Bech32Error("has no '1' separating the human-readable part from the data")
    hrp, data = text[:pos], text[pos + 1:]
    if any(not 33 <= ord(c) <= 126 for c in hrp):
        raise Bech32Error("human-readable part has a character outside ASCII 33-126")
    if len(data) < 6:
        raise Bech32Error("data part is shorter than the 6-character checksum")
    raw = data.encode("ascii", "replace").translate(_WORD_TABLE)
    if 0xFF in raw:
        bad = next(c for c in data if c not in _WORD_OF)
        raise Bech32Error(f"character {bad!r} is not in the bech32 alphabet")
    words = list(raw)
    if _polymod(_hrp_expand(hrp) + words) != _BECH32_CONST:
        raise Bech32Error("bech32 checksum does not verify (a character is wrong or missing)")
    return hrp, words[:-6]


def bech32_encode(hrp: str, words: Sequence[int]) -> str:
    """Lower-case bech32 (BIP 173 constant) of ``hrp`` and 5-bit ``words``; no length limit."""
    if words and not (0 <= min(words) and max(words) < 32):
        raise ValueError("bech32_encode: every word must be 5 bits")
    hrp = hrp.lower()
    return hrp + "1" + "".join([CHARSET[w] for w in [*words, *_checksum(hrp, words,
                                                                          _BECH32_CONST)]])


def bytes_to_words(data: bytes) -> list[int]:
    """Bytes as 5-bit words, the last one zero-padded (BOLT 11: "pad field data ... using 0s")."""
    count = (len(data) * 8 + 4) // 5
    value = int.from_bytes(data, "big") << (count * 5 - len(data) * 8)
    return [(value >> 5 * i) & 31 for i in range(count - 1, -1, -1)]


def words_to_bytes(words: Sequence[int], *, pad: bool = False) -> bytes:
    """5-bit words as bytes.

    ``pad`` False (field data): the trailing bits short of a whole byte are padding, dropped.
    ``pad`` True (BOLT 11 signing data): zero bits are appended up to a byte boundary.
    """
    bits = len(words) * 5
    size = (bits + 7) // 8 if pad else bits // 8
    value = words_to_int(words)
    value = value << (size * 8 - bits) if pad else value >> (bits - size * 8)
    return value.to_bytes(size, "big")


def words_to_int(words: Sequence[int]) -> int:
    """Big-endian value of 5-bit words (BOLT 11 ``x``, ``c``, ``9`` and the timestamp)."""
    # int() parses base 32 with digits 0-9a-v: one C call instead of a shift per word (a word
    # over 31 becomes "!", which int() refuses)
    return int(bytes(words).translate(_DIGIT_TABLE), 32) if words else 0


def segwit_address(hrp: str, witness_version: int, witness_program: bytes) -> str:
    """BIP 173 (version 0) or BIP 350 bech32m (versions 1-16) address, e.g. ``bc1q…``."""
    if not 0 <= witness_version <= 16:
        raise ValueError("segwit_address: witness version must be 0-16")
    words = [witness_version, *bytes_to_words(witness_program)]
    const = _BECH32_CONST if witness_version == 0 else _BECH32M_CONST
    return hrp + "1" + "".join(CHARSET[w] for w in [*words, *_checksum(hrp, words, const)])


def base58check(payload: bytes) -> str:
    """Base58 of ``payload`` + its 4-byte double-SHA256 checksum (P2PKH/P2SH addresses)."""
    raw = payload + hashlib.sha256(hashlib.sha256(payload).digest()).digest()[:4]
    value = int.from_bytes(raw, "big")
    out = ""
    while value:
        value, digit = divmod(value, 58)
        out = _BASE58[digit] + out
    leading_zeros = len(raw) - len(raw.lstrip(b"\0"))
    return "1" * leading_zeros + out
