"""Channel keys: typed points, BOLT 3 key derivation, ECDSA signing and verification.

Pure. All curve work goes through libsecp256k1 (coincurve's bindings); no OpenSSL.

Key kinds are distinct types (LDK's idea) so that a script builder cannot be handed the wrong key:
``FundingPubkey``, the four basepoints, ``PerCommitmentPoint`` and the derived
``RevocationPubkey``, ``DelayedPubkey``, ``HtlcPubkey``, ``PaymentPubkey``. Each wraps the 33-byte
compressed encoding, validated on construction (unless produced by a derivation here).

BOLT 3 "Key Derivation":

    pubkey  = basepoint + SHA256(per_commitment_point || basepoint) * G
    privkey = basepoint_secret + SHA256(per_commitment_point || basepoint)           (mod n)
    revocationpubkey  = R * SHA256(R || P) + P * SHA256(P || R)
    revocationprivkey = r * SHA256(R || P) + p * SHA256(P || R)                     (mod n)

with R/r the revocation basepoint (secret) of the party who can punish and P/p the
per-commitment point (secret) of the commitment's broadcaster. With ``option_static_remotekey``
(both formats here) the ``remotepubkey`` is the peer's ``payment_basepoint`` itself.

Signatures are 64-byte compact ``r || s`` with low S (as sent in BOLT 2 messages), deterministic
(RFC 6979, libsecp256k1's default nonce, so BOLT 3 vector signatures are reproduced exactly);
:func:`der_signature` / :func:`witness_signature` convert for witnesses.

Per-commitment secrets: commitment numbers count UP from 0; the shachain index counts down:
``per_commitment_secret(n) = generate_from_seed(per_commitment_seed, 2**48 - 1 - n)``.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from typing import Any, TypeVar

from coincurve._libsecp256k1 import ffi, lib  # type: ignore[import-not-found,import-untyped,unused-ignore]
from coincurve.context import GLOBAL_CONTEXT

from channel.shachain import generate_from_seed, index_for_commitment

__all__ = [
    "SIGHASH_ALL",
    "SIGHASH_SINGLE_ANYONECANPAY",
    "Basepoints",
    "ChannelKeys",
    "DelayedPaymentBasepoint",
    "DelayedPubkey",
    "FundingPubkey",
    "HtlcBasepoint",
    "HtlcPubkey",
    "PaymentBasepoint",
    "PaymentPubkey",
    "PerCommitmentPoint",
    "Point",
    "PrivateKey",
    "RevocationBasepoint",
    "RevocationPubkey",
    "compact_signature",
    "der_signature",
    "derive_delayed_pubkey",
    "derive_htlc_pubkey",
    "derive_payment_pubkey",
    "derive_privkey",
    "derive_revocation_privkey",
    "derive_revocation_pubkey",
    "per_commitment_point_from_secret",
    "static_payment_pubkey",
    "verify",
    "witness_signature",
]

SIGHASH_ALL = 0x01
SIGHASH_SINGLE_ANYONECANPAY = 0x83

_CTX: Any = GLOBAL_CONTEXT.ctx
_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_COMPRESSED: int = lib.SECP256K1_EC_COMPRESSED


# ---------------------------------------------------------------------------------------------
# libsecp256k1 primitives (module-private; cached where the same input recurs)


@functools.lru_cache(maxsize=8192)
def _parse_pubkey(data: bytes) -> Any:
    """Parse a 33-byte compressed point; raises ValueError if it is not on the curve."""
    if len(data) != 33 or data[0] not in (2, 3):
        raise ValueError("a point must be 33 bytes, compressed (02/03 prefix)")
    out = ffi.new("secp256k1_pubkey *")
    if not lib.secp256k1_ec_pubkey_parse(_CTX, out, data, 33):
        raise ValueError("not a valid secp256k1 point")
    return out


def _serialize(cpoint: Any) -> bytes:
    buf = ffi.new("unsigned char[33]")
    size = ffi.new("size_t *", 33)
    lib.secp256k1_ec_pubkey_serialize(_CTX, buf, size, cpoint, _COMPRESSED)
    return bytes(ffi.buffer(buf, 33))


@functools.lru_cache(maxsize=8192)
def _pubkey_of(secret: bytes) -> bytes:
    out = ffi.new("secp256k1_pubkey *")
    if not lib.secp256k1_ec_pubkey_create(_CTX, out, secret):
        raise ValueError("invalid private key")
    return _serialize(out)


def _copy_point(data: bytes) -> Any:
    out = ffi.new("secp256k1_pubkey *")
    ffi.memmove(out, _parse_pubkey(data), ffi.sizeof("secp256k1_pubkey"))
    return out


def _tweak_add_point(data: bytes, tweak: bytes) -> bytes:
    p = _copy_point(data)
    if not lib.secp256k1_ec_pubkey_tweak_add(_CTX, p, tweak):
        raise ValueError("point tweak failed")
    return _serialize(p)


def _mul_point(data: bytes, scalar: bytes) -> Any:
    p = _copy_point(data)
    if not lib.secp256k1_ec_pubkey_tweak_mul(_CTX, p, scalar):
        raise ValueError("point multiplication failed")
    return p


def _scalar_valid(secret: bytes) -> bool:
    return len(secret) == 32 and bool(lib.secp256k1_ec_seckey_verify(_CTX, secret))


def _sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


# ---------------------------------------------------------------------------------------------
# Typed points


_P = TypeVar("_P", bound="Point")


@dataclass(frozen=True, slots=True)
class Point:
    """A 33-byte compressed secp256k1 point; subclasses name what the point is for.

    Single positional field (a newtype, like LDK's tuple structs): ``HtlcBasepoint(b"...")``.
    Points of different kinds never compare equal, even with the same bytes.
    """

    data: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.data, bytes):
            kind = type(self).__name__
            raise TypeError(f"{kind}: expected bytes, got {type(self.data).__name__}")
        _parse_pubkey(self.data)

    @classmethod
    def _trusted(cls: type[_P], data: bytes) -> _P:
        """Wrap bytes known to be a valid point (output of our own curve arithmetic)."""
        obj = object.__new__(cls)
        object.__setattr__(obj, "data", data)
        return obj

    @classmethod
    def from_hex(cls: type[_P], hex_str: str) -> _P:
        """Parse from hex."""
        return cls(bytes.fromhex(hex_str))

    def hex(self) -> str:
        """The 33 bytes as hex."""
        return self.data.hex()

    def __bytes__(self) -> bytes:
        return self.data

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.data.hex()})"


class FundingPubkey(Point):
    """``funding_pubkey``: one of the two keys of the 2-of-2 funding output; keys the anchors."""

    __slots__ = ()


class RevocationBasepoint(Point):
    """``revocation_basepoint``: lets its owner punish the *peer's* revoked commitments."""

    __slots__ = ()


class PaymentBasepoint(Point):
    """``payment_basepoint``: with static_remotekey, the key the peer's to_remote pays to."""

    __slots__ = ()


class DelayedPaymentBasepoint(Point):
    """``delayed_payment_basepoint``: tweaked into the owner's ``delayedpubkey``."""

    __slots__ = ()


class HtlcBasepoint(Point):
    """``htlc_basepoint``: tweaked into the owner's ``htlcpubkey``."""

    __slots__ = ()


class PerCommitmentPoint(Point):
    """``per_commitment_point``: the broadcaster's point for one commitment number."""

    __slots__ = ()


class RevocationPubkey(Point):
    """``revocationpubkey`` of one commitment (BOLT 3 "revocationpubkey Derivation")."""

    __slots__ = ()


class DelayedPubkey(Point):
    """``local_delayedpubkey`` of one commitment: the broadcaster's delayed key."""

    __slots__ = ()


class HtlcPubkey(Point):
    """``local_htlcpubkey`` / ``remote_htlcpubkey`` of one commitment."""

    __slots__ = ()


class PaymentPubkey(Point):
    """``remotepubkey`` (to_remote key): with static_remotekey the peer's payment_basepoint."""

    __slots__ = ()


# ---------------------------------------------------------------------------------------------
# Private keys and signatures


@dataclass(frozen=True, slots=True)
class PrivateKey:
    """A secp256k1 secret scalar (32 bytes); repr never shows it."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.secret, bytes) or not _scalar_valid(self.secret):
            raise ValueError("PrivateKey: secret must be 32 bytes, 0 < secret < n")

    @classmethod
    def _trusted(cls, secret: bytes) -> PrivateKey:
        obj = object.__new__(cls)
        object.__setattr__(obj, "secret", secret)
        return obj

    @classmethod
    def from_int(cls, value: int) -> PrivateKey:
        """From an integer in [1, n-1]."""
        if not 0 < value < _N:
            raise ValueError("PrivateKey: scalar out of range")
        return cls._trusted(value.to_bytes(32, "big"))

    def to_int(self) -> int:
        """The scalar as an integer."""
        return int.from_bytes(self.secret, "big")

    @property
    def pubkey(self) -> bytes:
        """The 33-byte compressed public key (wrap it in the right Point subclass)."""
        return _pubkey_of(self.secret)

    def sign(self, sighash: bytes) -> bytes:
        """Sign a 32-byte digest; 64-byte compact ``r || s``, low S, RFC 6979 nonce."""
        if len(sighash) != 32:
            raise ValueError("sign: digest must be 32 bytes")
        sig = ffi.new("secp256k1_ecdsa_signature *")
        if not lib.secp256k1_ecdsa_sign(_CTX, sig, sighash, self.secret, ffi.NULL, ffi.NULL):
            raise ValueError("sign: libsecp256k1 refused the key")
        out = ffi.new("unsigned char[64]")
        lib.secp256k1_ecdsa_signature_serialize_compact(_CTX, out, sig)
        return bytes(ffi.buffer(out, 64))


def _parse_compact(signature: bytes) -> Any:
    if len(signature) != 64:
        raise ValueError("signature must be 64 bytes (compact)")
    sig = ffi.new("secp256k1_ecdsa_signature *")
    if not lib.secp256k1_ecdsa_signature_parse_compact(_CTX, sig, signature):
        raise ValueError("signature does not parse (r or s out of range)")
    return sig


def verify(pubkey: Point | bytes, sighash: bytes, signature: bytes) -> bool:
    """Check a 64-byte compact signature over a 32-byte digest; high-S signatures fail.

    Returns False (never raises) for any signature that does not verify, including malformed
    ones, so callers raise the error their context calls for (e.g. InvalidSignature).
    """
    if len(sighash) != 32 or len(signature) != 64:
        return False
    data = pubkey.data if isinstance(pubkey, Point) else pubkey
    try:
        cpoint = _parse_pubkey(data)
        sig = _parse_compact(signature)
    except ValueError:
        return False
    return bool(lib.secp256k1_ecdsa_verify(_CTX, sig, sighash, cpoint))


def der_signature(signature: bytes) -> bytes:
    """DER encoding (no sighash byte) of a 64-byte compact signature."""
    sig = _parse_compact(signature)
    buf = ffi.new("unsigned char[72]")
    size = ffi.new("size_t *", 72)
    lib.secp256k1_ecdsa_signature_serialize_der(_CTX, buf, size, sig)
    return bytes(ffi.buffer(buf, size[0]))


def compact_signature(der: bytes) -> bytes:
    """64-byte compact form of a DER signature (no sighash byte); ValueError if malformed."""
    sig = ffi.new("secp256k1_ecdsa_signature *")
    if not lib.secp256k1_ecdsa_signature_parse_der(_CTX, sig, der, len(der)):
        raise ValueError("DER signature does not parse")
    out = ffi.new("unsigned char[64]")
    lib.secp256k1_ecdsa_signature_serialize_compact(_CTX, out, sig)
    return bytes(ffi.buffer(out, 64))


def witness_signature(signature: bytes, sighash_type: int = SIGHASH_ALL) -> bytes:
    """A witness stack element: DER signature followed by the sighash type byte."""
    return der_signature(signature) + bytes((sighash_type,))


# ---------------------------------------------------------------------------------------------
# BOLT 3 derivations


@functools.lru_cache(maxsize=8192)
def _tweak_pubkey(basepoint: bytes, per_commitment_point: bytes) -> bytes:
    return _tweak_add_point(basepoint, _sha256(per_commitment_point + basepoint))


def derive_htlc_pubkey(basepoint: HtlcBasepoint,
                       per_commitment_point: PerCommitmentPoint) -> HtlcPubkey:
    """``htlcpubkey = htlc_basepoint + SHA256(per_commitment_point || htlc_basepoint)*G``."""
    return HtlcPubkey._trusted(_tweak_pubkey(basepoint.data, per_commitment_point.data))


def derive_delayed_pubkey(basepoint: DelayedPaymentBasepoint,
                          per_commitment_point: PerCommitmentPoint) -> DelayedPubkey:
    """``delayedpubkey`` from ``delayed_payment_basepoint`` (same tweak as htlcpubkey)."""
    return DelayedPubkey._trusted(_tweak_pubkey(basepoint.data, per_commitment_point.data))


def derive_payment_pubkey(basepoint: PaymentBasepoint,
                          per_commitment_point: PerCommitmentPoint) -> PaymentPubkey:
    """Tweaked ``localpubkey``/``remotepubkey`` (channels *without* static_remotekey only)."""
    return PaymentPubkey._trusted(_tweak_pubkey(basepoint.data, per_commitment_point.data))


def static_payment_pubkey(basepoint: PaymentBasepoint) -> PaymentPubkey:
    """``remotepubkey`` under ``option_static_remotekey``: the payment_basepoint, untweaked."""
    return PaymentPubkey._trusted(basepoint.data)


def derive_privkey(basepoint_secret: PrivateKey,
                   per_commitment_point: PerCommitmentPoint) -> PrivateKey:
    """``privkey = basepoint_secret + SHA256(per_commitment_point || basepoint) mod n``.

    Gives the private key of :func:`derive_htlc_pubkey`, :func:`derive_delayed_pubkey` and
    :func:`derive_payment_pubkey` for the matching basepoint secret.
    """
    tweak = _sha256(per_commitment_point.data + basepoint_secret.pubkey)
    value = (basepoint_secret.to_int() + int.from_bytes(tweak, "big")) % _N
    return PrivateKey.from_int(value)


@functools.lru_cache(maxsize=8192)
def _revocation_pubkey(revocation_basepoint: bytes, per_commitment_point: bytes) -> bytes:
    rb, pcp = revocation_basepoint, per_commitment_point
    a = _mul_point(rb, _sha256(rb + pcp))
    b = _mul_point(pcp, _sha256(pcp + rb))
    out = ffi.new("secp256k1_pubkey *")
    if not lib.secp256k1_ec_pubkey_combine(_CTX, out, [a, b], 2):
        raise ValueError("revocation pubkey is the point at infinity")
    return _serialize(out)


def derive_revocation_pubkey(revocation_basepoint: RevocationBasepoint,
                             per_commitment_point: PerCommitmentPoint) -> RevocationPubkey:
    """``revocationpubkey = R*SHA256(R || P) + P*SHA256(P || R)`` (BOLT 3).

    R: the punishing party's revocation_basepoint; P: the broadcaster's per_commitment_point.
    """
    return RevocationPubkey._trusted(
        _revocation_pubkey(revocation_basepoint.data, per_commitment_point.data))


def derive_revocation_privkey(revocation_basepoint_secret: PrivateKey,
                              per_commitment_secret: bytes) -> PrivateKey:
    """``revocationprivkey = r*SHA256(R || P) + p*SHA256(P || R) mod n`` (BOLT 3).

    r: our revocation basepoint secret; p: the per-commitment secret the peer revealed.
    """
    p = PrivateKey(per_commitment_secret)
    rb, pcp = revocation_basepoint_secret.pubkey, p.pubkey
    r_tweak = int.from_bytes(_sha256(rb + pcp), "big")
    p_tweak = int.from_bytes(_sha256(pcp + rb), "big")
    value = (revocation_basepoint_secret.to_int() * r_tweak + p.to_int() * p_tweak) % _N
    return PrivateKey.from_int(value)


# ---------------------------------------------------------------------------------------------
# A node's keys for one channel


@dataclass(frozen=True, slots=True, kw_only=True)
class Basepoints:
    """The public keys a party announces in ``open_channel`` / ``accept_channel``."""

    funding_pubkey: FundingPubkey
    revocation_basepoint: RevocationBasepoint
    payment_basepoint: PaymentBasepoint
    delayed_payment_basepoint: DelayedPaymentBasepoint
    htlc_basepoint: HtlcBasepoint

    def __post_init__(self) -> None:
        expected = (
            ("funding_pubkey", FundingPubkey),
            ("revocation_basepoint", RevocationBasepoint),
            ("payment_basepoint", PaymentBasepoint),
            ("delayed_payment_basepoint", DelayedPaymentBasepoint),
            ("htlc_basepoint", HtlcBasepoint),
        )
        for name, kind in expected:
            if type(getattr(self, name)) is not kind:
                raise TypeError(f"Basepoints.{name} must be a {kind.__name__}")


@functools.lru_cache(maxsize=4096)
def _per_commitment_secret(seed: bytes, commitment_number: int) -> bytes:
    # each secret is asked for 3-4 times per payment (points for both commitments, then the
    # revocation); the shachain walk is 48 SHA256 steps in Python, so derive it once
    return generate_from_seed(seed, index_for_commitment(commitment_number))


def _labelled_secret(seed: bytes, label: bytes) -> bytes:
    counter = 0
    while True:
        candidate = _sha256(seed + label + counter.to_bytes(4, "big"))
        if _scalar_valid(candidate):
            return candidate
        counter += 1  # probability ~2**-128; keeps the derivation total


@dataclass(frozen=True, slots=True, kw_only=True)
class ChannelKeys:
    """One party's secrets for one channel: funding key, four basepoint secrets, shachain seed.

    ``per_commitment_secret(n)`` / ``per_commitment_point(n)`` take the commitment number
    ``n`` (0 for the first commitment, counting up); the shachain index is ``2**48 - 1 - n``.
    """

    funding_key: PrivateKey
    revocation_basepoint_secret: PrivateKey
    payment_basepoint_secret: PrivateKey
    delayed_payment_basepoint_secret: PrivateKey
    htlc_basepoint_secret: PrivateKey
    per_commitment_seed: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.per_commitment_seed, bytes) or len(self.per_commitment_seed) != 32:
            raise ValueError("ChannelKeys: per_commitment_seed must be 32 bytes")

    @classmethod
    def from_seed(cls, seed: bytes) -> ChannelKeys:
        """Derive every secret deterministically from one seed (at least 32 bytes)."""
        if len(seed) < 32:
            raise ValueError("ChannelKeys.from_seed: seed must be at least 32 bytes")
        return cls(
            funding_key=PrivateKey._trusted(_labelled_secret(seed, b"funding")),
            revocation_basepoint_secret=PrivateKey._trusted(_labelled_secret(seed, b"revocation")),
            payment_basepoint_secret=PrivateKey._trusted(_labelled_secret(seed, b"payment")),
            delayed_payment_basepoint_secret=PrivateKey._trusted(
                _labelled_secret(seed, b"delayed_payment")),
            htlc_basepoint_secret=PrivateKey._trusted(_labelled_secret(seed, b"htlc")),
            per_commitment_seed=_sha256(seed + b"per_commitment_seed"),
        )

    def basepoints(self) -> Basepoints:
        """The public side, as sent to the peer."""
        return Basepoints(
            funding_pubkey=FundingPubkey._trusted(self.funding_key.pubkey),
            revocation_basepoint=RevocationBasepoint._trusted(
                self.revocation_basepoint_secret.pubkey),
            payment_basepoint=PaymentBasepoint._trusted(self.payment_basepoint_secret.pubkey),
            delayed_payment_basepoint=DelayedPaymentBasepoint._trusted(
                self.delayed_payment_basepoint_secret.pubkey),
            htlc_basepoint=HtlcBasepoint._trusted(self.htlc_basepoint_secret.pubkey),
        )

    def per_commitment_secret(self, commitment_number: int) -> bytes:
        """Our secret for ``commitment_number`` (revealed in ``revoke_and_ack`` once revoked)."""
        return _per_commitment_secret(self.per_commitment_seed, commitment_number)

    def per_commitment_point(self, commitment_number: int) -> PerCommitmentPoint:
        """Our ``per_commitment_point`` for ``commitment_number``."""
        secret = self.per_commitment_secret(commitment_number)
        return PerCommitmentPoint._trusted(_pubkey_of(secret))

    def htlc_privkey(self, per_commitment_point: PerCommitmentPoint) -> PrivateKey:
        """Our htlc key on the commitment built with ``per_commitment_point`` (ours or theirs)."""
        return derive_privkey(self.htlc_basepoint_secret, per_commitment_point)

    def delayed_payment_privkey(self, per_commitment_point: PerCommitmentPoint) -> PrivateKey:
        """Our delayed key on our own commitment with ``per_commitment_point``."""
        return derive_privkey(self.delayed_payment_basepoint_secret, per_commitment_point)

    def payment_privkey(self) -> PrivateKey:
        """Key of our to_remote output on the peer's commitments (static_remotekey)."""
        return self.payment_basepoint_secret

    def revocation_privkey(self, per_commitment_secret: bytes) -> PrivateKey:
        """Key to punish the peer's revoked commitment whose secret it revealed."""
        return derive_revocation_privkey(self.revocation_basepoint_secret, per_commitment_secret)


def per_commitment_point_from_secret(per_commitment_secret: bytes) -> PerCommitmentPoint:
    """``per_commitment_point = per_commitment_secret * G`` (check a revealed secret with it)."""
    return PerCommitmentPoint._trusted(PrivateKey(per_commitment_secret).pubkey)

