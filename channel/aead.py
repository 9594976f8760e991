"""ChaCha20 and ChaCha20-Poly1305 (RFC 8439), loaded from ``cryptography`` on first use.

The ``cryptography`` library costs about 7 MB resident once loaded, and an idle node never
encrypts anything (no peer, no payment, no tower), so the modules that need these ciphers (BOLT
8 transport, BOLT 4 onions, watchtower blobs) reach them through here.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305

__all__ = ["chacha20_poly1305", "chacha20_xor", "invalid_tag"]


@cache
def _aead_class() -> type[ChaCha20Poly1305]:
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    return ChaCha20Poly1305


def chacha20_poly1305(key: bytes) -> ChaCha20Poly1305:
    """The AEAD under ``key`` (32 bytes)."""
    return _aead_class()(key)


@cache
def invalid_tag() -> type[Exception]:
    """The exception a failed MAC check raises (``except invalid_tag():``; the expression is
    evaluated only once an exception is being matched)."""
    from cryptography.exceptions import InvalidTag
    return InvalidTag


@cache
def _stream_classes() -> tuple[Any, Any]:
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms
    return Cipher, algorithms.ChaCha20


def chacha20_xor(key: bytes, nonce16: bytes, data: bytes) -> bytes:
    """``data`` XOR the ChaCha20 stream of ``key`` with ``cryptography``'s 16-byte nonce
    (a 4-byte little-endian counter, then the RFC 8439 12-byte nonce)."""
    cipher, chacha20 = _stream_classes()
    result: bytes = cipher(chacha20(key, nonce16), mode=None).encryptor().update(data)
    return result
