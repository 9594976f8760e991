"""BOLT 11 invoices: read, verify, sign and write ``lnbc…`` / ``lnbcrt…`` payment requests.

Pure (no clock: the caller passes ``timestamp`` and ``now``). An invoice is bech32 text
(:mod:`channel.bech32`, no 90-character limit)::

    hrp  = "ln" + currency (bc, tb, tbs, bcrt) + optional amount in bitcoin (m u n p multipliers)
    data = timestamp (35 bits) || tagged fields || signature (64-byte r||s + recovery id)
    tagged field = type (5 bits) || data_length (10 bits, in 5-bit words) || data

The node signs SHA256(hrp as UTF-8 || data without the signature, repacked to bytes and
zero-padded) with its node key; the payer recovers the node id from the signature, or checks it
against the ``n`` field when there is one (then S must be low).

A :class:`Bolt11Invoice` *is* its signed parts (``hrp``, ``timestamp``, ``tagged_fields``,
``signature``): every other attribute is read from them when the object is built, so an invoice
object never says anything its signature does not cover, and :meth:`Bolt11Invoice.encode` gives
back the exact text it was decoded from (in lower case). Fields a reader must skip (unknown
types, fallbacks of unknown version) stay in ``tagged_fields`` and are listed in
``skipped_fields`` with the reason.

Spec conflict, resolved for the examples: since bolts#1243 the reader requirements say a
``p``/``h``/``s``/``n`` field of the wrong ``data_length`` MUST fail the payment, yet the spec's
example "including fields which must be ignored" (still listed as valid) expects them skipped.
We skip them, as the example does; the invoice must still have a valid ``p`` and ``s``.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Final

import coincurve

from channel.bech32 import (
    CHARSET,
    Bech32Error,
    base58check,
    bech32_decode,
    bech32_encode,
    bytes_to_words,
    segwit_address,
    words_to_bytes,
    words_to_int,
)
from channel.errors import InvalidInvoice
from channel.keys import verify
from channel.wire import FEATURE_DEPENDENCIES, Feature, Features, incompatible_bits

__all__ = [
    "DEFAULT_EXPIRY_SECONDS",
    "DEFAULT_FIELD_ORDER",
    "DEFAULT_MAX_FINAL_CLTV_EXPIRY_DELTA",
    "DEFAULT_MIN_FINAL_CLTV_EXPIRY_DELTA",
    "INVOICE_FEATURES",
    "Bolt11Invoice",
    "FallbackAddress",
    "Network",
    "RouteHint",
    "RouteHintHop",
    "SkippedField",
    "TaggedField",
    "amount_to_hrp",
    "check_payable",
    "invoice_fields",
    "sign_invoice",
    "sign_tagged_fields",
]

#: BOLT 11 ``x``: an invoice without it expires 3600 s after its timestamp.
DEFAULT_EXPIRY_SECONDS: Final = 3600
#: BOLT 11 ``c``: without it the payer gives the final HTLC at least 18 blocks.
DEFAULT_MIN_FINAL_CLTV_EXPIRY_DELTA: Final = 18
#: The largest ``c`` a payer accepts by default: two weeks of blocks (Electrum allows 4032).
DEFAULT_MAX_FINAL_CLTV_EXPIRY_DELTA: Final = 2016
#: The ``9`` field chanlab writes: ``var_onion_optin`` and ``payment_secret``, both required.
#: BOLT 9 says every node assumes them, but Electrum refuses to pay an invoice that omits them.
INVOICE_FEATURES: Final = Features.of(required=[Feature.VAR_ONION_OPTIN, Feature.PAYMENT_SECRET])
#: Where :func:`invoice_fields` puts each field type (a tag missing from a caller's order goes
#: after the listed ones, in this order). Repeated ``f``/``r`` fields keep their list order.
DEFAULT_FIELD_ORDER: Final = "psdhxcnmfr9"

_N: Final = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
_TIMESTAMP_WORDS: Final = 7
_SIGNATURE_WORDS: Final = 104  # 65 bytes = 520 bits
_MAX_DATA_WORDS: Final = 1023  # data_length is 10 bits
_MAX_AMOUNT_MSAT: Final = 21_000_000 * 100_000_000 * 1000
#: Fields whose ``data_length`` is fixed; one of another length is skipped (module docstring).
_FIXED_WORDS: Final = {"p": 52, "s": 52, "h": 52, "n": 53}
#: Fields that count once: a repeat is skipped ("the most-preferred field first").
_SINGLE_TAGS: Final = frozenset("psdhnxc9m")
#: BOLT 9 features marked for invoices (context 9): a required bit outside these fails.
_KNOWN_INVOICE_FEATURES: Final = frozenset({
    Feature.VAR_ONION_OPTIN, Feature.PAYMENT_SECRET, Feature.BASIC_MPP,
    Feature.OPTION_ROUTE_BLINDING, Feature.OPTION_PAYMENT_METADATA,
})
#: msat per unit of the hrp amount as (numerator, denominator): ``p`` is a tenth of a msat.
_MSAT_PER_UNIT: Final = {"": (10**11, 1), "m": (10**8, 1), "u": (10**5, 1), "n": (100, 1),
                         "p": (1, 10)}
_AMOUNT_RE: Final = re.compile(r"([1-9][0-9]{0,24})([munp]?)")


class Network(enum.Enum):
    """The currency an invoice is for; the value is the hrp's currency (after ``ln``)."""

    MAINNET = "bc"
    TESTNET = "tb"
    SIGNET = "tbs"
    REGTEST = "bcrt"

    @property
    def hrp_prefix(self) -> str:
        """``lnbc``, ``lntb``, ``lntbs`` or ``lnbcrt``."""
        return "ln" + self.value

    @property
    def segwit_hrp(self) -> str:
        """The hrp of this chain's segwit addresses (signet shares testnet's ``tb``)."""
        return {"tbs": "tb"}.get(self.value, self.value)


_NETWORKS_LONGEST_FIRST: Final = sorted(Network, key=lambda n: -len(n.value))


def amount_to_hrp(amount_msat: int) -> str:
    """The shortest hrp amount for ``amount_msat`` (BOLT 11: use the largest multiplier).

    >>> amount_to_hrp(250_000_000), amount_to_hrp(967_878_534)
    ('2500u', '9678785340p')
    """
    if not 0 < amount_msat <= _MAX_AMOUNT_MSAT:
        raise ValueError(f"amount_to_hrp: amount_msat {amount_msat} out of range")
    for multiplier, (numerator, denominator) in _MSAT_PER_UNIT.items():
        if amount_msat * denominator % numerator == 0:
            return f"{amount_msat * denominator // numerator}{multiplier}"
    raise AssertionError("unreachable: every msat amount is a whole number of tenths")


def _read_hrp(hrp: str) -> tuple[Network, int | None]:
    """BOLT 11 "Human-Readable Part": the network and the amount in msat (None: any amount)."""
    if not hrp.startswith("ln"):
        raise InvalidInvoice(f"not a Lightning invoice: prefix {hrp[:6]!r} does not start "
                             "with 'ln'")
    rest = hrp[2:]
    # longest first: 'bcrt' also starts with 'bc', 'tbs' with 'tb'
    network = next((n for n in _NETWORKS_LONGEST_FIRST if rest.startswith(n.value)), None)
    if network is None:
        raise InvalidInvoice(f"unknown currency in prefix {hrp!r}: expected lnbc, lntb, lntbs "
                             "or lnbcrt")
    amount = rest[len(network.value):]
    if not amount:
        return network, None
    match = _AMOUNT_RE.fullmatch(amount)
    if match is None:
        raise InvalidInvoice(f"invalid amount {amount!r}: expected digits (no leading 0) and "
                             "an optional multiplier m, u, n or p")
    numerator, denominator = _MSAT_PER_UNIT[match.group(2)]
    value = int(match.group(1)) * numerator
    if value % denominator:
        raise InvalidInvoice(f"amount {amount!r} is a fraction of a msat (a 'p' amount must "
                             "end in 0)")
    if value // denominator > _MAX_AMOUNT_MSAT:
        raise InvalidInvoice(f"amount {amount!r} is more than 21 million bitcoin")
    return network, value // denominator


# ---------------------------------------------------------------------------------------------
# Field values


@dataclass(frozen=True, slots=True)
class TaggedField:
    """One tagged field as signed: its type (a bech32 character) and its 5-bit data words."""

    tag: str
    data: tuple[int, ...]

    def __post_init__(self) -> None:
        if len(self.tag) != 1 or self.tag not in CHARSET:
            raise ValueError(f"TaggedField: tag {self.tag!r} is not one bech32 character")
        if len(self.data) > _MAX_DATA_WORDS or (
                self.data and not (0 <= min(self.data) and max(self.data) < 32)):
            raise ValueError("TaggedField: data must be at most 1023 five-bit words")

    @classmethod
    def of_bytes(cls, tag: str, data: bytes) -> TaggedField:
        """A field holding bytes, zero-padded to whole words."""
        return cls(tag, tuple(bytes_to_words(data)))

    @classmethod
    def of_int(cls, tag: str, value: int) -> TaggedField:
        """A field holding an unsigned integer in the fewest words (no leading zero word)."""
        if value < 0:
            raise ValueError("TaggedField.of_int: value must not be negative")
        words: list[int] = []
        while value:
            value, word = divmod(value, 32)
            words.insert(0, word)
        return cls(tag, tuple(words))

    def words(self) -> list[int]:
        """Type, 10-bit ``data_length`` and data, as they appear in the data part."""
        length = len(self.data)
        return [CHARSET.index(self.tag), length >> 5, length & 31, *self.data]


@dataclass(frozen=True, slots=True)
class SkippedField:
    """A field the reader skipped, kept for display, with the rule that made it skip."""

    field: TaggedField
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class RouteHintHop:
    """One channel of a BOLT 11 ``r`` route: the channel that starts at node ``pubkey``.

    ``fee_base_msat``, ``fee_proportional_millionths`` and ``cltv_expiry_delta`` are that
    channel's, as its ``channel_update`` (BOLT 7) would give them. ``short_channel_id`` is the
    8 wire bytes (a real scid or an alias).
    """

    pubkey: bytes
    short_channel_id: bytes
    fee_base_msat: int
    fee_proportional_millionths: int
    cltv_expiry_delta: int

    SIZE: ClassVar[int] = 51

    def __post_init__(self) -> None:
        if len(self.pubkey) != 33 or len(self.short_channel_id) != 8:
            raise ValueError("RouteHintHop: pubkey 33 bytes, short_channel_id 8 bytes")
        if not (0 <= self.fee_base_msat < 1 << 32 and 0 <= self.fee_proportional_millionths
                < 1 << 32 and 0 <= self.cltv_expiry_delta < 1 << 16):
            raise ValueError("RouteHintHop: fees must fit u32, cltv_expiry_delta u16")

    def to_bytes(self) -> bytes:
        return (self.pubkey + self.short_channel_id + self.fee_base_msat.to_bytes(4, "big")
                + self.fee_proportional_millionths.to_bytes(4, "big")
                + self.cltv_expiry_delta.to_bytes(2, "big"))

    @classmethod
    def from_bytes(cls, data: bytes) -> RouteHintHop:
        return cls(pubkey=data[:33], short_channel_id=data[33:41],
                   fee_base_msat=int.from_bytes(data[41:45], "big"),
                   fee_proportional_millionths=int.from_bytes(data[45:49], "big"),
                   cltv_expiry_delta=int.from_bytes(data[49:51], "big"))

    @property
    def short_channel_id_text(self) -> str:
        """``BLOCKxTXxOUTPUT``, as people write a short channel id."""
        value = int.from_bytes(self.short_channel_id, "big")
        return f"{value >> 40}x{(value >> 16) & 0xFFFFFF}x{value & 0xFFFF}"


#: One ``r`` field: hops ordered from a public node towards the payee.
RouteHint = tuple[RouteHintHop, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class FallbackAddress:
    """A BOLT 11 ``f`` field: an on-chain address to pay if Lightning fails.

    ``version`` 0-16 is a witness version with ``program`` its witness program; 17 is P2PKH and
    18 is P2SH, with ``program`` the 20-byte hash.
    """

    version: int
    program: bytes

    def __post_init__(self) -> None:
        problem = _fallback_problem(self.version, self.program)
        if problem:
            raise ValueError(f"FallbackAddress: {problem}")

    @property
    def kind(self) -> str:
        """p2pkh, p2sh, p2wpkh, p2wsh, p2tr or witness_v<N>."""
        if self.version in (17, 18):
            return "p2pkh" if self.version == 17 else "p2sh"
        return {(0, 20): "p2wpkh", (0, 32): "p2wsh", (1, 32): "p2tr"}.get(
            (self.version, len(self.program)), f"witness_v{self.version}")

    def address(self, network: Network) -> str:
        """The address as a wallet shows it (base58check, or bech32/bech32m for segwit)."""
        mainnet = network is Network.MAINNET
        if self.version == 17:
            return base58check(bytes([0x00 if mainnet else 0x6F]) + self.program)
        if self.version == 18:
            return base58check(bytes([0x05 if mainnet else 0xC4]) + self.program)
        return segwit_address(network.segwit_hrp, self.version, self.program)

    def to_field(self) -> TaggedField:
        return TaggedField("f", (self.version, *bytes_to_words(self.program)))


def _fallback_problem(version: int, program: bytes) -> str | None:
    if version in (17, 18):
        return None if len(program) == 20 else f"version {version} needs a 20-byte hash"
    if not 0 <= version <= 16:
        return f"version {version} is unknown"
    if version == 0 and len(program) not in (20, 32):
        return "a version 0 witness program is 20 or 32 bytes"
    return None if 2 <= len(program) <= 40 else "a witness program is 2 to 40 bytes"


# ---------------------------------------------------------------------------------------------
# The invoice


def _timestamp_words(timestamp: int) -> list[int]:
    return [(timestamp >> 5 * (6 - i)) & 31 for i in range(_TIMESTAMP_WORDS)]


def _signing_hash(hrp: str, timestamp: int, tagged_fields: Iterable[TaggedField]) -> bytes:
    """SHA256(hrp || data part without the signature, 5-bit words repacked, zero-padded)."""
    words = _timestamp_words(timestamp) + [w for f in tagged_fields for w in f.words()]
    return _signing_hash_of_words(hrp, words)


def _signing_hash_of_words(hrp: str, words: Sequence[int]) -> bytes:
    return hashlib.sha256(hrp.encode() + words_to_bytes(words, pad=True)).digest()


def _split_fields(words: Sequence[int]) -> tuple[TaggedField, ...]:
    """The tagged fields between the timestamp and the signature, in order."""
    fields: list[TaggedField] = []
    i = 0
    while i < len(words):
        if i + 3 > len(words):
            raise InvalidInvoice("a tagged field is cut short: no room for its type and length")
        tag, length = CHARSET[words[i]], words[i + 1] << 5 | words[i + 2]
        data = tuple(words[i + 3:i + 3 + length])
        if len(data) != length:
            raise InvalidInvoice(f"tagged field '{tag}' claims {length} words but only "
                                 f"{len(data)} remain before the signature")
        fields.append(_read_field(tag, data))
        i += 3 + length
    return tuple(fields)


def _read_field(tag: str, data: tuple[int, ...]) -> TaggedField:
    # read from bech32 words (each 0-31) after a 10-bit data_length: TaggedField's checks
    # hold by construction, and decoding is the payer's hot spot
    tagged = object.__new__(TaggedField)
    object.__setattr__(tagged, "tag", tag)
    object.__setattr__(tagged, "data", data)
    return tagged


def _minimal_int(tagged: TaggedField, what: str) -> int:
    """``x`` / ``c`` value; BOLT 11: a leading zero word SHOULD make the invoice invalid."""
    if tagged.data and tagged.data[0] == 0:
        raise InvalidInvoice(f"{what} ('{tagged.tag}' field) is not minimally encoded "
                             "(it starts with a zero word)")
    value = words_to_int(tagged.data)
    if value >= 1 << 64:
        raise InvalidInvoice(f"{what} ('{tagged.tag}' field) does not fit 64 bits")
    return value


def _read_features(tagged: TaggedField | None) -> Features:
    """BOLT 11 ``9``: bit 0 is the least significant bit of the field's last word."""
    if tagged is None:
        return Features()
    if tagged.data and tagged.data[0] == 0:
        raise InvalidInvoice("features ('9' field) are not minimally encoded (leading zero word)")
    value = words_to_int(tagged.data)
    features = Features(bits=frozenset(b for b in range(value.bit_length()) if value >> b & 1))
    known_even = {int(f) for f in _KNOWN_INVOICE_FEATURES}
    unknown_even = sorted(b for b in features.bits if b % 2 == 0 and b not in known_even)
    if unknown_even:
        raise InvalidInvoice(f"invoice requires unknown feature bit(s) {unknown_even}: "
                             "no payer that lacks them may pay it")
    for feature, needed in FEATURE_DEPENDENCIES.items():
        if features.offers(feature) and not features.offers(needed):
            raise InvalidInvoice(f"features set {feature.name.lower()} without "
                                 f"{needed.name.lower()}, which it depends on (BOLT 9)")
    return features


def _read_route_hint(tagged: TaggedField) -> RouteHint:
    raw = words_to_bytes(tagged.data)
    if not raw or len(raw) % RouteHintHop.SIZE or len(tagged.data) * 5 - len(raw) * 8 >= 5:
        raise InvalidInvoice(f"route hint ('r' field) of {len(raw)} bytes is not a whole "
                             "number of 51-byte hops")
    return tuple(RouteHintHop.from_bytes(raw[k:k + RouteHintHop.SIZE])
                 for k in range(0, len(raw), RouteHintHop.SIZE))


def _recover_payee(digest: bytes, signature: bytes, n_field: bytes | None) -> bytes:
    """BOLT 11: check the signature against ``n`` (low-S required), else recover the key."""
    if signature[64] > 3:
        raise InvalidInvoice(f"signature recovery id {signature[64]} is not 0-3")
    if n_field is not None:
        if int.from_bytes(signature[32:64], "big") > _N // 2:
            raise InvalidInvoice("high-S signature with an 'n' field: BOLT 11 requires low-S "
                                 "when the payee node id is given")
        if not verify(n_field, digest, signature[:64]):
            raise InvalidInvoice("signature does not match the payee node id in the 'n' field")
        return n_field
    try:
        key = coincurve.PublicKey.from_signature_and_message(signature, digest, hasher=None)
    except ValueError as exc:
        raise InvalidInvoice("signature is not recoverable: no public key fits it") from exc
    return key.format(compressed=True)


def _sort_fields(tagged_fields: Iterable[TaggedField]) -> tuple[
        dict[str, TaggedField], list[RouteHint], list[FallbackAddress], list[SkippedField]]:
    """The first valid field of each single type; route hints; fallbacks; skipped fields.

    BOLT 11 reader: skip unknown types and ``f`` of unknown version; we also skip ``p``,
    ``h``, ``s``, ``n`` of the wrong length (module docstring) and repeats of single fields.
    """
    single: dict[str, TaggedField] = {}
    hints: list[RouteHint] = []
    fallbacks: list[FallbackAddress] = []
    skipped: list[SkippedField] = []
    for tagged in tagged_fields:
        tag = tagged.tag
        if tag in _FIXED_WORDS and len(tagged.data) != _FIXED_WORDS[tag]:
            skipped.append(SkippedField(tagged, f"'{tag}' must have data_length "
                                                f"{_FIXED_WORDS[tag]}"))
        elif tag in _SINGLE_TAGS:
            if tag in single:
                skipped.append(SkippedField(tagged, "repeated field: the first one counts"))
            else:
                single[tag] = tagged
        elif tag == "r":
            hints.append(_read_route_hint(tagged))
        elif tag == "f":
            program = words_to_bytes(tagged.data[1:])
            problem = (_fallback_problem(tagged.data[0], program) if tagged.data
                       else "empty fallback field")
            if problem:
                skipped.append(SkippedField(tagged, f"fallback address: {problem}"))
            else:
                fallbacks.append(FallbackAddress(version=tagged.data[0], program=program))
        else:
            skipped.append(SkippedField(tagged, "unknown field type"))
    return single, hints, fallbacks, skipped


@dataclass(frozen=True, slots=True, kw_only=True)
class Bolt11Invoice:
    """A signed BOLT 11 invoice: its signed parts, and every value read from them.

    Build one with :meth:`decode` (text from outside) or :func:`sign_invoice` (our own);
    constructing it from parts verifies it the same way, raising :class:`InvalidInvoice`.
    """

    hrp: str
    timestamp: int
    tagged_fields: tuple[TaggedField, ...] = field(repr=False)
    #: 64-byte compact ``r || s`` then the recovery id (0-3).
    signature: bytes = field(repr=False)

    # Read from the parts above by __post_init__.
    network: Network = field(init=False)
    #: None: the payer chooses the amount (a donation).
    amount_msat: int | None = field(init=False)
    payment_hash: bytes = field(init=False)
    payment_secret: bytes = field(init=False)
    description: str | None = field(init=False)
    description_hash: bytes | None = field(init=False)
    expiry_seconds: int = field(init=False)
    min_final_cltv_expiry_delta: int = field(init=False)
    features: Features = field(init=False)
    route_hints: tuple[RouteHint, ...] = field(init=False)
    fallback_addresses: tuple[FallbackAddress, ...] = field(init=False)
    payment_metadata: bytes | None = field(init=False)
    payee_node_id: bytes = field(init=False)
    #: True: no ``n`` field, the node id was recovered from the signature.
    payee_node_id_recovered: bool = field(init=False)
    skipped_fields: tuple[SkippedField, ...] = field(init=False, repr=False)
    #: The text :meth:`decode` read (lower case), which :meth:`encode` gives back as it is: the
    #: payer stores each invoice it pays as text, and bech32 encoding is its hot spot.
    _text: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._read(None)

    def _read(self, signed_words: Sequence[int] | None) -> None:
        """Check the signed parts and set every value read from them; ``signed_words`` is the
        data part before the signature when :meth:`decode` has it (else rebuilt from fields)."""
        object.__setattr__(self, "_text", "")
        if not 0 <= self.timestamp < 1 << 35:
            raise InvalidInvoice("timestamp does not fit 35 bits")
        if len(self.signature) != 65:
            raise InvalidInvoice("signature must be 65 bytes (r, s, recovery id)")
        if self.hrp != self.hrp.lower():
            raise InvalidInvoice("hrp must be lower case (the signature covers it as written)")
        network, amount_msat = _read_hrp(self.hrp)
        single, hints, fallbacks, skipped = _sort_fields(self.tagged_fields)

        def raw(tag: str) -> bytes | None:
            return words_to_bytes(single[tag].data) if tag in single else None

        n_field = raw("n")
        digest = (_signing_hash(self.hrp, self.timestamp, self.tagged_fields)
                  if signed_words is None else _signing_hash_of_words(self.hrp, signed_words))
        payee = _recover_payee(digest, self.signature, n_field)
        payment_hash, payment_secret = raw("p"), raw("s")
        if payment_hash is None:
            raise InvalidInvoice("no payment hash ('p' field)")
        if payment_secret is None:
            raise InvalidInvoice("no payment secret ('s' field): BOLT 11 requires one")
        description_bytes, description_hash = raw("d"), raw("h")
        if (description_bytes is None) == (description_hash is None):
            raise InvalidInvoice("an invoice needs exactly one of a description ('d') and a "
                                 "description hash ('h')")
        try:
            description = None if description_bytes is None else description_bytes.decode()
        except UnicodeDecodeError as exc:
            raise InvalidInvoice("description ('d' field) is not valid UTF-8") from exc
        expiry = single.get("x")
        cltv = single.get("c")
        values = {
            "network": network, "amount_msat": amount_msat, "payment_hash": payment_hash,
            "payment_secret": payment_secret, "description": description,
            "description_hash": description_hash,
            "expiry_seconds": (DEFAULT_EXPIRY_SECONDS if expiry is None
                               else _minimal_int(expiry, "expiry")),
            "min_final_cltv_expiry_delta": (
                DEFAULT_MIN_FINAL_CLTV_EXPIRY_DELTA if cltv is None
                else _minimal_int(cltv, "min_final_cltv_expiry_delta")),
            "features": _read_features(single.get("9")), "route_hints": tuple(hints),
            "fallback_addresses": tuple(fallbacks), "payment_metadata": raw("m"),
            "payee_node_id": payee, "payee_node_id_recovered": n_field is None,
            "skipped_fields": tuple(skipped),
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @classmethod
    def decode(cls, text: str) -> Bolt11Invoice:
        """Read and verify an invoice; a ``lightning:`` URI prefix is allowed.

        Raises :class:`InvalidInvoice` with a one-line reason for any text we must not pay.
        """
        text = text.strip()
        if text[:10].lower() == "lightning:":
            text = text[10:]
        try:
            hrp, words = bech32_decode(text)
        except Bech32Error as exc:
            raise InvalidInvoice(f"not a BOLT 11 invoice: {exc}") from exc
        if len(words) < _TIMESTAMP_WORDS + _SIGNATURE_WORDS:
            raise InvalidInvoice("invoice too short: no room for a timestamp and a signature")
        body, signature = words[:-_SIGNATURE_WORDS], words[-_SIGNATURE_WORDS:]
        # built without __init__ so that the signature is checked over the words just read
        # rather than words rebuilt from the fields (the same words: a field is its words)
        invoice = object.__new__(cls)
        for name, value in (("hrp", hrp), ("timestamp", words_to_int(body[:_TIMESTAMP_WORDS])),
                            ("tagged_fields", _split_fields(body[_TIMESTAMP_WORDS:])),
                            ("signature", words_to_bytes(signature))):
            object.__setattr__(invoice, name, value)
        invoice._read(body)
        object.__setattr__(invoice, "_text", text.lower())   # bech32: one case, signed as is
        return invoice

    def encode(self) -> str:
        """The invoice as (lower-case) bech32 text, signature included."""
        if self._text:
            return self._text
        words = _timestamp_words(self.timestamp) + [w for f in self.tagged_fields
                                                    for w in f.words()]
        return bech32_encode(self.hrp, words + bytes_to_words(self.signature))

    @property
    def signing_hash(self) -> bytes:
        """SHA256 of the signed data (hrp, timestamp, tagged fields): what the node signed."""
        return _signing_hash(self.hrp, self.timestamp, self.tagged_fields)

    @property
    def expires_at(self) -> int:
        """Seconds since 1970 after which payer and payee SHOULD refuse the invoice."""
        return self.timestamp + self.expiry_seconds

    def is_expired(self, now: int) -> bool:
        """BOLT 11: "after the ``timestamp`` plus ``expiry`` has passed" (``now`` in seconds)."""
        return now > self.expires_at

    def matches_description(self, description: str) -> bool:
        """The ``d`` field equals ``description``, or the ``h`` field is its SHA256."""
        if self.description_hash is not None:
            return hashlib.sha256(description.encode()).digest() == self.description_hash
        return self.description == description


def check_payable(invoice: Bolt11Invoice, *, network: Network, now: int,
                  supported_features: Features = INVOICE_FEATURES,
                  max_final_cltv_expiry_delta: int = DEFAULT_MAX_FINAL_CLTV_EXPIRY_DELTA,
                  ) -> None:
    """Raise :class:`InvalidInvoice` if a payer on ``network`` must not pay ``invoice`` now.

    BOLT 11 payer rules: fail on a currency it does not use, do not pay after ``timestamp`` +
    ``expiry``, do not pay an invoice requiring a feature the payer lacks or missing a
    dependency (BOLT 9). Also refuses a ``c`` above ``max_final_cltv_expiry_delta``, which
    would lock the payer's funds for that long if the payment got stuck.
    """
    if invoice.network is not network:
        raise InvalidInvoice(f"invoice is for {invoice.network.name.lower()} "
                             f"({invoice.network.hrp_prefix}), we pay on {network.name.lower()} "
                             f"({network.hrp_prefix})")
    if invoice.is_expired(now):
        raise InvalidInvoice(f"invoice expired {now - invoice.expires_at} s ago: ask the payee "
                             "for a new one")
    missing = incompatible_bits(supported_features, invoice.features)
    if missing:
        raise InvalidInvoice(f"invoice needs feature bit(s) {sorted(missing)} that this payer "
                             "does not support")
    if invoice.min_final_cltv_expiry_delta > max_final_cltv_expiry_delta:
        raise InvalidInvoice(f"invoice asks min_final_cltv_expiry_delta "
                             f"{invoice.min_final_cltv_expiry_delta} blocks, more than the "
                             f"{max_final_cltv_expiry_delta} we accept")


# ---------------------------------------------------------------------------------------------
# Writing


def invoice_fields(
    *,
    payment_hash: bytes,
    payment_secret: bytes,
    description: str | None = None,
    description_hash: bytes | None = None,
    expiry_seconds: int | None = None,
    min_final_cltv_expiry_delta: int | None = None,
    payee_node_id: bytes | None = None,
    payment_metadata: bytes | None = None,
    fallback_addresses: Sequence[FallbackAddress] = (),
    route_hints: Sequence[RouteHint] = (),
    features: Features = INVOICE_FEATURES,
    field_order: str = DEFAULT_FIELD_ORDER,
) -> tuple[TaggedField, ...]:
    """The tagged fields for these values (BOLT 11 "Tagged Fields", writer requirements).

    Exactly one of ``description`` / ``description_hash``; ``expiry_seconds`` and
    ``min_final_cltv_expiry_delta`` None leave ``x`` / ``c`` out (readers then use 3600 s and
    18 blocks); integers and features take the fewest words; no features, no ``9`` field.
    ``field_order`` lists tag characters; the signature covers the order, so reproducing a
    given invoice needs its order.
    """
    if len(payment_hash) != 32 or len(payment_secret) != 32:
        raise ValueError("invoice_fields: payment_hash and payment_secret are 32 bytes")
    if (description is None) == (description_hash is None):
        raise ValueError("invoice_fields: give exactly one of description, description_hash")
    if description_hash is not None and len(description_hash) != 32:
        raise ValueError("invoice_fields: description_hash is 32 bytes")
    if description is not None and len(description.encode()) > 639:
        raise ValueError("invoice_fields: description over 639 bytes; use description_hash")
    if payee_node_id is not None and len(payee_node_id) != 33:
        raise ValueError("invoice_fields: payee_node_id is 33 bytes")
    if any(not hint for hint in route_hints):
        raise ValueError("invoice_fields: a route hint has at least one hop")
    feature_value = sum(1 << bit for bit in features.bits)
    by_tag: dict[str, list[TaggedField]] = {
        "p": [TaggedField.of_bytes("p", payment_hash)],
        "s": [TaggedField.of_bytes("s", payment_secret)],
        "d": [] if description is None else [TaggedField.of_bytes("d", description.encode())],
        "h": [] if description_hash is None else [TaggedField.of_bytes("h", description_hash)],
        "x": [] if expiry_seconds is None else [TaggedField.of_int("x", expiry_seconds)],
        "c": ([] if min_final_cltv_expiry_delta is None
              else [TaggedField.of_int("c", min_final_cltv_expiry_delta)]),
        "n": [] if payee_node_id is None else [TaggedField.of_bytes("n", payee_node_id)],
        "m": [] if payment_metadata is None else [TaggedField.of_bytes("m", payment_metadata)],
        "f": [fallback.to_field() for fallback in fallback_addresses],
        "r": [TaggedField.of_bytes("r", b"".join(hop.to_bytes() for hop in hint))
              for hint in route_hints],
        "9": [TaggedField.of_int("9", feature_value)] if feature_value else [],
    }
    order = field_order + "".join(t for t in DEFAULT_FIELD_ORDER if t not in field_order)
    if sorted(order) != sorted(DEFAULT_FIELD_ORDER):
        raise ValueError(f"invoice_fields: field_order {field_order!r} repeats or has an "
                         f"unknown tag (known: {DEFAULT_FIELD_ORDER})")
    return tuple(tagged for tag in order for tagged in by_tag[tag])


def sign_tagged_fields(*, network: Network, amount_msat: int | None, timestamp: int,
                       tagged_fields: Sequence[TaggedField], node_secret: bytes,
                       ) -> Bolt11Invoice:
    """Sign ``tagged_fields`` as they are (BOLT 11 "Data Part", writer requirements).

    Deterministic: libsecp256k1 signs with an RFC 6979 nonce, as the spec's examples do, so
    the same inputs give the same invoice.
    """
    if not 0 <= timestamp < 1 << 35:
        raise ValueError("sign_tagged_fields: timestamp must fit 35 bits")
    hrp = network.hrp_prefix + ("" if amount_msat is None else amount_to_hrp(amount_msat))
    digest = _signing_hash(hrp, timestamp, tagged_fields)
    signature = coincurve.PrivateKey(node_secret).sign_recoverable(digest, hasher=None)
    return Bolt11Invoice(hrp=hrp, timestamp=timestamp, tagged_fields=tuple(tagged_fields),
                         signature=signature)


def sign_invoice(
    *,
    node_secret: bytes,
    network: Network,
    amount_msat: int | None,
    timestamp: int,
    payment_hash: bytes,
    payment_secret: bytes,
    description: str | None = None,
    description_hash: bytes | None = None,
    expiry_seconds: int = DEFAULT_EXPIRY_SECONDS,
    min_final_cltv_expiry_delta: int = DEFAULT_MIN_FINAL_CLTV_EXPIRY_DELTA,
    route_hints: Sequence[RouteHint] = (),
    fallback_addresses: Sequence[FallbackAddress] = (),
    features: Features = INVOICE_FEATURES,
    payment_metadata: bytes | None = None,
    include_payee_node_id: bool = False,
) -> Bolt11Invoice:
    """Our invoice, signed with our node key (BOLT 11 writer requirements).

    Always writes ``x`` and ``c`` (the spec asks writers to include ``c`` and to set it to what
    they enforce); ``features`` default to bits 8 and 14 (:data:`INVOICE_FEATURES`).
    ``timestamp`` is passed in: the module reads no clock.
    """
    payee_node_id = (coincurve.PrivateKey(node_secret).public_key.format(compressed=True)
                     if include_payee_node_id else None)
    fields = invoice_fields(
        payment_hash=payment_hash, payment_secret=payment_secret, description=description,
        description_hash=description_hash, expiry_seconds=expiry_seconds,
        min_final_cltv_expiry_delta=min_final_cltv_expiry_delta, payee_node_id=payee_node_id,
        payment_metadata=payment_metadata, fallback_addresses=fallback_addresses,
        route_hints=route_hints, features=features)
    return sign_tagged_fields(network=network, amount_msat=amount_msat, timestamp=timestamp,
                              tagged_fields=fields, node_secret=node_secret)
