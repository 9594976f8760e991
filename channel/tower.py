"""A watchtower: encrypted justice kits that open only when the breach they punish appears.

Pure. The client (a node) hands the tower, after each revocation, what it needs to punish that
revoked commitment; the tower learns nothing until that commitment is broadcast (the scheme of
LND's tower and The Eye of Satoshi):

    hint = txid[:16]                 of the revoked commitment (internal byte order)
    key  = SHA256(txid)              32 bytes, known only to whoever knows the full txid
    blob = ChaCha20-Poly1305(key, nonce = 12 zero bytes, JusticeKit)  (+16-byte tag)

A zero nonce is safe because each key encrypts one plaintext: the key is bound to one revoked
commitment, a client builds its kit deterministically (RFC 6979 signatures), and the tower
refuses a *different* blob for a (client, hint) it already holds.

The justice kit carries *signatures*, never a private key: the client pre-signs one justice
transaction per revocable output (to_local, each HTLC output, and without anchors each HTLC tx's
output), so the tower can only broadcast what the client signed, paying the client. One tx per
output rather than one for all keeps each valid when the cheater takes some HTLC outputs first
with its second-stage txs, and defeats pinning (BOLT 5 allows splitting the penalty). Each
justice tx is fully determined by the breach tx and the kit: version 2, locktime 0, one input
(nSequence 0xFFFFFFFD), one output to the client's script of ``amount - fee`` where ``fee =
feerate_per_kw * weight // 1000`` on the weight with a 73-byte signature.

With ``option_anchors`` the cheater's HTLC txs take fee inputs, so their txids, and the outpoints
a second-stage penalty would spend, cannot be known in advance: a tower (which never holds a
key) cannot punish a revoked HTLC tx output there; the node's own monitor can. Without anchors
HTLC txs are fully pre-signed and their outputs are covered.

JusticeKit, version 1 (big-endian integers)::

    u8 version=1 | u8 flags (1: anchors, 2: to_local, 4: second-stage sigs) | u16 to_self_delay
    u32 feerate_per_kw | u8 len + destination scriptPubKey
    33 revocationpubkey | 33 broadcaster delayedpubkey
    [flags&2: u16 vout | 64 sig]                                            to_local
    u16 n_htlcs | [n>0: 33 broadcaster htlcpubkey | 33 countersignatory htlcpubkey]
    n x (u16 vout | u8 0=offered/1=received | 32 payment_hash | u32 cltv_expiry | 64 sig
         [flags&4: 64 sig for the HTLC tx output's penalty])

165 bytes for a state without HTLCs and a P2WPKH destination (+16 tag, +16 hint = 197 stored),
plus 103 bytes per HTLC (167 with second-stage signatures) and 66 once for the HTLC keys.

Client authentication: a client registers its public key with the tower operator; every upload
is signed with that key (64-byte compact ECDSA over SHA256 of a domain tag, the client key, the
hint and the blob). Unknown clients, bad signatures, oversize blobs and conflicting re-uploads
are refused with :class:`channel.errors.PeerProtocolError` (``InvalidSignature`` for signatures).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from bitcoin.core import COutPoint, CTransaction, CTxIn, CTxOut
from bitcoin.core.script import CScript

from channel.aead import chacha20_poly1305, invalid_tag
from channel.errors import InvalidSignature, MalformedMessage, PeerProtocolError
from channel.keys import (
    SIGHASH_ALL,
    DelayedPubkey,
    HtlcPubkey,
    Point,
    PrivateKey,
    RevocationPubkey,
    verify,
    witness_signature,
)
from channel.scripts import offered_htlc_script, p2wsh, received_htlc_script, to_local_script
from channel.sweeps import SEQUENCE_NO_RELATIVE_LOCK
from channel.transactions import (
    CommitmentTransaction,
    build_htlc_transaction,
    segwit_v0_sighash,
    tx_with_witnesses,
)
from channel.types import CommitmentFormat, HtlcDirection, OutPoint

__all__ = [
    "HINT_BYTES",
    "MAX_BLOB_BYTES",
    "HtlcJustice",
    "JusticeKit",
    "JusticeTransaction",
    "MemoryTowerStore",
    "SignedUpload",
    "TowerClient",
    "TowerStore",
    "Watchtower",
    "build_justice_kit",
    "decrypt_blob",
    "encrypt_blob",
    "hint_for",
    "justice_kit_for_state",
    "scan_raw_transaction",
]

HINT_BYTES = 16
MAX_BLOB_BYTES = 256 * 1024   # 483 HTLCs each way with second-stage signatures fit (~162 kB)
_KIT_VERSION = 1
_FLAG_ANCHORS, _FLAG_TO_LOCAL, _FLAG_SECOND_STAGE = 1, 2, 4
_NONCE = bytes(12)
_UPLOAD_TAG = b"chanlab-tower-upload-v1"
_MAX_SIG_WITNESS = 73
_P2WPKH_DUST_SAT, _P2WSH_DUST_SAT = 294, 330


# ---------------------------------------------------------------------------------------------
# Hint, key, encryption


def hint_for(txid: bytes) -> bytes:
    """The tower's lookup key for a breach: the first 16 bytes of its txid (internal order)."""
    if len(txid) != 32:
        raise ValueError("txid must be 32 bytes")
    return txid[:HINT_BYTES]


def _key_for(txid: bytes) -> bytes:
    return hashlib.sha256(txid).digest()


def encrypt_blob(plaintext: bytes, breach_txid: bytes) -> bytes:
    """ChaCha20-Poly1305 under ``SHA256(breach_txid)``, zero nonce (one plaintext per key)."""
    return chacha20_poly1305(_key_for(breach_txid)).encrypt(_NONCE, plaintext, None)


def decrypt_blob(blob: bytes, breach_txid: bytes) -> bytes | None:
    """The plaintext, or None when ``blob`` was not made for ``breach_txid`` (or was altered)."""
    try:
        return chacha20_poly1305(_key_for(breach_txid)).decrypt(_NONCE, blob, None)
    except invalid_tag():
        return None   # a hint collision or a tampered blob: simply not a match


# ---------------------------------------------------------------------------------------------
# The justice kit


@dataclass(frozen=True, slots=True, kw_only=True)
class HtlcJustice:
    """One HTLC output of the revoked commitment and the client's signatures for it."""

    vout: int
    direction: HtlcDirection
    payment_hash: bytes
    cltv_expiry: int
    signature: bytes
    second_stage_signature: bytes | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.vout <= 0xFFFF or len(self.payment_hash) != 32 or \
                len(self.signature) != 64 or not 0 <= self.cltv_expiry <= 0xFFFFFFFF:
            raise ValueError("HtlcJustice: field out of range")
        if self.second_stage_signature is not None and len(self.second_stage_signature) != 64:
            raise ValueError("HtlcJustice: second_stage_signature must be 64 bytes")


@dataclass(frozen=True, slots=True, kw_only=True)
class JusticeKit:
    """What a tower needs to punish one revoked commitment (see the module docstring)."""

    commitment_format: CommitmentFormat
    to_self_delay: int
    feerate_per_kw: int
    destination_script_pubkey: bytes
    revocation_pubkey: bytes
    broadcaster_delayed_pubkey: bytes
    to_local_vout: int | None
    to_local_signature: bytes | None
    broadcaster_htlc_pubkey: bytes | None
    countersignatory_htlc_pubkey: bytes | None
    htlcs: tuple[HtlcJustice, ...]

    def __post_init__(self) -> None:
        if not 0 < self.to_self_delay <= 0xFFFF or not 0 <= self.feerate_per_kw <= 0xFFFFFFFF:
            raise ValueError("JusticeKit: to_self_delay or feerate_per_kw out of range")
        if not 0 < len(self.destination_script_pubkey) <= 0xFF:
            raise ValueError("JusticeKit: destination_script_pubkey length out of range")
        if len(self.revocation_pubkey) != 33 or len(self.broadcaster_delayed_pubkey) != 33:
            raise ValueError("JusticeKit: keys must be 33 bytes")
        if (self.to_local_vout is None) != (self.to_local_signature is None):
            raise ValueError("JusticeKit: to_local needs both vout and signature")
        if self.htlcs and (self.broadcaster_htlc_pubkey is None or
                           self.countersignatory_htlc_pubkey is None):
            raise ValueError("JusticeKit: HTLCs need both htlc pubkeys")
        second = {h.second_stage_signature is not None for h in self.htlcs}
        if len(second) > 1:
            raise ValueError("JusticeKit: second-stage signatures for all HTLCs or none")

    def to_bytes(self) -> bytes:
        """The plaintext wire form (module docstring)."""
        flags = (_FLAG_ANCHORS if self.commitment_format is CommitmentFormat.ANCHORS else 0)
        if self.to_local_vout is not None:
            flags |= _FLAG_TO_LOCAL
        if self.htlcs and self.htlcs[0].second_stage_signature is not None:
            flags |= _FLAG_SECOND_STAGE
        out = bytearray(struct.pack(">BBHIB", _KIT_VERSION, flags, self.to_self_delay,
                                    self.feerate_per_kw, len(self.destination_script_pubkey)))
        out += self.destination_script_pubkey + self.revocation_pubkey + \
            self.broadcaster_delayed_pubkey
        if self.to_local_vout is not None and self.to_local_signature is not None:
            out += struct.pack(">H", self.to_local_vout) + self.to_local_signature
        out += struct.pack(">H", len(self.htlcs))
        if self.htlcs and self.broadcaster_htlc_pubkey and self.countersignatory_htlc_pubkey:
            out += self.broadcaster_htlc_pubkey + self.countersignatory_htlc_pubkey
        for h in self.htlcs:
            out += struct.pack(">HB", h.vout, 0 if h.direction is HtlcDirection.OFFERED else 1)
            out += h.payment_hash + struct.pack(">I", h.cltv_expiry) + h.signature
            out += h.second_stage_signature or b""
        return bytes(out)

    @classmethod
    def from_bytes(cls, data: bytes) -> JusticeKit:
        """Parse the plaintext; raises MalformedMessage."""
        try:
            return cls._parse(data)
        except (struct.error, ValueError, IndexError) as exc:
            raise MalformedMessage(f"justice kit does not parse: {exc}") from exc

    @classmethod
    def _parse(cls, data: bytes) -> JusticeKit:
        version, flags, delay, feerate, dest_len = struct.unpack_from(">BBHIB", data, 0)
        if version != _KIT_VERSION or flags & ~7:
            raise ValueError(f"unknown version {version} or flags {flags}")
        pos = 9
        dest = _take(data, pos, dest_len)
        pos += dest_len
        revocation, delayed = _take(data, pos, 33), _take(data, pos + 33, 33)
        pos += 66
        to_local_vout = to_local_sig = None
        if flags & _FLAG_TO_LOCAL:
            (to_local_vout,) = struct.unpack_from(">H", data, pos)
            to_local_sig = _take(data, pos + 2, 64)
            pos += 66
        (n,) = struct.unpack_from(">H", data, pos)
        pos += 2
        bhtlc = chtlc = None
        if n:
            bhtlc, chtlc = _take(data, pos, 33), _take(data, pos + 33, 33)
            pos += 66
        htlcs = []
        second = bool(flags & _FLAG_SECOND_STAGE)
        for _ in range(n):
            vout, direction = struct.unpack_from(">HB", data, pos)
            if direction > 1:
                raise ValueError("bad HTLC direction")
            payment_hash = _take(data, pos + 3, 32)
            (cltv,) = struct.unpack_from(">I", data, pos + 35)
            sig = _take(data, pos + 39, 64)
            pos += 103
            second_sig = None
            if second:
                second_sig = _take(data, pos, 64)
                pos += 64
            htlcs.append(HtlcJustice(
                vout=vout, direction=HtlcDirection.OFFERED if direction == 0
                else HtlcDirection.RECEIVED, payment_hash=payment_hash, cltv_expiry=cltv,
                signature=sig, second_stage_signature=second_sig))
        if pos != len(data):
            raise ValueError(f"{len(data) - pos} trailing bytes")
        return cls(
            commitment_format=CommitmentFormat.ANCHORS if flags & _FLAG_ANCHORS
            else CommitmentFormat.STATIC_REMOTEKEY,
            to_self_delay=delay, feerate_per_kw=feerate, destination_script_pubkey=dest,
            revocation_pubkey=revocation, broadcaster_delayed_pubkey=delayed,
            to_local_vout=to_local_vout, to_local_signature=to_local_sig,
            broadcaster_htlc_pubkey=bhtlc, countersignatory_htlc_pubkey=chtlc,
            htlcs=tuple(htlcs))

    def encrypt(self, breach_txid: bytes) -> tuple[bytes, bytes]:
        """(hint, blob) for the tower."""
        return hint_for(breach_txid), encrypt_blob(self.to_bytes(), breach_txid)

    # -- scripts, shared by client and tower --------------------------------------------------

    def to_local_witness_script(self) -> bytes:
        """The to_local script (also every HTLC tx output's script)."""
        return to_local_script(RevocationPubkey(self.revocation_pubkey), self.to_self_delay,
                               DelayedPubkey(self.broadcaster_delayed_pubkey))

    def htlc_witness_script(self, htlc: HtlcJustice) -> bytes:
        """The HTLC output's script on the revoked commitment."""
        if self.broadcaster_htlc_pubkey is None or self.countersignatory_htlc_pubkey is None:
            raise ValueError("no HTLC keys in this kit")
        revocation = RevocationPubkey(self.revocation_pubkey)
        broadcaster = HtlcPubkey(self.broadcaster_htlc_pubkey)
        countersignatory = HtlcPubkey(self.countersignatory_htlc_pubkey)
        if htlc.direction is HtlcDirection.OFFERED:
            return offered_htlc_script(
                revocation_pubkey=revocation, broadcaster_htlc_pubkey=broadcaster,
                countersignatory_htlc_pubkey=countersignatory, payment_hash=htlc.payment_hash,
                commitment_format=self.commitment_format)
        return received_htlc_script(
            revocation_pubkey=revocation, broadcaster_htlc_pubkey=broadcaster,
            countersignatory_htlc_pubkey=countersignatory, payment_hash=htlc.payment_hash,
            cltv_expiry=htlc.cltv_expiry, commitment_format=self.commitment_format)


def _take(data: bytes, pos: int, n: int) -> bytes:
    chunk = data[pos:pos + n]
    if len(chunk) != n:
        raise ValueError("truncated")
    return chunk


def _dust_limit(script_pubkey: bytes) -> int:
    if len(script_pubkey) == 22 and script_pubkey[:2] == b"\x00\x14":
        return _P2WPKH_DUST_SAT
    return _P2WSH_DUST_SAT


def _justice_unsigned(outpoint: OutPoint, amount_sat: int, witness_script: bytes,
                      second_item: bytes, destination: bytes,
                      feerate_per_kw: int) -> tuple[CTransaction, int] | None:
    """The unsigned one-input justice tx and its fee; None if the output would be dust.

    ``second_item`` is the witness element after the signature: ``01`` (to_local shape) or the
    revocationpubkey (HTLC output). Client and tower both build it here, so they agree.
    """
    vin = [CTxIn(COutPoint(outpoint.txid, outpoint.vout), CScript(), SEQUENCE_NO_RELATIVE_LOCK)]
    dummy = tx_with_witnesses(
        CTransaction(vin, [CTxOut(amount_sat, CScript(destination))], 0, 2),
        [(b"\x30" + bytes(_MAX_SIG_WITNESS - 1), second_item, witness_script)])
    fee = feerate_per_kw * int(dummy.calc_weight()) // 1000
    if amount_sat - fee < _dust_limit(destination):
        return None
    return CTransaction(vin, [CTxOut(amount_sat - fee, CScript(destination))], 0, 2), fee


def _sign(tx: CTransaction, witness_script: bytes, amount_sat: int, key: PrivateKey) -> bytes:
    return key.sign(segwit_v0_sighash(tx, 0, witness_script, amount_sat, SIGHASH_ALL))


def build_justice_kit(revoked: CommitmentTransaction, *, revocation_privkey: PrivateKey,
                      destination_script_pubkey: bytes, feerate_per_kw: int) -> JusticeKit:
    """The client side: pre-sign one justice tx per revocable output of ``revoked``.

    Outputs whose justice tx would be dust at ``feerate_per_kw`` are left out.
    """
    keys = revoked.keys
    if revocation_privkey.pubkey != keys.revocation_pubkey.data:
        raise ValueError("revocation_privkey does not match the revoked commitment")
    rk_pub = keys.revocation_pubkey.data
    dest = destination_script_pubkey
    to_local_vout = to_local_sig = None
    if revoked.to_local_vout is not None:
        built = _justice_unsigned(revoked.outpoint(revoked.to_local_vout),
                                  revoked.to_local_amount_sat, revoked.to_local_script,
                                  b"\x01", dest, feerate_per_kw)
        if built is not None:
            to_local_vout = revoked.to_local_vout
            to_local_sig = _sign(built[0], revoked.to_local_script, revoked.to_local_amount_sat,
                                 revocation_privkey)
    second_stage = revoked.commitment_format is CommitmentFormat.STATIC_REMOTEKEY
    htlcs = []
    for ho in revoked.htlc_outputs:
        built = _justice_unsigned(revoked.outpoint(ho.vout), ho.amount_sat, ho.witness_script,
                                  rk_pub, dest, feerate_per_kw)
        if built is None:
            continue
        sig = _sign(built[0], ho.witness_script, ho.amount_sat, revocation_privkey)
        second_sig = None
        if second_stage:
            htx = build_htlc_transaction(revoked, ho)
            second = _justice_unsigned(OutPoint(txid=htx.txid, vout=0), htx.output_amount_sat,
                                       htx.output_script, b"\x01", dest, feerate_per_kw)
            # A dust second stage still needs a placeholder: all-or-none per kit.
            second_sig = bytes(64) if second is None else _sign(
                second[0], htx.output_script, htx.output_amount_sat, revocation_privkey)
        htlcs.append(HtlcJustice(vout=ho.vout, direction=ho.htlc.direction,
                                 payment_hash=ho.htlc.payment_hash,
                                 cltv_expiry=ho.htlc.cltv_expiry, signature=sig,
                                 second_stage_signature=second_sig))
    return JusticeKit(
        commitment_format=revoked.commitment_format, to_self_delay=revoked.to_self_delay,
        feerate_per_kw=feerate_per_kw, destination_script_pubkey=dest, revocation_pubkey=rk_pub,
        broadcaster_delayed_pubkey=keys.broadcaster_delayed_pubkey.data,
        to_local_vout=to_local_vout, to_local_signature=to_local_sig,
        broadcaster_htlc_pubkey=keys.broadcaster_htlc_pubkey.data if htlcs else None,
        countersignatory_htlc_pubkey=keys.countersignatory_htlc_pubkey.data if htlcs else None,
        htlcs=tuple(htlcs))


class RevokedStates(Protocol):
    """What :func:`justice_kit_for_state` reads (a channel monitor has it): the tower module
    knows no monitor, only this."""

    destination_script_pubkey: bytes
    sweep_feerate_per_kw: int

    def revoked_commitment(self, commitment_number: int) -> CommitmentTransaction: ...

    def revocation_privkey(self, commitment_number: int) -> PrivateKey: ...


def justice_kit_for_state(monitor: RevokedStates, commitment_number: int
                          ) -> tuple[bytes, JusticeKit]:
    """(txid of the peer's revoked commitment ``commitment_number``, its justice kit): what a
    node uploads (``TowerClient.upload_kit(kit, txid)``) after each ``revoke_and_ack``. The
    justice txs pay the monitor's destination at its sweep feerate."""
    revoked = monitor.revoked_commitment(commitment_number)
    kit = build_justice_kit(revoked,
                            revocation_privkey=monitor.revocation_privkey(commitment_number),
                            destination_script_pubkey=monitor.destination_script_pubkey,
                            feerate_per_kw=monitor.sweep_feerate_per_kw)
    return revoked.txid, kit


# ---------------------------------------------------------------------------------------------
# Client authentication


def _upload_digest(client_pubkey: bytes, hint: bytes, blob: bytes) -> bytes:
    return hashlib.sha256(_UPLOAD_TAG + client_pubkey + hint + blob).digest()


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedUpload:
    """One (hint, blob) and the client's signature over it."""

    client_pubkey: bytes
    hint: bytes
    blob: bytes
    signature: bytes

    def to_bytes(self) -> bytes:
        """Wire form: ``33 client_pubkey | 16 hint | 64 signature | blob``."""
        return self.client_pubkey + self.hint + self.signature + self.blob

    @classmethod
    def from_bytes(cls, data: bytes) -> SignedUpload:
        """Inverse of :meth:`to_bytes`; raises MalformedMessage if too short."""
        if len(data) < 33 + HINT_BYTES + 64 + 16:
            raise MalformedMessage("tower upload too short")
        return cls(client_pubkey=data[:33], hint=data[33:49], signature=data[49:113],
                   blob=data[113:])


@dataclass(frozen=True, slots=True)
class TowerClient:
    """A node's identity towards towers: signs its uploads."""

    key: PrivateKey

    @property
    def pubkey(self) -> bytes:
        """What the tower operator registers."""
        return self.key.pubkey

    def upload(self, hint: bytes, blob: bytes) -> SignedUpload:
        """Sign one (hint, blob)."""
        digest = _upload_digest(self.pubkey, hint, blob)
        return SignedUpload(client_pubkey=self.pubkey, hint=hint, blob=blob,
                            signature=self.key.sign(digest))

    def upload_kit(self, kit: JusticeKit, breach_txid: bytes) -> SignedUpload:
        """Encrypt ``kit`` for ``breach_txid`` and sign it."""
        hint, blob = kit.encrypt(breach_txid)
        return self.upload(hint, blob)


# ---------------------------------------------------------------------------------------------
# The tower


class TowerStore(Protocol):
    """Where a tower keeps clients and blobs (:class:`MemoryTowerStore`, or the SQLite one in
    :mod:`channel.tower_store`)."""

    def add_client(self, client_pubkey: bytes) -> None:
        """Register a client key (idempotent)."""

    def is_client(self, client_pubkey: bytes) -> bool:
        """True if the key is registered."""

    def get_blob(self, client_pubkey: bytes, hint: bytes) -> bytes | None:
        """The blob this client stored under ``hint``."""

    def put_blob(self, client_pubkey: bytes, hint: bytes, blob: bytes) -> None:
        """Store a blob (durably, before returning)."""

    def blobs_for_hint(self, hint: bytes) -> list[tuple[bytes, bytes]]:
        """Every (client_pubkey, blob) stored under ``hint``."""

    def count_blobs(self) -> int:
        """How many blobs are stored."""


class MemoryTowerStore:
    """A :class:`TowerStore` in a dict (tests, benchmarks)."""

    def __init__(self) -> None:
        self._clients: set[bytes] = set()
        self._blobs: dict[bytes, dict[bytes, bytes]] = {}
        self._count = 0

    def add_client(self, client_pubkey: bytes) -> None:
        self._clients.add(client_pubkey)

    def is_client(self, client_pubkey: bytes) -> bool:
        return client_pubkey in self._clients

    def get_blob(self, client_pubkey: bytes, hint: bytes) -> bytes | None:
        return self._blobs.get(hint, {}).get(client_pubkey)

    def put_blob(self, client_pubkey: bytes, hint: bytes, blob: bytes) -> None:
        slot = self._blobs.setdefault(hint, {})
        if client_pubkey not in slot:
            self._count += 1
        slot[client_pubkey] = blob

    def blobs_for_hint(self, hint: bytes) -> list[tuple[bytes, bytes]]:
        slot = self._blobs.get(hint)
        return list(slot.items()) if slot else []

    def count_blobs(self) -> int:
        return self._count


@dataclass(frozen=True, slots=True, kw_only=True)
class JusticeTransaction:
    """A justice tx the tower should broadcast at once."""

    tx: CTransaction
    txid: bytes
    breach_txid: bytes
    spends: OutPoint
    amount_sat: int
    fee_sat: int
    client_pubkey: bytes
    description: str


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """A CompactSize at ``pos``; raises ValueError on a short or non-canonical one (bitcoind
    refuses a length that a shorter form could have held, so must we: such bytes are not a tx)."""
    first = data[pos]
    if first < 0xFD:
        return first, pos + 1
    size, minimum = {0xFD: (2, 0xFD), 0xFE: (4, 0x10000), 0xFF: (8, 0x100000000)}[first]
    field = data[pos + 1:pos + 1 + size]
    if len(field) != size:
        raise ValueError("truncated CompactSize")
    value = int.from_bytes(field, "little")
    if value < minimum:
        raise ValueError(f"non-canonical CompactSize {value}")
    return value, pos + 1 + size


def scan_raw_transaction(raw: bytes) -> tuple[bytes, list[bytes]]:
    """(txid, prevout txids) of a serialized transaction, without building a CTransaction.

    The tower's hot path: most transactions match nothing, and hashing the witness-stripped
    bytes directly is several times cheaper than deserializing. Raises MalformedMessage.
    """
    try:
        segwit = raw[4] == 0 and raw[5] != 0
        if segwit and raw[5] != 1:
            raise ValueError(f"segwit flag {raw[5]} (only 1 is defined)")
        pos = 6 if segwit else 4
        start = pos
        n_in, pos = _varint(raw, pos)
        prevouts = []
        for _ in range(n_in):
            prevouts.append(raw[pos:pos + 32])
            length, pos = _varint(raw, pos + 36)
            pos += length + 4
        n_out, pos = _varint(raw, pos)
        for _ in range(n_out):
            length, pos = _varint(raw, pos + 8)
            pos += length
        end = pos
        if segwit:
            for _ in range(n_in):
                items, pos = _varint(raw, pos)
                for _ in range(items):
                    length, pos = _varint(raw, pos)
                    pos += length
        if pos + 4 != len(raw):
            raise ValueError("length mismatch")
    except (IndexError, KeyError, ValueError) as exc:
        raise MalformedMessage(f"not a transaction: {exc}") from exc
    stripped = raw[:4] + raw[start:end] + raw[pos:] if segwit else raw
    txid = hashlib.sha256(hashlib.sha256(stripped).digest()).digest()
    return txid, prevouts


class Watchtower:
    """The tower's decisions: accept authenticated uploads, answer breaches with justice txs.

    Its I/O shell (the ``chanlab tower`` daemon) feeds :meth:`on_raw_transaction` every tx from
    bitcoind's mempool and blocks, and broadcasts what comes back.
    """

    def __init__(self, store: TowerStore, *, max_blob_bytes: int = MAX_BLOB_BYTES) -> None:
        self.store = store
        self.max_blob_bytes = max_blob_bytes

    def register_client(self, client_pubkey: bytes) -> None:
        """The operator allows a client (a 33-byte compressed public key)."""
        Point(client_pubkey)   # raises ValueError unless a valid compressed point
        self.store.add_client(client_pubkey)

    def accept(self, upload: SignedUpload) -> bool:
        """Store an upload; True if new, False for an exact duplicate.

        Raises PeerProtocolError (unknown client, bad sizes, a different blob for a state
        already stored) or InvalidSignature.
        """
        if not self.store.is_client(upload.client_pubkey):
            raise PeerProtocolError("unknown client: register its key first")
        if len(upload.hint) != HINT_BYTES:
            raise PeerProtocolError(f"hint must be {HINT_BYTES} bytes")
        if not 16 < len(upload.blob) <= self.max_blob_bytes:
            raise PeerProtocolError(f"blob size {len(upload.blob)} out of range")
        digest = _upload_digest(upload.client_pubkey, upload.hint, upload.blob)
        if not verify(upload.client_pubkey, digest, upload.signature):
            raise InvalidSignature("tower upload signature does not verify")
        existing = self.store.get_blob(upload.client_pubkey, upload.hint)
        if existing is not None:
            if existing == upload.blob:
                return False
            raise PeerProtocolError("a different blob for a state already stored")
        self.store.put_blob(upload.client_pubkey, upload.hint, upload.blob)
        return True

    def on_raw_transaction(self, raw: bytes) -> list[JusticeTransaction]:
        """:meth:`on_transaction` from the serialized tx (the fast path for non-matches)."""
        txid, prevouts = scan_raw_transaction(raw)
        hints = [hint_for(txid), *(hint_for(p) for p in prevouts)]
        if not any(self.store.blobs_for_hint(h) for h in hints):
            return []
        return self.on_transaction(CTransaction.deserialize(raw))

    def on_transaction(self, tx: CTransaction) -> list[JusticeTransaction]:
        """Justice txs for ``tx``: if it is a revoked commitment a client stored a kit for, one
        per revocable output; if it spends an HTLC output of one (the cheater's HTLC tx, no
        anchors), the penalty of its output."""
        txid = bytes(tx.GetTxid())
        out: list[JusticeTransaction] = []
        for client, blob in self.store.blobs_for_hint(hint_for(txid)):
            kit = self._open(blob, txid)
            if kit is not None:
                out += _justice_for_commitment(kit, tx, txid, client)
        parents: dict[bytes, list[int]] = {}
        for i, txin in enumerate(tx.vin):
            parents.setdefault(bytes(txin.prevout.hash), []).append(i)
        for parent, inputs in parents.items():
            for client, blob in self.store.blobs_for_hint(hint_for(parent)):
                kit = self._open(blob, parent)
                if kit is not None:
                    out += _justice_for_second_stage(kit, tx, txid, parent, inputs, client)
        return out

    @staticmethod
    def _open(blob: bytes, txid: bytes) -> JusticeKit | None:
        plaintext = decrypt_blob(blob, txid)
        if plaintext is None:
            return None
        try:
            return JusticeKit.from_bytes(plaintext)
        except MalformedMessage:
            return None   # authentic for this txid but garbled by its client: nothing to do


def _finish(unsigned: CTransaction, fee: int, witness_script: bytes, second_item: bytes,
            signature: bytes, amount_sat: int, spends: OutPoint, breach_txid: bytes,
            client: bytes, description: str, check_key: bytes) -> JusticeTransaction | None:
    digest = segwit_v0_sighash(unsigned, 0, witness_script, amount_sat, SIGHASH_ALL)
    if not verify(check_key, digest, signature):
        return None   # not the tx the client signed (e.g. an anchors HTLC tx with fee inputs)
    tx = tx_with_witnesses(unsigned, [(witness_signature(signature), second_item,
                                       witness_script)])
    return JusticeTransaction(tx=tx, txid=bytes(tx.GetTxid()), breach_txid=breach_txid,
                              spends=spends, amount_sat=amount_sat - fee, fee_sat=fee,
                              client_pubkey=client,
                              description=f"{description}: {amount_sat - fee} sat to client "
                                          f"{client.hex()[:16]}... after a {fee} sat fee")


def _justice_for_commitment(kit: JusticeKit, tx: CTransaction, txid: bytes,
                            client: bytes) -> list[JusticeTransaction]:
    out: list[JusticeTransaction] = []
    short = txid[::-1].hex()[:16]
    try:
        jobs: list[tuple[int, bytes, bytes, bytes, str]] = []
        if kit.to_local_vout is not None and kit.to_local_signature is not None:
            jobs.append((kit.to_local_vout, kit.to_local_witness_script(), b"\x01",
                         kit.to_local_signature, "to_local"))
        for h in kit.htlcs:
            jobs.append((h.vout, kit.htlc_witness_script(h), kit.revocation_pubkey, h.signature,
                         f"{h.direction.value} HTLC"))
    except ValueError:
        return out   # a key in the kit is not a valid point: a garbled kit
    for vout, script, item, sig, what in jobs:
        if vout >= len(tx.vout) or bytes(tx.vout[vout].scriptPubKey) != p2wsh(script):
            continue
        amount = int(tx.vout[vout].nValue)
        built = _justice_unsigned(OutPoint(txid=txid, vout=vout), amount, script, item,
                                  kit.destination_script_pubkey, kit.feerate_per_kw)
        if built is None:
            continue
        justice = _finish(built[0], built[1], script, item, sig, amount,
                          OutPoint(txid=txid, vout=vout), txid, client,
                          f"breach {short}...: justice for {what} (output {vout}, {amount} sat)",
                          kit.revocation_pubkey)
        if justice is not None:
            out.append(justice)
    return out


def _justice_for_second_stage(kit: JusticeKit, tx: CTransaction, txid: bytes, parent: bytes,
                              inputs: Iterable[int], client: bytes) -> list[JusticeTransaction]:
    if not kit.htlcs or kit.htlcs[0].second_stage_signature is None or not tx.vout:
        return []
    try:
        script = kit.to_local_witness_script()
    except ValueError:
        return []
    if bytes(tx.vout[0].scriptPubKey) != p2wsh(script):
        return []
    by_vout = {h.vout: h for h in kit.htlcs}
    out: list[JusticeTransaction] = []
    for i in inputs:
        htlc = by_vout.get(int(tx.vin[i].prevout.n))
        if htlc is None or htlc.second_stage_signature is None:
            continue
        amount = int(tx.vout[0].nValue)
        built = _justice_unsigned(OutPoint(txid=txid, vout=0), amount, script, b"\x01",
                                  kit.destination_script_pubkey, kit.feerate_per_kw)
        if built is None:
            continue
        justice = _finish(built[0], built[1], script, b"\x01", htlc.second_stage_signature,
                          amount, OutPoint(txid=txid, vout=0), parent, client,
                          f"the cheater's HTLC tx {txid[::-1].hex()[:16]}... took HTLC output "
                          f"{htlc.vout} of breach {parent[::-1].hex()[:16]}...: justice for its "
                          f"output ({amount} sat)", kit.revocation_pubkey)
        if justice is not None:
            out.append(justice)
    return out
