"""BOLT 4 Sphinx onion packets: build one for a route, and peel one layer at a hop.

Pure: the sender's ``session_key`` and the hop's private key are handed in; nothing here
draws randomness. The construction is the general one, for any route whose payloads fit the
1300 bytes (checked against the spec's five-hop vector); ``channel.route`` builds the
payloads of a whole route, ``channel.failure_onion`` the failures that come back.

Packet (1366 bytes) = ``version (0) ‖ public_key (33) ‖ hop_payloads (1300) ‖ hmac (32)``.
Each hop's slice of ``hop_payloads`` is ``bigsize(len) ‖ payload (TLV) ‖ next hmac (32)``;
an all-zero next hmac marks the final hop.

Keys per hop i (``ss_i = SHA256(e_i · P_i)``, BOLT 8's ECDH):
``rho = HMAC("rho", ss)`` (ChaCha20 stream), ``mu = HMAC("mu", ss)`` (packet HMAC),
``pad = HMAC("pad", session_key)`` (initial filler bytes); next ephemeral key
``e_{i+1} = e_i · SHA256(E_i ‖ ss_i)``.

``peel_onion`` raises ``InvalidOnion`` with the BOLT 4 ``failure_code``: BADONION codes
(version, key, HMAC) call for ``update_fail_malformed_htlc``; ``invalid_onion_payload``
(a payload that authenticates but does not parse; ``InvalidHopPayload``) for
``update_fail_htlc``. ``peel_payment_onion`` returns the same outcomes as values: forward
(``PeeledForward``), final (``PeeledFinal``) or the typed failure (``OnionRejected``).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import coincurve

from channel.aead import chacha20_xor as _chacha20_stream
from channel.codec import (
    SHORT_CHANNEL_ID,
    TU32,
    TU64,
    RawBytes,
    TlvField,
    decode_bigsize,
    decode_tlv_stream,
    decode_truncated,
    encode_bigsize,
    encode_tlv_stream,
    encode_truncated,
    is_valid_point,
)
from channel.errors import InvalidOnion, MalformedMessage
from channel.onion_failures import (
    InvalidOnionHmac,
    InvalidOnionKey,
    InvalidOnionPayload,
    InvalidOnionVersion,
    OnionFailure,
)

__all__ = [
    "BADONION",
    "HOP_PAYLOADS_SIZE",
    "INVALID_ONION_HMAC",
    "INVALID_ONION_KEY",
    "INVALID_ONION_PAYLOAD",
    "INVALID_ONION_VERSION",
    "MAX_ROUTE_HOPS",
    "ONION_PACKET_SIZE",
    "PERM",
    "HopPayload",
    "InvalidHopPayload",
    "MissingTlvRecord",
    "OnionHop",
    "OnionRejected",
    "PaymentData",
    "PeeledFinal",
    "PeeledForward",
    "PeeledOnion",
    "build_onion",
    "build_onion_with_secrets",
    "build_single_hop_onion",
    "chacha20_xor",
    "generate_key",
    "onion_shared_secrets",
    "peel_onion",
    "peel_payment_onion",
    "sha256_of_onion",
]

ONION_VERSION: Final = 0
HOP_PAYLOADS_SIZE: Final = 1300
HMAC_SIZE: Final = 32
ONION_PACKET_SIZE: Final = 1 + 33 + HOP_PAYLOADS_SIZE + HMAC_SIZE
#: The longest route a payer builds: BOLT 4's historical fixed 20 frames of 65 bytes; with TLV
#: payloads 20 plain hops still fit the 1300 bytes (the 1300 is the real limit).
MAX_ROUTE_HOPS: Final = 20

# BOLT 4 "Returning Errors": failure-code flags and the codes peeling can produce.
BADONION: Final = 0x8000
PERM: Final = 0x4000
INVALID_ONION_VERSION: Final = BADONION | PERM | 4
INVALID_ONION_HMAC: Final = BADONION | PERM | 5
INVALID_ONION_KEY: Final = BADONION | PERM | 6
INVALID_ONION_PAYLOAD: Final = PERM | 22

_ZERO_HMAC: Final = bytes(HMAC_SIZE)
_CHACHA_ZERO_NONCE: Final = bytes(16)  # 32-bit block counter 0 ‖ 96-bit nonce 0


def generate_key(key_type: bytes, secret: bytes) -> bytes:
    """BOLT 4 "Key Generation": ``HMAC-SHA256(key=key_type, msg=secret)`` (rho, mu, um...)."""
    return hmac.digest(key_type, secret, "sha256")


def chacha20_xor(key: bytes, data: bytes) -> bytes:
    """``data`` XOR the ChaCha20 stream of ``key`` (zero nonce, counter 0)."""
    return _chacha20_stream(key, _CHACHA_ZERO_NONCE, data)


def _xor(left: bytes, right: bytes) -> bytes:
    size = len(left)
    return (int.from_bytes(left, "big") ^ int.from_bytes(right[:size], "big")).to_bytes(
        size, "big"
    )


# --- hop payloads (BOLT 4 "payload format") ----------------------------------------------


class MissingTlvRecord(MalformedMessage):
    """A payload lacks a record it must carry; ``tlv_type`` goes into ``invalid_onion_payload``."""

    def __init__(self, message: str, *, tlv_type: int) -> None:
        super().__init__(message)
        self.tlv_type = tlv_type


class InvalidHopPayload(InvalidOnion):
    """Our layer authenticated but its payload is unusable (``invalid_onion_payload``).

    Unlike the BADONION cases the node holds the layer's ``shared_secret``, so it answers with
    an encrypted ``update_fail_htlc``. ``tlv_type`` is the offending record (0 when the stream
    itself does not parse) and ``offset`` where the payload starts in the decrypted bytes.
    """

    def __init__(self, message: str, *, shared_secret: bytes, tlv_type: int, offset: int) -> None:
        super().__init__(message, failure_code=INVALID_ONION_PAYLOAD)
        self.shared_secret = shared_secret
        self.tlv_type = tlv_type
        self.offset = offset


@dataclass(frozen=True, slots=True, kw_only=True)
class PaymentData:
    """TLV 8 ``payment_data``: the invoice's ``payment_secret`` and the whole payment's total."""

    payment_secret: bytes
    total_msat: int

    def __post_init__(self) -> None:
        if type(self.payment_secret) is not bytes or len(self.payment_secret) != 32:
            raise MalformedMessage("payment_secret must be 32 bytes")
        TU64.check("total_msat", self.total_msat)

    def encode(self) -> bytes:
        return self.payment_secret + encode_truncated(self.total_msat)

    @classmethod
    def decode(cls, value: bytes) -> PaymentData:
        if not 32 <= len(value) <= 40:
            raise MalformedMessage(f"payment_data of {len(value)} bytes")
        return cls(payment_secret=value[:32], total_msat=decode_truncated(value[32:]))


def _check_payment_data(name: str, value: Any) -> None:
    if not isinstance(value, PaymentData):
        raise MalformedMessage(f"{name} must be PaymentData: {value!r}")


_PAYLOAD_TLVS: Final = {
    2: TlvField.of("amt_to_forward", TU64),
    4: TlvField.of("outgoing_cltv_value", TU32),
    6: TlvField.of("short_channel_id", SHORT_CHANNEL_ID),
    8: TlvField(
        name="payment_data",
        encode=PaymentData.encode,
        decode=PaymentData.decode,
        check=_check_payment_data,
    ),
    16: TlvField.of("payment_metadata", RawBytes()),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class HopPayload:
    """One hop's TLV payload. ``amt_to_forward`` is in msat, ``outgoing_cltv_value`` a height.

    A forwarding hop carries ``short_channel_id``; the final hop carries ``payment_data``.
    Route blinding (TLVs 10, 12, 18) is not supported: those even types fail the payload.
    """

    amt_to_forward: int
    outgoing_cltv_value: int
    short_channel_id: bytes | None = None
    payment_data: PaymentData | None = None
    payment_metadata: bytes | None = None

    def __post_init__(self) -> None:
        for field in _PAYLOAD_TLVS.values():
            value = getattr(self, field.name)
            if value is not None:
                field.check(field.name, value)

    def encode(self) -> bytes:
        """The TLV stream (without the bigsize length that precedes it in the packet)."""
        records = []
        for tlv_type, field in _PAYLOAD_TLVS.items():
            value = getattr(self, field.name)
            if value is not None:
                records.append((tlv_type, field.encode(value)))
        return encode_tlv_stream(records)

    @classmethod
    def decode(cls, data: bytes) -> HopPayload:
        """Parse a TLV payload; a missing amount or CLTV raises ``MalformedMessage``."""
        values = decode_tlv_stream(data, _PAYLOAD_TLVS)
        for tlv_type, required in ((2, "amt_to_forward"), (4, "outgoing_cltv_value")):
            if required not in values:
                raise MissingTlvRecord(f"hop payload lacks {required}", tlv_type=tlv_type)
        return cls(**values)


@dataclass(frozen=True, slots=True, kw_only=True)
class OnionHop:
    """A hop of a route to build: its node id and its raw TLV payload (no length prefix)."""

    node_id: bytes
    payload: bytes

    def __post_init__(self) -> None:
        if type(self.node_id) is not bytes or not is_valid_point(self.node_id):
            raise MalformedMessage("node_id must be a valid compressed point")
        if type(self.payload) is not bytes or not self.payload:
            raise MalformedMessage("hop payload must be non-empty bytes")

    @property
    def frame_size(self) -> int:
        """Bytes this hop takes in ``hop_payloads``: length prefix, payload, next HMAC."""
        return len(encode_bigsize(len(self.payload))) + len(self.payload) + HMAC_SIZE


@dataclass(frozen=True, slots=True, kw_only=True)
class PeeledOnion:
    """What a hop learns from its layer.

    ``next_onion`` is the 1366-byte packet for the next hop, ``None`` at the final hop.
    ``shared_secret`` is kept to encrypt a failure back to the sender (BOLT 4 errors).
    """

    payload: HopPayload
    raw_payload: bytes
    shared_secret: bytes
    next_onion: bytes | None

    @property
    def is_final(self) -> bool:
        return self.next_onion is None


# --- building ----------------------------------------------------------------------------


def _route_secrets(session_key: bytes, node_ids: Sequence[bytes]) -> list[tuple[bytes, bytes]]:
    """``(ephemeral public key, shared secret)`` per hop, blinding the key after each one."""
    # Only public-key operations on the ephemeral secret: coincurve.PrivateKey would also derive
    # an x-only key per hop, a third of this function's cost on a single-hop route.
    ephemeral = session_key
    secrets = []
    for index, node_id in enumerate(node_ids):
        try:
            public = coincurve.PublicKey.from_secret(ephemeral).format(compressed=True)
        except ValueError as exc:
            raise MalformedMessage("session_key is not a valid secp256k1 secret") from exc
        # libsecp256k1's ECDH hash: SHA256 of the compressed shared point
        shared_point = coincurve.PublicKey(node_id).multiply(ephemeral)
        shared_secret = hashlib.sha256(shared_point.format(compressed=True)).digest()
        secrets.append((public, shared_secret))
        if index + 1 < len(node_ids):
            blinding = hashlib.sha256(public + shared_secret).digest()
            ephemeral = coincurve.PrivateKey(ephemeral).multiply(blinding).secret
    return secrets


def _filler(hops: Sequence[OnionHop], secrets: Sequence[tuple[bytes, bytes]]) -> bytes:
    """The tail the final hop will see after every earlier hop shifted in its stream bytes.

    Each hop i turns the tail ``T`` into ``(T ‖ 0^{frame_i}) XOR rho_i[1300-|T| : 1300+frame_i]``.
    """
    filler = b""
    for hop, (_, shared_secret) in zip(hops[:-1], secrets[:-1], strict=True):
        size = hop.frame_size
        stream = chacha20_xor(generate_key(b"rho", shared_secret), bytes(2 * HOP_PAYLOADS_SIZE))
        start = HOP_PAYLOADS_SIZE - len(filler)
        filler = _xor(filler + bytes(size), stream[start : HOP_PAYLOADS_SIZE + size])
    return filler


def onion_shared_secrets(*, session_key: bytes, node_ids: Sequence[bytes]) -> list[bytes]:
    """Each hop's shared secret, as the sender derives them (BOLT 4 "Shared Secret").

    The origin keeps these for the HTLC's life: they decrypt a returned failure onion.
    """
    for node_id in node_ids:
        if type(node_id) is not bytes or not is_valid_point(node_id):
            raise MalformedMessage("node_id must be a valid compressed point")
    return [secret for _, secret in _route_secrets(session_key, node_ids)]


def build_onion(*, session_key: bytes, hops: Sequence[OnionHop], associated_data: bytes) -> bytes:
    """BOLT 4 "Packet Construction": the 1366-byte packet for ``hops`` (first hop first).

    ``associated_data`` is the HTLC's ``payment_hash``: the packet only verifies with it.
    """
    packet, _ = build_onion_with_secrets(
        session_key=session_key, hops=hops, associated_data=associated_data
    )
    return packet


def build_onion_with_secrets(
    *, session_key: bytes, hops: Sequence[OnionHop], associated_data: bytes
) -> tuple[bytes, list[bytes]]:
    """``build_onion`` plus each hop's shared secret (the origin keeps them to read failures)."""
    if not hops:
        raise MalformedMessage("a route needs at least one hop")
    if sum(hop.frame_size for hop in hops) > HOP_PAYLOADS_SIZE:
        raise MalformedMessage(f"hop payloads exceed {HOP_PAYLOADS_SIZE} bytes")
    secrets = _route_secrets(session_key, [hop.node_id for hop in hops])
    filler = _filler(hops, secrets)

    mix_header = chacha20_xor(generate_key(b"pad", session_key), bytes(HOP_PAYLOADS_SIZE))
    next_hmac = _ZERO_HMAC
    for index in range(len(hops) - 1, -1, -1):
        hop = hops[index]
        _, shared_secret = secrets[index]
        frame = encode_bigsize(len(hop.payload)) + hop.payload + next_hmac
        shifted = frame + mix_header[: HOP_PAYLOADS_SIZE - len(frame)]
        mix_header = chacha20_xor(generate_key(b"rho", shared_secret), shifted)
        if index == len(hops) - 1 and filler:
            mix_header = mix_header[: HOP_PAYLOADS_SIZE - len(filler)] + filler
        next_hmac = hmac.digest(
            generate_key(b"mu", shared_secret), mix_header + associated_data, "sha256"
        )
    packet = bytes((ONION_VERSION,)) + secrets[0][0] + mix_header + next_hmac
    return packet, [shared_secret for _, shared_secret in secrets]


def build_single_hop_onion(
    *,
    session_key: bytes,
    node_id: bytes,
    amt_to_forward: int,
    outgoing_cltv_value: int,
    payment_secret: bytes,
    total_msat: int,
    payment_hash: bytes,
) -> bytes:
    """The onion for a direct payment to the peer ``node_id`` (the final and only hop)."""
    payload = HopPayload(
        amt_to_forward=amt_to_forward,
        outgoing_cltv_value=outgoing_cltv_value,
        payment_data=PaymentData(payment_secret=payment_secret, total_msat=total_msat),
    )
    return build_onion(
        session_key=session_key,
        hops=[OnionHop(node_id=node_id, payload=payload.encode())],
        associated_data=payment_hash,
    )


# --- peeling -----------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _node_private_key(node_key: bytes) -> coincurve.PrivateKey:
    # coincurve derives two public keys in the constructor; a node peels every incoming HTLC
    # with the same key, so build it once
    return coincurve.PrivateKey(node_key)


def peel_onion(*, onion: bytes, node_key: bytes, associated_data: bytes) -> PeeledOnion:
    """BOLT 4 "Accepting and Forwarding a Payment": verify and unwrap our layer.

    ``node_key`` is this node's 32-byte private key, ``associated_data`` the HTLC's
    ``payment_hash``. Raises ``InvalidOnion`` with the code to fail the HTLC with.
    """
    if len(onion) != ONION_PACKET_SIZE:
        raise InvalidOnion(f"onion of {len(onion)} bytes", failure_code=INVALID_ONION_VERSION)
    if onion[0] != ONION_VERSION:
        raise InvalidOnion(f"onion version {onion[0]}", failure_code=INVALID_ONION_VERSION)
    public_key = onion[1:34]
    hop_payloads = onion[34 : 34 + HOP_PAYLOADS_SIZE]
    packet_hmac = onion[34 + HOP_PAYLOADS_SIZE :]
    if not is_valid_point(public_key):
        raise InvalidOnion("onion ephemeral key is not a point", failure_code=INVALID_ONION_KEY)

    shared_secret = _node_private_key(node_key).ecdh(public_key)
    expected = hmac.digest(
        generate_key(b"mu", shared_secret), hop_payloads + associated_data, "sha256"
    )
    if not hmac.compare_digest(expected, packet_hmac):
        raise InvalidOnion("onion HMAC mismatch", failure_code=INVALID_ONION_HMAC)

    unwrapped = chacha20_xor(
        generate_key(b"rho", shared_secret), hop_payloads + bytes(HOP_PAYLOADS_SIZE)
    )
    start = 0
    try:
        length, start = decode_bigsize(unwrapped)
        if length == 0:
            raise MalformedMessage("legacy (realm 0) hop payloads are no longer supported")
        end = start + length
        if end + HMAC_SIZE > HOP_PAYLOADS_SIZE:
            raise MalformedMessage(f"hop payload of {length} bytes overruns the packet")
        raw_payload = unwrapped[start:end]
        payload = HopPayload.decode(raw_payload)
    except MalformedMessage as exc:
        tlv_type = exc.tlv_type if isinstance(exc, MissingTlvRecord) else 0
        raise InvalidHopPayload(f"hop payload: {exc}", shared_secret=shared_secret,
                                tlv_type=tlv_type, offset=start) from exc

    next_hmac = unwrapped[end : end + HMAC_SIZE]
    if next_hmac == _ZERO_HMAC:
        return PeeledOnion(
            payload=payload, raw_payload=raw_payload, shared_secret=shared_secret, next_onion=None
        )
    if payload.short_channel_id is None:
        raise InvalidHopPayload("forwarding hop payload lacks short_channel_id",
                                shared_secret=shared_secret, tlv_type=6, offset=start)
    blinding = hashlib.sha256(public_key + shared_secret).digest()
    next_public_key = coincurve.PublicKey(public_key).multiply(blinding).format(compressed=True)
    next_payloads = unwrapped[end + HMAC_SIZE : end + HMAC_SIZE + HOP_PAYLOADS_SIZE]
    next_onion = bytes((ONION_VERSION,)) + next_public_key + next_payloads + next_hmac
    return PeeledOnion(
        payload=payload, raw_payload=raw_payload, shared_secret=shared_secret,
        next_onion=next_onion,
    )


# --- the typed peel: what a node does with an incoming HTLC's onion ----------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class PeeledForward:
    """Forward: send ``amt_to_forward`` msat expiring at ``outgoing_cltv_value`` over
    ``short_channel_id``, carrying ``next_onion``. ``shared_secret`` wraps failures back."""

    short_channel_id: bytes
    amt_to_forward: int
    outgoing_cltv_value: int
    next_onion: bytes
    shared_secret: bytes
    payload: HopPayload


@dataclass(frozen=True, slots=True, kw_only=True)
class PeeledFinal:
    """We are the payee: the payload's amount, CLTV, ``payment_data`` and metadata."""

    amt_to_forward: int
    outgoing_cltv_value: int
    payment_data: PaymentData | None
    payment_metadata: bytes | None
    shared_secret: bytes
    payload: HopPayload


@dataclass(frozen=True, slots=True, kw_only=True)
class OnionRejected:
    """The onion cannot be used; ``failure`` is the BOLT 4 answer.

    ``shared_secret`` is ``None`` for the BADONION failures (version, key, HMAC): the node
    could not read the layer, so it sends ``update_fail_malformed_htlc`` with
    ``failure.sha256_of_onion`` and ``failure.failure_code``. Otherwise (an unusable payload)
    it encrypts ``failure`` with ``shared_secret`` into an ``update_fail_htlc``.
    """

    failure: OnionFailure
    shared_secret: bytes | None
    reason: str

    @property
    def is_malformed(self) -> bool:
        return self.shared_secret is None


def sha256_of_onion(onion: bytes) -> bytes:
    """``sha256_of_onion`` of ``update_fail_malformed_htlc``: SHA256 of the received packet."""
    return hashlib.sha256(onion).digest()


def peel_payment_onion(
    *, onion: bytes, node_key: bytes, payment_hash: bytes
) -> PeeledForward | PeeledFinal | OnionRejected:
    """BOLT 4 "Onion Decryption" for an ``update_add_htlc``: forward, final, or the failure.

    Never raises for a bad onion: a malformed packet maps to ``invalid_onion_version``,
    ``invalid_onion_key`` or ``invalid_onion_hmac`` (with the packet's SHA256), an unusable
    payload to ``invalid_onion_payload``.
    """
    try:
        peeled = peel_onion(onion=onion, node_key=node_key, associated_data=payment_hash)
    except InvalidHopPayload as exc:
        return OnionRejected(
            failure=InvalidOnionPayload(tlv_type=exc.tlv_type, offset=exc.offset),
            shared_secret=exc.shared_secret, reason=str(exc),
        )
    except InvalidOnion as exc:
        digest = sha256_of_onion(onion)
        bad_onion: OnionFailure
        if exc.failure_code == INVALID_ONION_KEY:
            bad_onion = InvalidOnionKey(sha256_of_onion=digest)
        elif exc.failure_code == INVALID_ONION_HMAC:
            bad_onion = InvalidOnionHmac(sha256_of_onion=digest)
        else:
            bad_onion = InvalidOnionVersion(sha256_of_onion=digest)
        return OnionRejected(failure=bad_onion, shared_secret=None, reason=str(exc))
    payload = peeled.payload
    if peeled.next_onion is None:
        return PeeledFinal(
            amt_to_forward=payload.amt_to_forward,
            outgoing_cltv_value=payload.outgoing_cltv_value,
            payment_data=payload.payment_data, payment_metadata=payload.payment_metadata,
            shared_secret=peeled.shared_secret, payload=payload,
        )
    assert payload.short_channel_id is not None  # peel_onion refuses a forward without one
    return PeeledForward(
        short_channel_id=payload.short_channel_id, amt_to_forward=payload.amt_to_forward,
        outgoing_cltv_value=payload.outgoing_cltv_value, next_onion=peeled.next_onion,
        shared_secret=peeled.shared_secret, payload=payload,
    )
