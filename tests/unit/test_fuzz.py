"""Fuzz every decoder a stranger can reach: only the declared exceptions, in bounded time.

Each target takes seeded inputs: valid encodings mutated (bit flips, byte changes,
truncations, insertions, length fields inflated to their maximum, BigSize prefixes planted,
TLV records appended, slices duplicated) and plain random bytes. A decoder may refuse an input
only with the exception its module declares (``MalformedMessage`` for the wire, TLVs, invoices,
tower messages and raw transactions; ``InvalidOnion`` for onions; ``HandshakeFailed`` for the
BOLT 8 acts); an ``IndexError``, ``ValueError``, ``struct.error``, ``OverflowError`` ... fails
the test with the seed and the input's hex. No input may take longer than ``MAX_SECONDS``.

The default run takes a few thousand inputs per target; ``pytest -m soak
tests/unit/test_fuzz.py`` runs 25 times as many.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import struct
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from bitcoin.core import COutPoint, CScript, CTransaction, CTxIn, CTxInWitness, CTxOut, CTxWitness
from bitcoin.core.script import CScriptWitness

from channel.bolt11 import Bolt11Invoice, Network, RouteHintHop, sign_invoice
from channel.codec import (
    ChainHashList,
    FixedBytes,
    Point,
    RawBytes,
    SignatureList16,
    TlvField,
    TruncatedUInt,
    UInt,
    VarBytes16,
    decode_bigsize,
    decode_tlv_stream,
    decode_truncated,
    encode_bigsize,
)
from channel.errors import HandshakeFailed, InvalidInvoice, InvalidOnion, MalformedMessage
from channel.keys import PrivateKey
from channel.messages import MESSAGE_TYPES, FeeRange, decode_message, encode_message
from channel.noise import InitiatorHandshake, NoiseSession, ResponderHandshake
from channel.onion import (
    HopPayload,
    OnionHop,
    PaymentData,
    build_onion,
    build_single_hop_onion,
    peel_onion,
)
from channel.tower import (
    HtlcJustice,
    JusticeKit,
    SignedUpload,
    TowerClient,
    decrypt_blob,
    encrypt_blob,
    scan_raw_transaction,
)
from channel.tower_wire import (
    TOWER_ACK,
    TOWER_UPLOAD,
    AckStatus,
    TowerAck,
    decode_tower_message,
    encode_tower_ack,
    encode_tower_upload,
)
from channel.types import CommitmentFormat, HtlcDirection
from channel.wire import Init, Message

QUICK = 2000
SOAK = 25 * QUICK
MAX_SECONDS = 0.25     # per input; a quadratic decoder took seconds on 65 kB

KEYS = [PrivateKey(bytes([i]) * 32) for i in range(1, 5)]
POINTS = [k.pubkey for k in KEYS]
#: TLV types worth planting: the known ones of every stream, their neighbours, huge ones.
TLV_TYPES = [0, 1, 2, 3, 4, 5, 6, 8, 10, 16, 18, 0xFC, 0xFD, 0x10000, 2**32, 2**64 - 1]


# -- mutation ---------------------------------------------------------------------------------


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One to eight structural mutations of ``data``."""
    b = bytearray(data)
    for _ in range(rng.choice([1, 1, 1, 2, 3, 8])):
        op = rng.randrange(9)
        pos = rng.randrange(len(b) + 1)
        if op == 0 and b:
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 2:
            del b[pos:]
        elif op == 3:
            b[pos:pos] = rng.randbytes(rng.randrange(1, 40))
        elif op == 4:
            # a u16 length field inflated to its maximum (or to zero)
            b[pos:pos + 2] = rng.choice([b"\xff\xff", b"\xff\xfe", b"\x00\x00", b"\x80\x00"])
        elif op == 5:
            # a BigSize/CompactSize prefix whose value overruns (or is not minimal)
            prefix = rng.choice([b"\xfd", b"\xfe", b"\xff"])
            b[pos:pos + 1] = prefix + rng.randbytes({b"\xfd": 2, b"\xfe": 4, b"\xff": 8}[prefix])
        elif op == 6:
            tlv_type = rng.choice(TLV_TYPES)
            value = rng.randbytes(rng.randrange(0, 40))
            length = len(value) + rng.choice([0, 0, 0, 1, -1, 1000])
            b += encode_bigsize(tlv_type) + encode_bigsize(max(length, 0)) + value
        elif op == 7 and b:
            start = rng.randrange(len(b))
            b[pos:pos] = b[start:start + rng.randrange(1, 64)]
        elif op == 8:
            b[pos:pos + 4] = rng.choice([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00"])
    return bytes(b)


def inputs(seed: str, count: int, corpus: list[bytes]) -> Iterator[bytes]:
    """``count`` inputs: mostly mutated corpus entries, some plain random bytes."""
    rng = random.Random(seed)
    for i in range(count):
        if i % 10 == 9:
            yield rng.randbytes(rng.randrange(0, 400))
        else:
            yield mutate(rng, rng.choice(corpus))


def exercise(name: str, target: Callable[[bytes], object], corpus: list[bytes], count: int,
             allowed: tuple[type[Exception], ...]) -> None:
    """Feed ``target`` every input; anything but ``allowed`` (or a slow input) fails."""
    for data in corpus:           # the corpus itself must decode
        target(data)
    worst = 0.0
    refused = 0
    for data in inputs(name, count, corpus):
        started = time.perf_counter()
        try:
            target(data)
        except allowed:
            refused += 1
        except Exception as exc:
            raise AssertionError(f"{name}: {type(exc).__name__}: {exc} on input "
                                 f"{data.hex()}") from exc
        worst = max(worst, time.perf_counter() - started)
    assert worst < MAX_SECONDS, f"{name}: an input took {worst:.3f} s"
    assert refused > count // 10, f"{name}: only {refused} inputs refused: mutations too weak"


# -- BOLT 1/2 messages --------------------------------------------------------------------------


def _field_value(rng: random.Random, codec: Any) -> Any:
    if isinstance(codec, UInt):
        return rng.getrandbits(8 * codec.width)
    if isinstance(codec, TruncatedUInt):
        return rng.getrandbits(8 * codec.max_bytes)
    if isinstance(codec, FixedBytes):
        return rng.randbytes(codec.size)
    if isinstance(codec, Point):
        return rng.choice(POINTS)
    if isinstance(codec, VarBytes16 | RawBytes):
        return rng.randbytes(rng.randrange(0, 40))
    if isinstance(codec, SignatureList16):
        return tuple(rng.randbytes(64) for _ in range(rng.randrange(0, 4)))
    if isinstance(codec, ChainHashList):
        return tuple(rng.randbytes(32) for _ in range(rng.randrange(0, 3)))
    raise AssertionError(f"no sample for {codec!r}")


def _tlv_value(rng: random.Random, field: TlvField) -> Any:
    """A value the record accepts and round-trips, found among typical shapes."""
    candidates: list[Any] = [
        FeeRange(min_fee_satoshis=100, max_fee_satoshis=2000), rng.choice(POINTS),
        rng.randbytes(8), rng.randbytes(32), (rng.randbytes(32),), b"", rng.randbytes(5),
        rng.randrange(1, 2**32), PaymentData(payment_secret=rng.randbytes(32), total_msat=9)]
    for value in candidates:
        try:
            field.check(field.name, value)
            if field.decode(field.encode(value)) == value:
                return value
        except MalformedMessage:
            continue
    raise AssertionError(f"no sample for TLV {field.name}")


def sample_message(rng: random.Random, cls: type[Message]) -> Message:
    """A valid ``cls`` with random fields and, half the time, every TLV record set."""
    kwargs = {name: _field_value(rng, codec) for name, codec in cls.FIELDS}
    if rng.random() < 0.5:
        kwargs.update({f.name: _tlv_value(rng, f) for f in cls.TLVS.values()})
    factory: Callable[..., Message] = cls
    return factory(**kwargs)


def _message_corpus() -> list[bytes]:
    rng = random.Random("messages")
    return [encode_message(sample_message(rng, cls))
            for cls in MESSAGE_TYPES.values() for _ in range(4)]


def _decode_message(data: bytes) -> None:
    message = decode_message(data)
    if isinstance(message, Message):
        # what decodes re-encodes to something that decodes to the same message
        assert decode_message(encode_message(message)) == message
    if isinstance(message, Init):
        message.combined_features()


def test_every_message_type_is_in_the_corpus() -> None:
    """The message corpus holds every BOLT 1, 2 and 7 type chanlab decodes."""
    types = {int.from_bytes(m[:2], "big") for m in _message_corpus()}
    assert types == set(MESSAGE_TYPES) and len(types) == 29


@pytest.mark.parametrize("msg_type", sorted(MESSAGE_TYPES))
def test_fuzz_decode_message(msg_type: int) -> None:
    """decode_message on mutations of each message type raises only MalformedMessage."""
    corpus = [m for m in _message_corpus() if int.from_bytes(m[:2], "big") == msg_type]
    exercise(f"decode_message {msg_type}", _decode_message, corpus, QUICK // 4,
             (MalformedMessage,))


# -- TLV streams and BigSize ----------------------------------------------------------------


def _tlv_maps() -> dict[str, Mapping[int, TlvField]]:
    from channel.onion import _PAYLOAD_TLVS
    maps: dict[str, Mapping[int, TlvField]] = {"none": {}, "hop_payload": _PAYLOAD_TLVS}
    for cls in MESSAGE_TYPES.values():
        if cls.TLVS:
            maps[cls.NAME] = cls.TLVS
    return maps


@pytest.mark.parametrize("stream", sorted(_tlv_maps()))
def test_fuzz_tlv_stream(stream: str) -> None:
    """decode_tlv_stream with each known record set raises only MalformedMessage."""
    known = _tlv_maps()[stream]
    exercise(f"tlv {stream}", lambda data: decode_tlv_stream(data, known), _tlv_corpus(stream),
             QUICK // 2, (MalformedMessage,))


def _tlv_corpus(stream: str) -> list[bytes]:
    """Valid streams of ``stream``'s known records, each present with probability 0.7."""
    known = _tlv_maps()[stream]
    rng = random.Random(stream)
    corpus = [b""]
    for _ in range(8):
        records = sorted({t: _tlv_value(rng, f) for t, f in known.items()
                          if rng.random() < 0.7}.items())
        corpus.append(b"".join(encode_bigsize(t) + encode_bigsize(len(v)) + v for t, v in
                               ((t, known[t].encode(value)) for t, value in records)))
    return corpus


def test_fuzz_bigsize_and_truncated_integers() -> None:
    """decode_bigsize and decode_truncated raise only MalformedMessage."""
    corpus = [encode_bigsize(v) for v in (0, 0xFC, 0xFD, 0xFFFF, 0x10000, 2**32, 2**64 - 1)]

    exercise("bigsize", decode_bigsize, corpus, QUICK, (MalformedMessage,))
    truncated = [v.to_bytes((v.bit_length() + 7) // 8, "big") for v in (0, 1, 0x100, 2**64 - 1)]
    exercise("tu64", lambda data: decode_truncated(data[:9], 8), truncated, QUICK,
             (MalformedMessage,))


# -- onions ---------------------------------------------------------------------------------

NODE_KEY = KEYS[0]
PAYMENT_HASH = hashlib.sha256(b"fuzz payment").digest()


def _payload_corpus() -> list[bytes]:
    data = PaymentData(payment_secret=b"\x55" * 32, total_msat=5_000_000)
    return [HopPayload(amt_to_forward=5_000_000, outgoing_cltv_value=700,
                       payment_data=data).encode(),
            HopPayload(amt_to_forward=1, outgoing_cltv_value=1, short_channel_id=b"\x01" * 8,
                       payment_metadata=b"meta").encode()]


def test_fuzz_hop_payload() -> None:
    """HopPayload.decode raises only MalformedMessage."""
    exercise("hop payload", HopPayload.decode, _payload_corpus(), QUICK, (MalformedMessage,))


def _peel(onion: bytes) -> None:
    peel_onion(onion=onion, node_key=NODE_KEY.secret, associated_data=PAYMENT_HASH)


def test_fuzz_peel_mutated_onion() -> None:
    """peel_onion on mutated packets (mostly a failed HMAC) raises only InvalidOnion."""
    corpus = [build_single_hop_onion(
        session_key=b"\x42" * 32, node_id=NODE_KEY.pubkey, amt_to_forward=5000,
        outgoing_cltv_value=700, payment_secret=b"\x55" * 32, total_msat=5000,
        payment_hash=PAYMENT_HASH)]
    exercise("onion", _peel, corpus, QUICK // 2, (InvalidOnion,))


def test_fuzz_peel_onion_with_valid_hmac_around_mutated_payloads() -> None:
    """Onions correctly wrapped around mutated hop payloads: the payload parser behind the
    HMAC raises only InvalidOnion too."""
    rng = random.Random("onion payloads")
    corpus = _payload_corpus()
    seen = 0
    for i in range(QUICK // 4):
        payload = mutate(rng, rng.choice(corpus)) or b"\x00"
        if len(payload) > 1200:
            continue
        onion = build_onion(session_key=hashlib.sha256(b"%d" % i).digest(),
                            hops=[OnionHop(node_id=NODE_KEY.pubkey, payload=payload)],
                            associated_data=PAYMENT_HASH)
        try:
            _peel(onion)
        except InvalidOnion:
            seen += 1
        except Exception as exc:
            raise AssertionError(f"{type(exc).__name__}: {exc} on payload {payload.hex()}"
                                 ) from exc
    assert seen > QUICK // 40


# -- invoices -------------------------------------------------------------------------------


def _invoice_corpus() -> list[bytes]:
    hint = (RouteHintHop(pubkey=POINTS[2], short_channel_id=bytes.fromhex("0000670000010001"),
                         fee_base_msat=1, fee_proportional_millionths=2, cltv_expiry_delta=3),)
    return [sign_invoice(node_secret=b"\x11" * 32, network=Network.REGTEST,
                         amount_msat=amount, timestamp=1_700_000_000,
                         payment_hash=PAYMENT_HASH, payment_secret=b"\x66" * 32,
                         description=d, route_hints=hints).encode().encode()
            for amount, d, hints in ((25_000_000, "", ()), (1, "coffee", (hint,)),
                                     (None, "é" * 20, ()))]


def _decode_invoice(data: bytes) -> None:
    Bolt11Invoice.decode(data.decode("latin-1"))


def test_fuzz_bolt11_invoice_text() -> None:
    """Bolt11Invoice.decode on mutated BOLT 11 invoices raises only InvalidInvoice."""
    exercise("invoice", _decode_invoice, _invoice_corpus(), QUICK, (InvalidInvoice,))


# -- the tower --------------------------------------------------------------------------------

BREACH_TXID = hashlib.sha256(b"breach").digest()


def _kit() -> JusticeKit:
    htlc = HtlcJustice(vout=2, direction=HtlcDirection.OFFERED, payment_hash=PAYMENT_HASH,
                       cltv_expiry=700, signature=b"\x01" * 64, second_stage_signature=None)
    return JusticeKit(
        commitment_format=CommitmentFormat.STATIC_REMOTEKEY, to_self_delay=144,
        feerate_per_kw=2000, destination_script_pubkey=b"\x00\x14" + b"\x22" * 20,
        revocation_pubkey=POINTS[0], broadcaster_delayed_pubkey=POINTS[1], to_local_vout=1,
        to_local_signature=b"\x02" * 64, broadcaster_htlc_pubkey=POINTS[2],
        countersignatory_htlc_pubkey=POINTS[3], htlcs=(htlc,))


def test_fuzz_justice_kit() -> None:
    """JusticeKit.from_bytes raises only MalformedMessage."""
    exercise("justice kit", JusticeKit.from_bytes, [_kit().to_bytes()], QUICK,
             (MalformedMessage,))


def test_fuzz_tower_messages_and_blobs() -> None:
    """decode_tower_message (upload and ack) and decrypt_blob raise only MalformedMessage."""
    client = TowerClient(KEYS[2])
    blob = encrypt_blob(_kit().to_bytes(), BREACH_TXID)
    upload = encode_tower_upload(client.upload(BREACH_TXID[:16], blob))
    ack = encode_tower_ack(TowerAck(hint=BREACH_TXID[:16], status=AckStatus.ACCEPTED,
                                    reason="stored"))
    assert struct.unpack(">H", upload[:2])[0] == TOWER_UPLOAD
    assert struct.unpack(">H", ack[:2])[0] == TOWER_ACK

    def target(data: bytes) -> None:
        if len(data) >= 2:
            message = decode_tower_message(struct.unpack(">H", data[:2])[0], data[2:])
            if isinstance(message, SignedUpload):
                plain = decrypt_blob(message.blob, BREACH_TXID)
                if plain is not None:
                    JusticeKit.from_bytes(plain)
        else:
            raise MalformedMessage("no type")

    exercise("tower wire", target, [upload, ack], QUICK, (MalformedMessage,))


def _raw_txs() -> list[bytes]:
    prevout = COutPoint(hashlib.sha256(b"spent").digest(), 3)
    witness = CTxWitness([CTxInWitness(CScriptWitness([b"\x30" * 71, b"\x02" * 33]))])
    segwit = CTransaction([CTxIn(prevout, CScript(b""), 0xFFFFFFFD)],
                          [CTxOut(50_000, CScript(b"\x00\x14" + b"\x33" * 20))] * 2, 0, 2,
                          witness)
    legacy = CTransaction([CTxIn(prevout, CScript(b"\x51" * 3), 0)] * 2,
                          [CTxOut(1, CScript(b"\x6a"))], 0, 1)
    return [segwit.serialize(), legacy.serialize()]


def test_fuzz_tower_raw_transaction_scanner() -> None:
    """scan_raw_transaction raises only MalformedMessage, and what it accepts bitcoinlib can
    deserialize to the same txid."""

    def target(data: bytes) -> None:
        txid, _ = scan_raw_transaction(data)
        assert txid == bytes(CTransaction.deserialize(data).GetTxid())

    exercise("raw tx", target, _raw_txs(), QUICK, (MalformedMessage,))


# -- BOLT 8 handshake ---------------------------------------------------------------------------

INITIATOR_KEY, RESPONDER_KEY = b"\x11" * 32, b"\x21" * 32
RESPONDER_PUB = PrivateKey(RESPONDER_KEY).pubkey


def _initiator() -> InitiatorHandshake:
    return InitiatorHandshake(local_static=INITIATOR_KEY, remote_static=RESPONDER_PUB,
                              ephemeral=b"\x12" * 32)


def _responder() -> ResponderHandshake:
    return ResponderHandshake(local_static=RESPONDER_KEY, ephemeral=b"\x22" * 32)


def _acts() -> tuple[bytes, bytes, bytes, NoiseSession]:
    initiator, responder = _initiator(), _responder()
    act_one = initiator.write_act_one()
    act_two = responder.read_act_one(act_one)
    act_three, session = initiator.read_act_two(act_two)
    responder.read_act_three(act_three)
    return act_one, act_two, act_three, session


def test_fuzz_handshake_act_one() -> None:
    """The responder reading a mutated act one raises only HandshakeFailed."""
    act_one = _acts()[0]
    exercise("act one", lambda d: _responder().read_act_one(d), [act_one], QUICK // 2,
             (HandshakeFailed,))


def test_fuzz_handshake_act_two() -> None:
    """The initiator reading a mutated act two raises only HandshakeFailed."""
    act_two = _acts()[1]

    def target(data: bytes) -> None:
        initiator = _initiator()
        initiator.write_act_one()
        initiator.read_act_two(data)

    exercise("act two", target, [act_two], QUICK // 2, (HandshakeFailed,))


def test_fuzz_handshake_act_three() -> None:
    """The responder reading a mutated act three raises only HandshakeFailed."""
    act_one, _, act_three, _ = _acts()

    def target(data: bytes) -> None:
        responder = _responder()
        responder.read_act_one(act_one)
        responder.read_act_three(data)

    exercise("act three", target, [act_three], QUICK // 2, (HandshakeFailed,))


def test_fuzz_transport_frames() -> None:
    """Mutated encrypted frames: decrypt_length/decrypt_message raise only MalformedMessage."""
    session = _acts()[3]
    frame = session.encrypt_message(b"\x00\x12" + bytes(10))

    def target(data: bytes) -> None:
        try:
            _receiver().decrypt_length(data[:18])
        finally:
            _receiver().decrypt_message(data)

    exercise("frames", target, [frame], QUICK, (MalformedMessage,))


def _receiver() -> NoiseSession:
    """A fresh copy of the responder's session (the handshake itself runs once)."""
    session = _RESPONDER_SESSION
    return NoiseSession(sending_key=session.sending.key, receiving_key=session.receiving.key,
                        chaining_key=session.receiving.chaining_key,
                        remote_static=session.remote_static)


def _responder_session() -> NoiseSession:
    initiator, responder = _initiator(), _responder()
    act_three, _ = initiator.read_act_two(responder.read_act_one(initiator.write_act_one()))
    return responder.read_act_three(act_three)


_RESPONDER_SESSION = _responder_session()


# -- the long version -------------------------------------------------------------------------


@pytest.mark.soak
@pytest.mark.parametrize("msg_type", sorted(MESSAGE_TYPES))
def test_soak_fuzz_decode_message(msg_type: int) -> None:
    """25 times the default number of mutated messages per type."""
    corpus = [m for m in _message_corpus() if int.from_bytes(m[:2], "big") == msg_type]
    exercise(f"soak decode_message {msg_type}", _decode_message, corpus, SOAK // 4,
             (MalformedMessage,))


@pytest.mark.soak
def test_soak_fuzz_other_decoders() -> None:
    """25 times the default inputs for the TLV streams, onions, invoices, tower and acts."""
    for stream, known in _tlv_maps().items():
        exercise(f"soak tlv {stream}", lambda d: decode_tlv_stream(d, known),  # noqa: B023
                 _tlv_corpus(stream), SOAK // 4, (MalformedMessage,))
    exercise("soak hop payload", HopPayload.decode, _payload_corpus(), SOAK,
             (MalformedMessage,))
    exercise("soak invoice", _decode_invoice, _invoice_corpus(), SOAK, (InvalidInvoice,))
    exercise("soak justice kit", JusticeKit.from_bytes, [_kit().to_bytes()], SOAK,
             (MalformedMessage,))
    exercise("soak raw tx", scan_raw_transaction, _raw_txs(), SOAK, (MalformedMessage,))
    act_one = _acts()[0]
    exercise("soak act one", lambda d: _responder().read_act_one(d), [act_one], SOAK // 4,
             (HandshakeFailed,))


def test_kit_fields_round_trip() -> None:
    """The fuzzing corpus kit is itself a valid kit (a corpus that fails proves nothing)."""
    kit = _kit()
    assert JusticeKit.from_bytes(kit.to_bytes()) == kit
    assert dataclasses.replace(kit, to_self_delay=145) != kit
