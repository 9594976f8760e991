"""BOLT 8 encrypted transport: the Noise_XK handshake and the message cipher, without sockets.

Pure: bytes in, bytes out. The caller hands in every secret, including the ephemeral key,
so the spec's test vectors replay exactly; ``channel.transport`` does the I/O.

Protocol ``Noise_XK_secp256k1_ChaChaPoly_SHA256``, prologue ``lightning``:

    initiator                                    responder (static key known to initiator)
    InitiatorHandshake.write_act_one()  --50-->  ResponderHandshake.read_act_one() -> act two
    InitiatorHandshake.read_act_two()   <--50--
        -> (act three, NoiseSession)    --66-->  ResponderHandshake.read_act_three()
                                                     -> NoiseSession (knows initiator's key)

Every failure — wrong length, version byte not 0, a point not on the curve, a bad MAC,
an act out of order — raises ``HandshakeFailed``; the reaction is to drop the connection
without sending anything.

After the handshake each message travels as ``AEAD(len:u16) ‖ AEAD(message)``: 18 + len + 16
bytes, built in one piece so the transport writes it with one call. A key is rotated after
1000 uses of its nonce (every 500 messages, as each message uses two nonces): ``ck', k' =
HKDF(ck, k)``, per direction.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import struct
from typing import Final

import coincurve

from channel.aead import chacha20_poly1305, invalid_tag
from channel.errors import HandshakeFailed, MalformedMessage

__all__ = [
    "ACT_ONE_SIZE",
    "ACT_THREE_SIZE",
    "ACT_TWO_SIZE",
    "KEY_ROTATION_INTERVAL",
    "LENGTH_HEADER_SIZE",
    "MAC_SIZE",
    "MAX_MESSAGE_SIZE",
    "CipherState",
    "InitiatorHandshake",
    "NoiseSession",
    "ResponderHandshake",
    "ecdh",
    "hkdf",
]

PROTOCOL_NAME: Final = b"Noise_XK_secp256k1_ChaChaPoly_SHA256"
PROLOGUE: Final = b"lightning"
ACT_ONE_SIZE: Final = 50
ACT_TWO_SIZE: Final = 50
ACT_THREE_SIZE: Final = 66
MAC_SIZE: Final = 16
LENGTH_HEADER_SIZE: Final = 2 + MAC_SIZE
MAX_MESSAGE_SIZE: Final = 65535
KEY_ROTATION_INTERVAL: Final = 1000

_HANDSHAKE_VERSION: Final = 0
_NONCE = struct.Struct("<4xQ")  # 32 zero bits, then the counter as little-endian u64
_LENGTH = struct.Struct(">H")
_INITIAL_HASH: Final = hashlib.sha256(PROTOCOL_NAME).digest()


def hkdf(salt: bytes, ikm: bytes) -> tuple[bytes, bytes]:
    """RFC 5869 HKDF-SHA256 with empty info and 64 bytes out, split in two 32-byte keys."""
    prk = hmac.digest(salt, ikm, "sha256")
    first = hmac.digest(prk, b"\x01", "sha256")
    second = hmac.digest(prk, first + b"\x02", "sha256")
    return first, second


def ecdh(private_key: coincurve.PrivateKey, public_key: bytes) -> bytes:
    """BOLT 8 ECDH: SHA256 of the compressed point ``k·P`` (coincurve's default hash)."""
    try:
        return private_key.ecdh(public_key)
    except ValueError as exc:
        raise HandshakeFailed(f"invalid public key: {exc}") from exc


def _private_key(secret: bytes, what: str) -> coincurve.PrivateKey:
    if type(secret) is not bytes or len(secret) != 32:
        raise HandshakeFailed(f"{what} must be 32 bytes")
    try:
        return coincurve.PrivateKey(secret)
    except ValueError as exc:
        raise HandshakeFailed(f"{what} is not a valid secp256k1 secret") from exc


def _check_point(data: bytes, what: str) -> None:
    if len(data) != 33 or data[0] not in (2, 3):
        raise HandshakeFailed(f"{what} is not a compressed point")
    try:
        coincurve.PublicKey(data)
    except ValueError as exc:
        raise HandshakeFailed(f"{what} is not on the curve") from exc


class CipherState:
    """One direction of the transport: key, chaining key, nonce, rotation every 1000 nonces."""

    __slots__ = ("_aead", "_chaining_key", "_key", "_nonce")

    def __init__(self, key: bytes, chaining_key: bytes) -> None:
        self._key = key
        self._chaining_key = chaining_key
        self._nonce = 0
        self._aead = chacha20_poly1305(key)

    @property
    def key(self) -> bytes:
        return self._key

    @property
    def chaining_key(self) -> bytes:
        return self._chaining_key

    @property
    def nonce(self) -> int:
        return self._nonce

    def _advance(self) -> None:
        self._nonce += 1
        if self._nonce == KEY_ROTATION_INTERVAL:
            self._chaining_key, self._key = hkdf(self._chaining_key, self._key)
            self._aead = chacha20_poly1305(self._key)
            self._nonce = 0

    def encrypt(self, plaintext: bytes) -> bytes:
        ciphertext = self._aead.encrypt(_NONCE.pack(self._nonce), plaintext, None)
        self._advance()
        return ciphertext

    def decrypt(self, ciphertext: bytes) -> bytes:
        try:
            plaintext = self._aead.decrypt(_NONCE.pack(self._nonce), ciphertext, None)
        except invalid_tag() as exc:
            raise MalformedMessage("BOLT 8 message MAC check failed") from exc
        self._advance()
        return plaintext


class NoiseSession:
    """The post-handshake state: encrypts outgoing and decrypts incoming messages."""

    __slots__ = ("_receiver", "_sender", "remote_static")

    def __init__(
        self, *, sending_key: bytes, receiving_key: bytes, chaining_key: bytes,
        remote_static: bytes,
    ) -> None:
        self._sender = CipherState(sending_key, chaining_key)
        self._receiver = CipherState(receiving_key, chaining_key)
        #: The peer's static public key (33 bytes): its node id.
        self.remote_static = remote_static

    @property
    def sending(self) -> CipherState:
        return self._sender

    @property
    def receiving(self) -> CipherState:
        return self._receiver

    def encrypt_message(self, message: bytes) -> bytes:
        """``AEAD(u16 len) ‖ AEAD(message)`` as one bytes object (one write on the socket)."""
        if len(message) > MAX_MESSAGE_SIZE:
            raise MalformedMessage(
                f"message of {len(message)} bytes exceeds BOLT 8's {MAX_MESSAGE_SIZE}"
            )
        sender = self._sender
        return sender.encrypt(_LENGTH.pack(len(message))) + sender.encrypt(message)

    def decrypt_length(self, header: bytes) -> int:
        """Decrypt the 18-byte header; return how many body bytes follow (length + 16 MAC)."""
        if len(header) != LENGTH_HEADER_SIZE:
            raise MalformedMessage(f"length header of {len(header)} bytes, want 18")
        length: int = _LENGTH.unpack(self._receiver.decrypt(header))[0]
        return length + MAC_SIZE

    def decrypt_body(self, body: bytes) -> bytes:
        """Decrypt the body announced by the preceding ``decrypt_length``."""
        return self._receiver.decrypt(body)

    def decrypt_message(self, frame: bytes) -> bytes:
        """Decrypt one whole frame (header and body); the frame must hold exactly one message."""
        body_size = self.decrypt_length(frame[:LENGTH_HEADER_SIZE])
        if len(frame) != LENGTH_HEADER_SIZE + body_size:
            raise MalformedMessage(
                f"frame of {len(frame)} bytes, header announced {LENGTH_HEADER_SIZE + body_size}"
            )
        return self.decrypt_body(frame[LENGTH_HEADER_SIZE:])


class _Step(enum.Enum):
    START = enum.auto()
    SENT_ACT_ONE = enum.auto()
    SENT_ACT_TWO = enum.auto()
    DONE = enum.auto()
    FAILED = enum.auto()


class _HandshakeState:
    """The Noise symmetric state (``h``, ``ck``, temporary key) shared by both roles."""

    __slots__ = ("_step", "chaining_key", "handshake_hash", "temp_key")

    def __init__(self, responder_static: bytes) -> None:
        h = hashlib.sha256(_INITIAL_HASH + PROLOGUE).digest()
        self.handshake_hash = hashlib.sha256(h + responder_static).digest()
        self.chaining_key = _INITIAL_HASH
        self.temp_key = b""
        self._step = _Step.START

    def _expect(self, step: _Step) -> None:
        if self._step is not step:
            current, self._step = self._step, _Step.FAILED
            raise HandshakeFailed(f"handshake act out of order (state {current.name})")

    def _fail(self) -> None:
        """A failed handshake is dead: no later act may reuse its half-mixed state."""
        self._step = _Step.FAILED

    def _mix_hash(self, data: bytes) -> None:
        self.handshake_hash = hashlib.sha256(self.handshake_hash + data).digest()

    def _mix_key(self, shared_secret: bytes) -> None:
        self.chaining_key, self.temp_key = hkdf(self.chaining_key, shared_secret)

    def _encrypt_and_hash(self, nonce: int, plaintext: bytes) -> bytes:
        ciphertext = chacha20_poly1305(self.temp_key).encrypt(
            _NONCE.pack(nonce), plaintext, self.handshake_hash
        )
        self._mix_hash(ciphertext)
        return ciphertext

    def _decrypt_and_hash(self, nonce: int, ciphertext: bytes, what: str) -> bytes:
        try:
            plaintext = chacha20_poly1305(self.temp_key).decrypt(
                _NONCE.pack(nonce), ciphertext, self.handshake_hash
            )
        except invalid_tag() as exc:
            raise HandshakeFailed(f"{what}: bad MAC") from exc
        self._mix_hash(ciphertext)
        return plaintext

    @staticmethod
    def _split_act(data: bytes, size: int, what: str) -> bytes:
        if len(data) != size:
            raise HandshakeFailed(f"{what}: {len(data)} bytes, want {size}")
        if data[0] != _HANDSHAKE_VERSION:
            raise HandshakeFailed(f"{what}: unknown handshake version {data[0]}")
        return data[1:]


class InitiatorHandshake(_HandshakeState):
    """The dialing side: knows the responder's static key before connecting."""

    __slots__ = ("_ephemeral", "_ephemeral_pub", "_local_static", "_remote_ephemeral",
                 "_remote_static")

    def __init__(self, *, local_static: bytes, remote_static: bytes, ephemeral: bytes) -> None:
        _check_point(remote_static, "responder static key")
        super().__init__(remote_static)
        self._local_static = _private_key(local_static, "local static key")
        self._remote_static = remote_static
        self._ephemeral = _private_key(ephemeral, "ephemeral key")
        self._ephemeral_pub = self._ephemeral.public_key.format(compressed=True)
        self._remote_ephemeral = b""

    def write_act_one(self) -> bytes:
        """Act one (50 bytes): ``0 ‖ e.pub ‖ MAC``; proves we know the responder's key."""
        self._expect(_Step.START)
        self._mix_hash(self._ephemeral_pub)
        self._mix_key(ecdh(self._ephemeral, self._remote_static))
        tag = self._encrypt_and_hash(0, b"")
        self._step = _Step.SENT_ACT_ONE
        return bytes((_HANDSHAKE_VERSION,)) + self._ephemeral_pub + tag

    def read_act_two(self, act_two: bytes) -> tuple[bytes, NoiseSession]:
        """Check act two (50 bytes); return act three (66 bytes) and the finished session."""
        self._expect(_Step.SENT_ACT_ONE)
        try:
            return self._read_act_two(act_two)
        except HandshakeFailed:
            self._fail()
            raise

    def _read_act_two(self, act_two: bytes) -> tuple[bytes, NoiseSession]:
        body = self._split_act(act_two, ACT_TWO_SIZE, "act two")
        remote_ephemeral, tag = body[:33], body[33:]
        _check_point(remote_ephemeral, "act two ephemeral key")
        self._mix_hash(remote_ephemeral)
        self._mix_key(ecdh(self._ephemeral, remote_ephemeral))
        self._decrypt_and_hash(0, tag, "act two")
        self._remote_ephemeral = remote_ephemeral

        encrypted_static = self._encrypt_and_hash(
            1, self._local_static.public_key.format(compressed=True)
        )
        self._mix_key(ecdh(self._local_static, remote_ephemeral))
        final_tag = self._encrypt_and_hash(0, b"")
        sending_key, receiving_key = hkdf(self.chaining_key, b"")
        self._step = _Step.DONE
        session = NoiseSession(
            sending_key=sending_key,
            receiving_key=receiving_key,
            chaining_key=self.chaining_key,
            remote_static=self._remote_static,
        )
        return bytes((_HANDSHAKE_VERSION,)) + encrypted_static + final_tag, session


class ResponderHandshake(_HandshakeState):
    """The listening side: learns the initiator's static key from act three."""

    __slots__ = ("_ephemeral", "_ephemeral_pub", "_local_static", "_remote_ephemeral")

    def __init__(self, *, local_static: bytes, ephemeral: bytes) -> None:
        static = _private_key(local_static, "local static key")
        super().__init__(static.public_key.format(compressed=True))
        self._local_static = static
        self._ephemeral = _private_key(ephemeral, "ephemeral key")
        self._ephemeral_pub = self._ephemeral.public_key.format(compressed=True)
        self._remote_ephemeral = b""

    def read_act_one(self, act_one: bytes) -> bytes:
        """Check act one (50 bytes); return act two (50 bytes): ``0 ‖ e.pub ‖ MAC``."""
        self._expect(_Step.START)
        try:
            return self._read_act_one(act_one)
        except HandshakeFailed:
            self._fail()
            raise

    def _read_act_one(self, act_one: bytes) -> bytes:
        body = self._split_act(act_one, ACT_ONE_SIZE, "act one")
        remote_ephemeral, tag = body[:33], body[33:]
        _check_point(remote_ephemeral, "act one ephemeral key")
        self._mix_hash(remote_ephemeral)
        self._mix_key(ecdh(self._local_static, remote_ephemeral))
        self._decrypt_and_hash(0, tag, "act one")
        self._remote_ephemeral = remote_ephemeral

        self._mix_hash(self._ephemeral_pub)
        self._mix_key(ecdh(self._ephemeral, remote_ephemeral))
        reply_tag = self._encrypt_and_hash(0, b"")
        self._step = _Step.SENT_ACT_TWO
        return bytes((_HANDSHAKE_VERSION,)) + self._ephemeral_pub + reply_tag

    def read_act_three(self, act_three: bytes) -> NoiseSession:
        """Check act three (66 bytes); return the session, whose ``remote_static`` is the peer."""
        self._expect(_Step.SENT_ACT_TWO)
        try:
            return self._read_act_three(act_three)
        except HandshakeFailed:
            self._fail()
            raise

    def _read_act_three(self, act_three: bytes) -> NoiseSession:
        body = self._split_act(act_three, ACT_THREE_SIZE, "act three")
        encrypted_static, tag = body[:49], body[49:]
        remote_static = self._decrypt_and_hash(1, encrypted_static, "act three static key")
        _check_point(remote_static, "act three static key")
        self._mix_key(ecdh(self._ephemeral, remote_static))
        self._decrypt_and_hash(0, tag, "act three")
        receiving_key, sending_key = hkdf(self.chaining_key, b"")
        self._step = _Step.DONE
        return NoiseSession(
            sending_key=sending_key,
            receiving_key=receiving_key,
            chaining_key=self.chaining_key,
            remote_static=remote_static,
        )
