"""Randomness drawn from a seed, for runs that must repeat exactly (``chanlab demo --seed``).

Pure. A seeded node draws its node key, its channel key seeds, temporary channel ids, payment
preimages and secrets and onion session keys from :func:`seeded_entropy` instead of the OS, so
the same scripted run gives the same keys, hence the same transactions and txids. Each label
is its own stream (SHA256 of seed, label and a counter): a node that restarts draws from a new
label (its boot number), so nothing is ever drawn twice. Never for real money: whoever knows
the seed knows every key.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

__all__ = ["seed_from_text", "seeded_entropy", "seeded_secret"]

#: secp256k1's group order: a private key must be below it (and not zero).
_CURVE_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def seed_from_text(text: str) -> bytes:
    """The 32-byte seed a person's ``--seed`` text stands for."""
    return hashlib.sha256(b"chanlab seed/" + text.encode()).digest()


def seeded_entropy(seed: bytes, label: str) -> Callable[[int], bytes]:
    """``draw(n)``: the next ``n`` bytes of the stream (seed, label)."""
    counter = 0
    buffer = b""

    def draw(n: int) -> bytes:
        nonlocal counter, buffer
        while len(buffer) < n:
            buffer += hashlib.sha256(seed + label.encode() + b"/" +
                                     counter.to_bytes(8, "big")).digest()
            counter += 1
        out, buffer = buffer[:n], buffer[n:]
        return out

    return draw


def seeded_secret(seed: bytes, label: str) -> bytes:
    """A valid secp256k1 private key from (seed, label)."""
    draw = seeded_entropy(seed, label)
    while True:
        candidate = draw(32)
        if 0 < int.from_bytes(candidate, "big") < _CURVE_ORDER:
            return candidate
