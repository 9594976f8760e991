"""BOLT 3 witness scripts and the scriptPubKeys that commit to them.

Pure. Bytes in, bytes out. Keys come in as the typed points of :mod:`channel.keys`, so each slot
of a script only accepts the key kind BOLT 3 puts there. Scripts are written as lists in spec
order (opcodes are python-bitcoinlib's ``CScriptOp``, ``bytes`` are data pushes, plain ``int`` are
script numbers) and serialized by :func:`_script`, a few times faster than ``CScript([...])``;
this matters because every new commitment builds new HTLC scripts. Builders are memoised too:
the same script is built when signing and again when verifying.

Naming for one commitment transaction: *broadcaster* = BOLT 3's "local" (who holds it),
*countersignatory* = "remote".
"""

from __future__ import annotations

import functools
import hashlib

from bitcoin.core.script import (
    OP_16,
    OP_CHECKLOCKTIMEVERIFY,
    OP_CHECKMULTISIG,
    OP_CHECKSEQUENCEVERIFY,
    OP_CHECKSIG,
    OP_CHECKSIGVERIFY,
    OP_DROP,
    OP_DUP,
    OP_ELSE,
    OP_ENDIF,
    OP_EQUAL,
    OP_EQUALVERIFY,
    OP_HASH160,
    OP_IF,
    OP_IFDUP,
    OP_NOTIF,
    OP_SIZE,
    OP_SWAP,
    CScriptOp,
)

from channel.keys import (
    DelayedPubkey,
    FundingPubkey,
    HtlcPubkey,
    PaymentPubkey,
    Point,
    RevocationPubkey,
)
from channel.types import CommitmentFormat

__all__ = [
    "anchor_script",
    "funding_script",
    "hash160",
    "htlc_output_script",
    "offered_htlc_script",
    "p2wpkh",
    "p2wsh",
    "received_htlc_script",
    "ripemd160",
    "to_local_script",
    "to_remote_anchors_script",
    "to_remote_script_pubkey",
]


def _push(data: bytes) -> bytes:
    n = len(data)
    if n < 0x4C:
        return bytes((n,)) + data
    if n <= 0xFF:
        return b"\x4c" + bytes((n,)) + data
    return b"\x4d" + n.to_bytes(2, "little") + data


def _number(value: int) -> bytes:
    """Minimal script number push (``CScriptNum``): OP_0, OP_1..OP_16, else little-endian bytes
    with a sign bit."""
    if value == 0:
        return b"\x00"
    if 1 <= value <= 16:
        return bytes((0x50 + value,))
    if value < 0:
        raise ValueError("negative script numbers are not used in BOLT 3 scripts")
    size = (value.bit_length() + 8) // 8  # room for the sign bit
    return _push(value.to_bytes(size, "little"))


def _script(*parts: CScriptOp | int | bytes) -> bytes:
    """Serialize opcodes (``CScriptOp``), script numbers (``int``) and data pushes (``bytes``)."""
    out = bytearray()
    for part in parts:
        if isinstance(part, CScriptOp):
            out.append(int(part))
        elif isinstance(part, int):
            out += _number(part)
        else:
            out += _push(part)
    return bytes(out)


def ripemd160(data: bytes) -> bytes:
    """RIPEMD160(data)."""
    return hashlib.new("ripemd160", data).digest()


def hash160(data: bytes) -> bytes:
    """RIPEMD160(SHA256(data))."""
    return hashlib.new("ripemd160", hashlib.sha256(data).digest()).digest()


def p2wsh(witness_script: bytes) -> bytes:
    """P2WSH scriptPubKey: ``0 <SHA256(witness_script)>`` (``0020`` + 32 bytes)."""
    return b"\x00\x20" + hashlib.sha256(witness_script).digest()


def p2wpkh(pubkey: Point | bytes) -> bytes:
    """P2WPKH scriptPubKey: ``0 <HASH160(pubkey)>`` (``0014`` + 20 bytes)."""
    data = pubkey.data if isinstance(pubkey, Point) else pubkey
    if len(data) != 33:
        raise ValueError("p2wpkh: pubkey must be 33 bytes (compressed)")
    return b"\x00\x14" + hash160(data)


@functools.lru_cache(maxsize=1024)
def funding_script(pubkey_a: FundingPubkey, pubkey_b: FundingPubkey) -> bytes:
    """BOLT 3 "Funding Transaction Output": the 2-of-2, keys sorted (lexicographically)::

        2 <pubkey1> <pubkey2> 2 OP_CHECKMULTISIG

    Argument order does not matter; ``pubkey1`` is the lesser compressed encoding.
    """
    if pubkey_a.data == pubkey_b.data:
        raise ValueError("funding_script: the two funding pubkeys must differ")
    first, second = sorted((pubkey_a.data, pubkey_b.data))
    return _script(2, first, second, 2, OP_CHECKMULTISIG)


@functools.lru_cache(maxsize=4096)
def to_local_script(revocation_pubkey: RevocationPubkey, to_self_delay: int,
                    delayed_pubkey: DelayedPubkey) -> bytes:
    """BOLT 3 "to_local Output" (also the HTLC-success/-timeout output)::

        OP_IF
            <revocationpubkey>
        OP_ELSE
            `to_self_delay`
            OP_CHECKSEQUENCEVERIFY
            OP_DROP
            <local_delayedpubkey>
        OP_ENDIF
        OP_CHECKSIG

    Spent by the broadcaster with ``<local_delayedsig> <>`` and nSequence = to_self_delay, or by
    the countersignatory at once with ``<revocation_sig> 1``.
    """
    if not 0 < to_self_delay <= 0xFFFF:
        raise ValueError(f"to_self_delay out of range: {to_self_delay}")
    return _script(
        OP_IF,
        revocation_pubkey.data,
        OP_ELSE,
        to_self_delay, OP_CHECKSEQUENCEVERIFY, OP_DROP,
        delayed_pubkey.data,
        OP_ENDIF,
        OP_CHECKSIG,
    )


htlc_output_script = to_local_script
"""BOLT 3 "HTLC-Timeout and HTLC-Success Transactions": their single output has the to_local
shape (broadcaster's revocationpubkey, to_self_delay, broadcaster's delayed pubkey)."""


@functools.lru_cache(maxsize=1024)
def to_remote_anchors_script(remote_pubkey: PaymentPubkey) -> bytes:
    """BOLT 3 "to_remote Output" with ``option_anchors`` (P2WSH)::

        <remotepubkey> OP_CHECKSIGVERIFY 1 OP_CHECKSEQUENCEVERIFY

    Spent with ``<remote_sig>`` and nSequence >= 1.
    """
    return _script(remote_pubkey.data, OP_CHECKSIGVERIFY, 1, OP_CHECKSEQUENCEVERIFY)


def to_remote_script_pubkey(remote_pubkey: PaymentPubkey,
                            commitment_format: CommitmentFormat) -> bytes:
    """The to_remote scriptPubKey: P2WPKH(remotepubkey) for static_remotekey, else the
    P2WSH of :func:`to_remote_anchors_script`."""
    if commitment_format is CommitmentFormat.ANCHORS:
        return p2wsh(to_remote_anchors_script(remote_pubkey))
    return p2wpkh(remote_pubkey)


@functools.lru_cache(maxsize=1024)
def anchor_script(funding_pubkey: FundingPubkey) -> bytes:
    """BOLT 3 "to_local_anchor and to_remote_anchor Output (option_anchors)"::

        <local_funding_pubkey/remote_funding_pubkey> OP_CHECKSIG OP_IFDUP
        OP_NOTIF
            OP_16 OP_CHECKSEQUENCEVERIFY
        OP_ENDIF

    The owner spends with ``<sig>`` at once; anyone with ``<>`` after 16 blocks.
    """
    return _script(
        funding_pubkey.data, OP_CHECKSIG, OP_IFDUP,
        OP_NOTIF,
        OP_16, OP_CHECKSEQUENCEVERIFY,
        OP_ENDIF,
    )


def _anchors_csv(commitment_format: CommitmentFormat) -> list[CScriptOp | int]:
    if commitment_format is CommitmentFormat.ANCHORS:
        return [1, OP_CHECKSEQUENCEVERIFY, OP_DROP]
    return []


def _check_payment_hash(payment_hash: bytes) -> None:
    if len(payment_hash) != 32:
        raise ValueError("payment_hash must be 32 bytes")


@functools.lru_cache(maxsize=8192)
def offered_htlc_script(*, revocation_pubkey: RevocationPubkey,
                        broadcaster_htlc_pubkey: HtlcPubkey,
                        countersignatory_htlc_pubkey: HtlcPubkey,
                        payment_hash: bytes,
                        commitment_format: CommitmentFormat) -> bytes:
    """BOLT 3 "Offered HTLC Outputs" (an HTLC the broadcaster offered)::

        # To remote node with revocation key
        OP_DUP OP_HASH160 <RIPEMD160(SHA256(revocationpubkey))> OP_EQUAL
        OP_IF
            OP_CHECKSIG
        OP_ELSE
            <remote_htlcpubkey> OP_SWAP OP_SIZE 32 OP_EQUAL
            OP_NOTIF
                # To local node via HTLC-timeout transaction (timelocked).
                OP_DROP 2 OP_SWAP <local_htlcpubkey> 2 OP_CHECKMULTISIG
            OP_ELSE
                # To remote node with preimage.
                OP_HASH160 <RIPEMD160(payment_hash)> OP_EQUALVERIFY
                OP_CHECKSIG
            OP_ENDIF
            1 OP_CHECKSEQUENCEVERIFY OP_DROP      # option_anchors only
        OP_ENDIF
    """
    _check_payment_hash(payment_hash)
    return _script(
        OP_DUP, OP_HASH160, hash160(revocation_pubkey.data), OP_EQUAL,
        OP_IF,
        OP_CHECKSIG,
        OP_ELSE,
        countersignatory_htlc_pubkey.data, OP_SWAP, OP_SIZE, 32, OP_EQUAL,
        OP_NOTIF,
        OP_DROP, 2, OP_SWAP, broadcaster_htlc_pubkey.data, 2, OP_CHECKMULTISIG,
        OP_ELSE,
        OP_HASH160, ripemd160(payment_hash), OP_EQUALVERIFY,
        OP_CHECKSIG,
        OP_ENDIF,
        *_anchors_csv(commitment_format),
        OP_ENDIF,
    )


@functools.lru_cache(maxsize=8192)
def received_htlc_script(*, revocation_pubkey: RevocationPubkey,
                         broadcaster_htlc_pubkey: HtlcPubkey,
                         countersignatory_htlc_pubkey: HtlcPubkey,
                         payment_hash: bytes,
                         cltv_expiry: int,
                         commitment_format: CommitmentFormat) -> bytes:
    """BOLT 3 "Received HTLC Outputs" (an HTLC offered *to* the broadcaster)::

        # To remote node with revocation key
        OP_DUP OP_HASH160 <RIPEMD160(SHA256(revocationpubkey))> OP_EQUAL
        OP_IF
            OP_CHECKSIG
        OP_ELSE
            <remote_htlcpubkey> OP_SWAP OP_SIZE 32 OP_EQUAL
            OP_IF
                # To local node via HTLC-success transaction.
                OP_HASH160 <RIPEMD160(payment_hash)> OP_EQUALVERIFY
                2 OP_SWAP <local_htlcpubkey> 2 OP_CHECKMULTISIG
            OP_ELSE
                # To remote node after timeout.
                OP_DROP <cltv_expiry> OP_CHECKLOCKTIMEVERIFY OP_DROP
                OP_CHECKSIG
            OP_ENDIF
            1 OP_CHECKSEQUENCEVERIFY OP_DROP      # option_anchors only
        OP_ENDIF
    """
    _check_payment_hash(payment_hash)
    if not 0 <= cltv_expiry < 500_000_000:
        raise ValueError(f"cltv_expiry must be a block height: {cltv_expiry}")
    return _script(
        OP_DUP, OP_HASH160, hash160(revocation_pubkey.data), OP_EQUAL,
        OP_IF,
        OP_CHECKSIG,
        OP_ELSE,
        countersignatory_htlc_pubkey.data, OP_SWAP, OP_SIZE, 32, OP_EQUAL,
        OP_IF,
        OP_HASH160, ripemd160(payment_hash), OP_EQUALVERIFY,
        2, OP_SWAP, broadcaster_htlc_pubkey.data, 2, OP_CHECKMULTISIG,
        OP_ELSE,
        OP_DROP, cltv_expiry, OP_CHECKLOCKTIMEVERIFY, OP_DROP,
        OP_CHECKSIG,
        OP_ENDIF,
        *_anchors_csv(commitment_format),
        OP_ENDIF,
    )

