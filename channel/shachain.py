"""Per-commitment secrets: generation from a seed and the receiver's compact storage (shachain).

Pure. BOLT 3 "Per-commitment Secret Requirements" and "Efficient Per-commitment Secret Storage".

Indices count *down*: the secret for commitment number ``n`` (0, 1, 2, ... as the channel
advances) is ``generate_from_seed(seed, 2**48 - 1 - n)``. :func:`index_for_commitment` does that
mapping; the storage API below speaks in indices, with ``*_for_commitment`` helpers on top.

The storage keeps at most 49 secrets (one per count of trailing zero bits of the index) and can
still derive every secret it was ever given, because a secret with ``b`` trailing zero bits in its
index is the ancestor of the next ``2**b - 1`` ones.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from channel.errors import InvalidRevocation, MalformedMessage

__all__ = [
    "MAX_INDEX",
    "RevocationStore",
    "commitment_for_index",
    "generate_from_seed",
    "index_for_commitment",
]

MAX_INDEX = (1 << 48) - 1
_NUM_SLOTS = 49
_SERIAL_VERSION = 1


def index_for_commitment(commitment_number: int) -> int:
    """The shachain index of commitment ``commitment_number``: ``2**48 - 1 - commitment_number``."""
    if not 0 <= commitment_number <= MAX_INDEX:
        raise ValueError(f"commitment_number out of range: {commitment_number}")
    return MAX_INDEX - commitment_number


def commitment_for_index(index: int) -> int:
    """Inverse of :func:`index_for_commitment`."""
    if not 0 <= index <= MAX_INDEX:
        raise ValueError(f"shachain index out of range: {index}")
    return MAX_INDEX - index


def _derive(base: bytes, bits: int, index: int) -> bytes:
    """BOLT 3 ``derive_secret``: walk bits ``bits-1 .. 0`` of ``index`` from ``base``."""
    value = bytearray(base)
    sha256 = hashlib.sha256
    for bit in range(bits - 1, -1, -1):
        if (index >> bit) & 1:
            value[bit // 8] ^= 1 << (bit % 8)
            value = bytearray(sha256(value).digest())
    return bytes(value)


def generate_from_seed(seed: bytes, index: int) -> bytes:
    """BOLT 3 ``generate_from_seed(seed, I)``: the per-commitment secret at shachain ``index``."""
    if len(seed) != 32:
        raise ValueError("shachain seed must be 32 bytes")
    if not 0 <= index <= MAX_INDEX:
        raise ValueError(f"shachain index out of range: {index}")
    return _derive(seed, 48, index)


def _trailing_zeros(index: int) -> int:
    if index == 0:
        return 48
    return (index & -index).bit_length() - 1


@dataclass(slots=True)
class _Slot:
    index: int
    secret: bytes


class RevocationStore:
    """Compact storage of the secrets the peer revealed (BOLT 3, "Efficient ... Storage").

    Mutable (it is the receiver's accumulator); :meth:`copy` gives an independent one. Secrets
    must arrive in order, highest index first (commitment 0, 1, 2, ...). :meth:`add_secret`
    raises :class:`channel.errors.InvalidRevocation` when the new secret does not derive the
    ones already stored (so they cannot come from one seed) or arrives out of order.
    """

    __slots__ = ("_slots",)

    def __init__(self) -> None:
        self._slots: list[_Slot | None] = [None] * _NUM_SLOTS

    def copy(self) -> RevocationStore:
        """An independent copy."""
        other = RevocationStore()
        other._slots = [None if s is None else _Slot(index=s.index, secret=s.secret)
                        for s in self._slots]
        return other

    @property
    def next_index(self) -> int:
        """The index the next secret must carry (MAX_INDEX for an empty store)."""
        lowest = min((s.index for s in self._slots if s is not None), default=MAX_INDEX + 1)
        return lowest - 1

    def add_secret(self, index: int, secret: bytes) -> None:
        """Insert the secret for shachain ``index``; check it against the stored ones first.

        Only buckets strictly below the new one are checked: those are exactly the secrets the
        new one is an ancestor of.
        """
        if len(secret) != 32:
            raise MalformedMessage("per_commitment_secret must be 32 bytes")
        if index != self.next_index:
            raise InvalidRevocation(
                f"secret for index {index} out of order (expected {self.next_index})")
        bucket = _trailing_zeros(index)
        for b in range(bucket):
            slot = self._slots[b]
            if slot is not None and _derive(secret, bucket, slot.index) != slot.secret:
                raise InvalidRevocation(
                    f"secret for index {index} does not derive the stored one at {slot.index}")
        self._slots[bucket] = _Slot(index=index, secret=secret)

    def get_secret(self, index: int) -> bytes | None:
        """The secret at ``index``, or None if it was not revealed (yet)."""
        if not 0 <= index <= MAX_INDEX:
            raise ValueError(f"shachain index out of range: {index}")
        for b, slot in enumerate(self._slots):
            if slot is None:
                continue
            mask = ~((1 << b) - 1)
            if (index & mask) == slot.index:
                return _derive(slot.secret, b, index)
        return None

    def add_secret_for_commitment(self, commitment_number: int, secret: bytes) -> None:
        """:meth:`add_secret` addressed by commitment number."""
        self.add_secret(index_for_commitment(commitment_number), secret)

    def get_secret_for_commitment(self, commitment_number: int) -> bytes | None:
        """:meth:`get_secret` addressed by commitment number."""
        return self.get_secret(index_for_commitment(commitment_number))

    def to_bytes(self) -> bytes:
        """Serialize: version byte, count, then per entry ``slot:u8 index:u48 secret:32``."""
        entries = [(b, s) for b, s in enumerate(self._slots) if s is not None]
        out = bytearray((_SERIAL_VERSION, len(entries)))
        for b, s in entries:
            out.append(b)
            out += s.index.to_bytes(6, "big")
            out += s.secret
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> RevocationStore:
        """Inverse of :meth:`to_bytes`; raises ValueError on malformed input."""
        if len(data) < 2 or data[0] != _SERIAL_VERSION:
            raise ValueError("RevocationStore: bad header")
        count = data[1]
        if len(data) != 2 + 39 * count:
            raise ValueError("RevocationStore: bad length")
        store = cls()
        for i in range(count):
            off = 2 + 39 * i
            b = data[off]
            index = int.from_bytes(data[off + 1:off + 7], "big")
            if b >= _NUM_SLOTS or _trailing_zeros(index) != b or store._slots[b] is not None:
                raise ValueError("RevocationStore: inconsistent entry")
            store._slots[b] = _Slot(index=index, secret=bytes(data[off + 7:off + 39]))
        return store

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RevocationStore):
            return NotImplemented
        return self._slots == other._slots

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        n = sum(s is not None for s in self._slots)
        return f"RevocationStore(entries={n}, next_index={self.next_index})"
