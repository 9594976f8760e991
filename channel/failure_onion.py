"""BOLT 4 "Returning Errors": the encrypted ``reason`` of ``update_fail_htlc``.

Pure. Three roles, each a function of the HTLC's per-hop shared secret(s):

- the erring node builds ``HMAC(um, payload) ‖ payload`` with
  ``payload = u16 failure_len ‖ failuremsg ‖ u16 pad_len ‖ pad`` (failure_len + pad_len =
  256 for every message that fits, so all failures look alike on the wire) and XORs it with
  its ``ammag`` stream (``build_failure_onion``);
- every hop upstream XORs the packet with its own ``ammag`` stream (``wrap_failure_onion``);
- the origin, holding every hop's shared secret, XORs with hop 0's stream, then hop 1's, …
  and the first hop whose ``um`` HMAC matches is the one that failed
  (``decrypt_failure_onion``).
"""

from __future__ import annotations

import hmac
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from channel.codec import Reader
from channel.errors import MalformedMessage
from channel.onion import chacha20_xor, generate_key
from channel.onion_failures import OnionFailure, decode_failure_message

__all__ = [
    "FAILURE_PADDED_SIZE",
    "ORIGIN_DECRYPTION_ROUNDS",
    "DecryptedFailure",
    "build_failure_onion",
    "decrypt_failure_onion",
    "wrap_failure_onion",
]

#: failure_len + pad_len, the size every failure message is padded to (BOLT 4 SHOULD).
FAILURE_PADDED_SIZE: Final = 256
#: BOLT 4 "Origin node": decrypt this many layers whatever the route's length (27 is the
#: most hops a 1300-byte onion of minimal TLV payloads can hold).
ORIGIN_DECRYPTION_ROUNDS: Final = 27
_DUMMY_SECRET: Final = bytes(32)
_HMAC_SIZE: Final = 32
_U16 = struct.Struct(">H")


def _um_hmac(shared_secret: bytes, payload: bytes) -> bytes:
    return hmac.digest(generate_key(b"um", shared_secret), payload, "sha256")


def wrap_failure_onion(*, shared_secret: bytes, packet: bytes) -> bytes:
    """One hop's layer: XOR with the ``ammag`` stream of its shared secret (its own inverse)."""
    return chacha20_xor(generate_key(b"ammag", shared_secret), packet)


def build_failure_onion(*, shared_secret: bytes, failure: OnionFailure | bytes) -> bytes:
    """The erring node's ``reason``: padded, authenticated with ``um``, encrypted with ``ammag``.

    ``failure`` is a typed failure or an already-encoded ``failuremsg`` (e.g. one with a TLV
    extension). ``shared_secret`` is the one this node derived when it peeled the HTLC's onion.
    """
    message = failure.encode() if isinstance(failure, OnionFailure) else failure
    if len(message) < 2 or len(message) > 0xFFFF:
        raise MalformedMessage(f"failure message of {len(message)} bytes")
    pad_len = max(0, FAILURE_PADDED_SIZE - len(message))
    payload = _U16.pack(len(message)) + message + _U16.pack(pad_len) + bytes(pad_len)
    return wrap_failure_onion(
        shared_secret=shared_secret, packet=_um_hmac(shared_secret, payload) + payload
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class DecryptedFailure:
    """A failure the origin read back: ``hop_index`` 0 is the first hop of the route."""

    hop_index: int
    failure: OnionFailure
    failure_message: bytes


def decrypt_failure_onion(
    *, shared_secrets: Sequence[bytes], packet: bytes
) -> DecryptedFailure:
    """Peel the layers in route order until a hop's ``um`` HMAC authenticates the payload.

    ``shared_secrets`` are the route's, first hop first (``onion_shared_secrets``). Raises
    ``MalformedMessage`` when no hop authenticates it (a hop garbled it) or when the
    authenticated payload does not parse.

    As BOLT 4 "Origin node" asks, the work does not depend on which hop failed: every hop's
    layer is peeled and checked, then dummy rounds (zero secret) up to
    ``ORIGIN_DECRYPTION_ROUNDS``, so timing does not leak the failing hop's position.
    """
    found: tuple[int, bytes] | None = None
    rounds = max(ORIGIN_DECRYPTION_ROUNDS, len(shared_secrets))
    for hop_index in range(rounds):
        real = hop_index < len(shared_secrets)
        shared_secret = shared_secrets[hop_index] if real else _DUMMY_SECRET
        packet = wrap_failure_onion(shared_secret=shared_secret, packet=packet)
        payload = packet[_HMAC_SIZE:]
        matches = hmac.compare_digest(_um_hmac(shared_secret, payload), packet[:_HMAC_SIZE])
        if matches and real and found is None and len(packet) >= _HMAC_SIZE + 2:
            found = (hop_index, payload)
    if found is None:
        raise MalformedMessage(
            f"no hop of the {len(shared_secrets)}-hop route authenticates the failure onion"
        )
    hop_index, payload = found
    try:
        reader = Reader(payload)
        message = reader.read(reader.u16())
        # the origin must not insist on the padding's length, only read what is there
        failure = decode_failure_message(message)
    except MalformedMessage as exc:
        raise MalformedMessage(f"hop {hop_index} sent an unreadable failure: {exc}") from exc
    return DecryptedFailure(hop_index=hop_index, failure=failure, failure_message=message)
