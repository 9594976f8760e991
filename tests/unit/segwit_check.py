"""Test helper: execute a segwit v0 input (P2WPKH / P2WSH) the way Bitcoin Core's policy does.

python-bitcoinlib 0.12.2's ``VerifyScript`` knows neither witnesses nor BIP 143 sighashes nor
OP_CHECKSEQUENCEVERIFY, so chanlab's unit tests check witnesses with this small interpreter of
the opcodes BOLT 3 scripts use. It enforces what a node enforces for these scripts: BIP 143
signatures (checked with libsecp256k1 through :func:`channel.keys.verify`, low-S), MINIMALIF,
NULLDUMMY, NULLFAIL, CLEANSTACK, BIP 65 (CLTV against nLockTime) and BIP 112 (CSV against the
input's nSequence and the tx version). Relative/absolute lock *satisfaction by the chain*
(BIP 68, nLockTime finality) is a block-level rule, checked by :func:`lock_satisfied`.
:func:`verify_input` also reports the sighash type of every signature that verified, so tests
can check e.g. that anchor HTLC txs carry SIGHASH_SINGLE|ANYONECANPAY from the peer.
"""

from __future__ import annotations

import hashlib

from bitcoin.core import CTransaction

from channel.keys import compact_signature, verify
from channel.scripts import hash160
from channel.transactions import segwit_v0_sighash


class ScriptFailed(AssertionError):
    """The input does not validate."""


_OP_0, _OP_PUSHDATA1, _OP_PUSHDATA2, _OP_1NEGATE = 0x00, 0x4C, 0x4D, 0x4F
_OP_IF, _OP_NOTIF, _OP_ELSE, _OP_ENDIF, _OP_VERIFY = 0x63, 0x64, 0x67, 0x68, 0x69
_OP_IFDUP, _OP_DROP, _OP_DUP, _OP_SWAP, _OP_SIZE = 0x73, 0x75, 0x76, 0x7C, 0x82
_OP_EQUAL, _OP_EQUALVERIFY, _OP_SHA256, _OP_HASH160 = 0x87, 0x88, 0xA8, 0xA9
_OP_CHECKSIG, _OP_CHECKSIGVERIFY, _OP_CHECKMULTISIG = 0xAC, 0xAD, 0xAE
_OP_CLTV, _OP_CSV = 0xB1, 0xB2
_SEQUENCE_DISABLE = 1 << 31
_SEQUENCE_TYPE = 1 << 22
_SEQUENCE_MASK = 0xFFFF


def _parse(script: bytes) -> list[int | bytes]:
    ops: list[int | bytes] = []
    i = 0
    while i < len(script):
        op = script[i]
        i += 1
        if op == _OP_0:
            ops.append(b"")
        elif op < _OP_PUSHDATA1:
            ops.append(script[i:i + op])
            i += op
        elif op == _OP_PUSHDATA1:
            n = script[i]
            ops.append(script[i + 1:i + 1 + n])
            i += 1 + n
        elif op == _OP_PUSHDATA2:
            n = int.from_bytes(script[i:i + 2], "little")
            ops.append(script[i + 2:i + 2 + n])
            i += 2 + n
        elif op == _OP_1NEGATE:
            ops.append(b"\x81")
        elif 0x51 <= op <= 0x60:
            ops.append(bytes((op - 0x50,)))
        else:
            ops.append(op)
        if i > len(script):
            raise ScriptFailed("push past the end of the script")
    return ops


def _num(data: bytes, max_len: int = 4) -> int:
    if len(data) > max_len:
        raise ScriptFailed(f"script number longer than {max_len} bytes")
    if not data:
        return 0
    if data[-1] & 0x7F == 0 and (len(data) == 1 or not data[-2] & 0x80):
        raise ScriptFailed("non-minimal script number")
    value = int.from_bytes(data, "little")
    if data[-1] & 0x80:
        return -(value & ~(0x80 << (8 * (len(data) - 1))))
    return value


def _encode_num(value: int) -> bytes:
    if value == 0:
        return b""
    out = bytearray(abs(value).to_bytes((abs(value).bit_length() + 7) // 8 + 1, "little"))
    while len(out) > 1 and out[-1] == 0 and not out[-2] & 0x80:
        out.pop()
    if value < 0:
        out[-1] |= 0x80
    return bytes(out)


def _true(data: bytes) -> bool:
    for i, byte in enumerate(data):
        if byte:
            return not (i == len(data) - 1 and byte == 0x80)
    return False


class _Checker:
    def __init__(self, tx: CTransaction, index: int, script_code: bytes, amount_sat: int) -> None:
        self.tx, self.index, self.script_code, self.amount = tx, index, script_code, amount_sat
        self.sighash_types: list[int] = []

    def sig_ok(self, signature: bytes, pubkey: bytes, *, nullfail: bool = True) -> bool:
        if not signature:
            return False
        digest = segwit_v0_sighash(self.tx, self.index, self.script_code, self.amount,
                                   signature[-1])
        try:
            compact = compact_signature(signature[:-1])
        except ValueError:
            raise ScriptFailed("signature is not DER") from None
        if len(pubkey) != 33:
            raise ScriptFailed("segwit v0 requires compressed public keys")
        if not verify(pubkey, digest, compact):
            if nullfail:
                raise ScriptFailed("NULLFAIL: a non-empty signature does not verify")
            return False
        self.sighash_types.append(signature[-1])
        return True

    def cltv(self, value: int) -> None:
        locktime = int(self.tx.nLockTime)
        if value < 0 or (value < 500_000_000) != (locktime < 500_000_000) or value > locktime:
            raise ScriptFailed(f"CHECKLOCKTIMEVERIFY {value} against nLockTime {locktime}")
        if self.tx.vin[self.index].nSequence == 0xFFFFFFFF:
            raise ScriptFailed("CHECKLOCKTIMEVERIFY with a final input sequence")

    def csv(self, value: int) -> None:
        if value < 0:
            raise ScriptFailed("negative CHECKSEQUENCEVERIFY")
        if value & _SEQUENCE_DISABLE:
            return
        sequence = int(self.tx.vin[self.index].nSequence)
        if self.tx.nVersion < 2 or sequence & _SEQUENCE_DISABLE:
            raise ScriptFailed("CHECKSEQUENCEVERIFY needs tx version 2 and BIP 68 enabled")
        if (value & _SEQUENCE_TYPE) != (sequence & _SEQUENCE_TYPE) or \
                (value & _SEQUENCE_MASK) > (sequence & _SEQUENCE_MASK):
            raise ScriptFailed(f"CHECKSEQUENCEVERIFY {value} against nSequence {sequence}")


def _execute(script: bytes, stack: list[bytes], checker: _Checker) -> list[bytes]:
    executing: list[bool] = []
    for op in _parse(script):
        active = all(executing)
        if isinstance(op, bytes):
            if active:
                stack.append(op)
            continue
        if op in (_OP_IF, _OP_NOTIF):
            value = False
            if active:
                if not stack:
                    raise ScriptFailed("IF on an empty stack")
                top = stack.pop()
                if top not in (b"", b"\x01"):
                    raise ScriptFailed("MINIMALIF: IF argument must be empty or 0x01")
                value = (top == b"\x01") == (op == _OP_IF)
            executing.append(value)
            continue
        if op == _OP_ELSE:
            if not executing:
                raise ScriptFailed("ELSE without IF")
            executing[-1] = not executing[-1]
            continue
        if op == _OP_ENDIF:
            if not executing:
                raise ScriptFailed("ENDIF without IF")
            executing.pop()
            continue
        if not active:
            continue
        _step(op, stack, checker)
    if executing:
        raise ScriptFailed("unbalanced IF")
    return stack


def _need(stack: list[bytes], n: int) -> None:
    if len(stack) < n:
        raise ScriptFailed("stack underflow")


def _step(op: int, stack: list[bytes], checker: _Checker) -> None:
    if op == _OP_VERIFY:
        _need(stack, 1)
        if not _true(stack.pop()):
            raise ScriptFailed("VERIFY failed")
    elif op == _OP_IFDUP:
        _need(stack, 1)
        if _true(stack[-1]):
            stack.append(stack[-1])
    elif op == _OP_DROP:
        _need(stack, 1)
        stack.pop()
    elif op == _OP_DUP:
        _need(stack, 1)
        stack.append(stack[-1])
    elif op == _OP_SWAP:
        _need(stack, 2)
        stack[-1], stack[-2] = stack[-2], stack[-1]
    elif op == _OP_SIZE:
        _need(stack, 1)
        stack.append(_encode_num(len(stack[-1])))
    elif op in (_OP_EQUAL, _OP_EQUALVERIFY):
        _need(stack, 2)
        equal = stack.pop() == stack.pop()
        if op == _OP_EQUALVERIFY:
            if not equal:
                raise ScriptFailed("EQUALVERIFY failed")
        else:
            stack.append(b"\x01" if equal else b"")
    elif op == _OP_SHA256:
        _need(stack, 1)
        stack.append(hashlib.sha256(stack.pop()).digest())
    elif op == _OP_HASH160:
        _need(stack, 1)
        stack.append(hash160(stack.pop()))
    elif op in (_OP_CHECKSIG, _OP_CHECKSIGVERIFY):
        _need(stack, 2)
        pubkey, signature = stack.pop(), stack.pop()
        ok = checker.sig_ok(signature, pubkey)
        if op == _OP_CHECKSIGVERIFY:
            if not ok:
                raise ScriptFailed("CHECKSIGVERIFY failed")
        else:
            stack.append(b"\x01" if ok else b"")
    elif op == _OP_CHECKMULTISIG:
        _need(stack, 1)
        n = _num(stack.pop())
        _need(stack, n + 1)
        pubkeys = [stack.pop() for _ in range(n)]
        m = _num(stack.pop())
        _need(stack, m + 1)
        signatures = [stack.pop() for _ in range(m)]
        if stack.pop() != b"":
            raise ScriptFailed("NULLDUMMY: CHECKMULTISIG dummy must be empty")
        keys = iter(pubkeys)
        ok = all(any(checker.sig_ok(sig, key, nullfail=False) for key in keys)
                 for sig in signatures)
        if not ok and any(signatures):
            raise ScriptFailed("NULLFAIL: CHECKMULTISIG failed with non-empty signatures")
        stack.append(b"\x01" if ok else b"")
    elif op == _OP_CLTV:
        _need(stack, 1)
        checker.cltv(_num(stack[-1], 5))
    elif op == _OP_CSV:
        _need(stack, 1)
        checker.csv(_num(stack[-1], 5))
    else:
        raise ScriptFailed(f"opcode 0x{op:02x} not supported by this checker")


def verify_input(tx: CTransaction, index: int, spent_script_pubkey: bytes,
                 amount_sat: int) -> list[int]:
    """Raise :class:`ScriptFailed` unless input ``index`` of ``tx`` validly spends an output
    ``spent_script_pubkey`` worth ``amount_sat`` (P2WPKH or P2WSH).

    Returns the sighash type of each signature that verified, in the order the script checked
    them.
    """
    if tx.wit.is_null() or index >= len(tx.wit.vtxinwit):
        raise ScriptFailed("no witness")
    witness = [bytes(x) for x in tx.wit.vtxinwit[index].scriptWitness.stack]
    if len(tx.vin[index].scriptSig) != 0:
        raise ScriptFailed("native segwit inputs have an empty scriptSig")
    spk = spent_script_pubkey
    if len(spk) == 22 and spk[:2] == b"\x00\x14":
        if len(witness) != 2 or hash160(witness[1]) != spk[2:]:
            raise ScriptFailed("P2WPKH witness must be <sig> <pubkey> of the hashed key")
        script = b"\x76\xa9\x14" + spk[2:] + b"\x88\xac"
        stack = witness
    elif len(spk) == 34 and spk[:2] == b"\x00\x20":
        if not witness or hashlib.sha256(witness[-1]).digest() != spk[2:]:
            raise ScriptFailed("P2WSH witness script does not hash to the program")
        script = witness[-1]
        stack = witness[:-1]
    else:
        raise ScriptFailed("not a segwit v0 scriptPubKey")
    for item in stack:
        if len(item) > 520:
            raise ScriptFailed("witness item over 520 bytes")
    checker = _Checker(tx, index, script, amount_sat)
    result = _execute(script, list(stack), checker)
    if len(result) != 1 or not _true(result[0]):
        raise ScriptFailed(f"CLEANSTACK: script left {len(result)} items / false")
    return checker.sighash_types


def verify_spends(tx: CTransaction, parents: dict[bytes, CTransaction]) -> None:
    """Check every input of ``tx`` against the parent transactions (keyed by txid)."""
    for i, txin in enumerate(tx.vin):
        parent = parents.get(bytes(txin.prevout.hash))
        if parent is None:
            raise ScriptFailed(f"input {i}: parent tx not given")
        out = parent.vout[txin.prevout.n]
        verify_input(tx, i, bytes(out.scriptPubKey), int(out.nValue))


def lock_satisfied(tx: CTransaction, *, tip_height: int,
                   parent_heights: dict[bytes, int | None]) -> bool:
    """Would bitcoind accept ``tx`` into its mempool at ``tip_height`` (nLockTime and BIP 68)?

    ``parent_heights``: confirmation height of each parent (None: unconfirmed, in the mempool).
    """
    next_height = tip_height + 1
    locktime = int(tx.nLockTime)
    if locktime and any(i.nSequence != 0xFFFFFFFF for i in tx.vin) and \
            locktime < 500_000_000 and locktime >= next_height:
        return False
    if tx.nVersion < 2:
        return True
    for txin in tx.vin:
        sequence = int(txin.nSequence)
        if sequence & _SEQUENCE_DISABLE:
            continue
        if sequence & _SEQUENCE_TYPE:
            raise ScriptFailed("time-based relative locks are not used here")
        delay = sequence & _SEQUENCE_MASK
        if delay == 0:
            continue
        height = parent_heights.get(bytes(txin.prevout.hash))
        if height is None or height + delay > next_height:
            return False
    return True
