"""BOLT 11 invoices: every example of the spec, our own regtest invoices, and the reader's rules.

The vectors (tests/vectors/bolt11.json, copied from ../shared/vectors/) hold the spec's 16 valid
and 10 invalid examples, each valid one decoded field by field by an independent decoder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import coincurve
import pytest

from channel.bech32 import (
    Bech32Error,
    bech32_decode,
    bech32_encode,
    bytes_to_words,
    words_to_bytes,
    words_to_int,
)
from channel.bolt11 import (
    INVOICE_FEATURES,
    Bolt11Invoice,
    FallbackAddress,
    Network,
    RouteHintHop,
    TaggedField,
    amount_to_hrp,
    check_payable,
    invoice_fields,
    sign_invoice,
    sign_tagged_fields,
)
from channel.bolt11_text import describe_invoice, invoice_as_dict
from channel.errors import InvalidInvoice
from channel.wire import Feature, Features

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "vectors" / "bolt11.json").read_text(encoding="utf-8"))
SPEC_KEY = bytes.fromhex(VECTORS["conventions"]["signing_privkey"])
SPEC_PAYEE = bytes.fromhex(VECTORS["conventions"]["payee_node_id"])
VALID = VECTORS["valid"]
INVALID = VECTORS["invalid"]
HIGH_S_TITLE = "Public-key recovery with high-S signature"
IGNORED_TITLE = "Same, but including fields which must be ignored."
LONG_DESCRIPTION = (
    "One piece of chocolate cake, one icecream cone, one pickle, one slice of swiss cheese, "
    "one slice of salami, one lollypop, one piece of cherry pie, one sausage, one cupcake, "
    "and one slice of watermelon")

NODE_SECRET = bytes.fromhex("41" * 32)
NODE_ID = coincurve.PrivateKey(NODE_SECRET).public_key.format(compressed=True)
PEER_ID = coincurve.PrivateKey(bytes.fromhex("42" * 32)).public_key.format(compressed=True)
PAYMENT_HASH = hashlib.sha256(b"preimage").digest()
PAYMENT_SECRET = bytes(range(32))
TIMESTAMP = 1_764_700_000


def _title(example: dict[str, Any]) -> str:
    return str(example["title"])[:48]


def _invoice_of(example: dict[str, Any]) -> Bolt11Invoice:
    return Bolt11Invoice.decode(example["invoice"])


def _hex(data: bytes | None) -> str | None:
    return None if data is None else data.hex()


def _sign_raw(hrp: str, timestamp: int, fields: list[TaggedField], secret: bytes) -> str:
    """An invoice signed here, independently of channel.bolt11's signer (any hrp allowed)."""
    words = [(timestamp >> 5 * (6 - i)) & 31 for i in range(7)]
    words += [w for f in fields for w in f.words()]
    digest = hashlib.sha256(hrp.encode() + words_to_bytes(words, pad=True)).digest()
    signature = coincurve.PrivateKey(secret).sign_recoverable(digest, hasher=None)
    return bech32_encode(hrp, words + bytes_to_words(signature))


def _our_fields(**overrides: Any) -> list[TaggedField]:
    args: dict[str, Any] = {"payment_hash": PAYMENT_HASH, "payment_secret": PAYMENT_SECRET,
                            "description": "tea"} | overrides
    return list(invoice_fields(**args))


# ---------------------------------------------------------------------------------------------
# The spec's examples


@pytest.mark.parametrize("example", VALID, ids=_title)
def test_valid_example_decodes_to_the_listed_fields(example: dict[str, Any]) -> None:
    """Each valid spec example decodes to exactly the values the vector file lists."""
    inv = _invoice_of(example)
    tags = [f.tag for f in inv.tagged_fields]
    assert inv.network.hrp_prefix == example["hrp"]
    assert inv.network.name.lower() == example["network"]
    assert inv.amount_msat == example["amount_msat"]
    assert inv.timestamp == example["timestamp"]
    assert inv.payment_hash.hex() == example["payment_hash"]
    assert inv.payment_secret.hex() == example["payment_secret"]
    assert inv.description == example["description"]
    assert _hex(inv.description_hash) == example["description_hash"]
    assert inv.expiry_seconds == (3600 if example["expiry"] is None else example["expiry"])
    assert ("x" in tags) == (example["expiry"] is not None)
    expected_cltv = example["min_final_cltv_expiry_delta"]
    assert inv.min_final_cltv_expiry_delta == (18 if expected_cltv is None else expected_cltv)
    assert ("c" in tags) == (expected_cltv is not None)
    assert [{"version": f.version, "type": f.kind, "program": f.program.hex(),
             "address": f.address(inv.network)} for f in inv.fallback_addresses] \
        == example["fallback_addresses"]
    assert [[{"pubkey": hop.pubkey.hex(), "short_channel_id": hop.short_channel_id_text,
              "short_channel_id_hex": hop.short_channel_id.hex(),
              "fee_base_msat": hop.fee_base_msat,
              "fee_proportional_millionths": hop.fee_proportional_millionths,
              "cltv_expiry_delta": hop.cltv_expiry_delta} for hop in hint]
            for hint in inv.route_hints] == example["route_hints"]
    assert sorted(inv.features.bits) == example["features"]["bits"]
    assert _hex(inv.payment_metadata) == example["metadata"]
    assert inv.payee_node_id_recovered == (example["n_field"] is None)
    assert inv.payee_node_id.hex() == example["payee_node_id"]
    assert [(s.field.tag, len(s.field.data)) for s in inv.skipped_fields] == \
        [(i["type"], i["data_length"]) for i in example["ignored_fields"]]
    assert inv.signature[:64].hex() == example["signature"]["rs"]
    assert inv.signature[64] == example["signature"]["recovery_id"]
    assert inv.signing_hash.hex() == example["signature"]["signing_hash"]


@pytest.mark.parametrize("example", VALID, ids=_title)
def test_valid_example_encodes_back_to_its_text(example: dict[str, Any]) -> None:
    """Encoding a decoded example gives its exact text back (lower case for the upper-case one)."""
    assert _invoice_of(example).encode() == example["invoice"].lower()


@pytest.mark.parametrize("example", VALID, ids=_title)
def test_valid_example_rebuilt_from_its_parts_encodes_to_the_text_decode_keeps(
        example: dict[str, Any]) -> None:
    """The text a decoded invoice keeps (and encode() returns without re-encoding) is the
    bech32 encoding of its parts, also behind a ``LIGHTNING:`` prefix in upper case."""
    text = example["invoice"].lower()
    inv = Bolt11Invoice.decode("LIGHTNING:" + text.upper())
    rebuilt = Bolt11Invoice(hrp=inv.hrp, timestamp=inv.timestamp,
                            tagged_fields=inv.tagged_fields, signature=inv.signature)
    assert inv.encode() == text
    assert rebuilt.encode() == text
    assert rebuilt == inv


@pytest.mark.parametrize("example", [v for v in VALID if v["title"] != HIGH_S_TITLE],
                         ids=_title)
def test_valid_example_resigned_from_its_fields_is_byte_exact(example: dict[str, Any]) -> None:
    """Re-signing an example's fields with the spec's key reproduces it (RFC 6979 signatures)."""
    inv = _invoice_of(example)
    again = sign_tagged_fields(network=inv.network, amount_msat=inv.amount_msat,
                               timestamp=inv.timestamp, tagged_fields=inv.tagged_fields,
                               node_secret=SPEC_KEY)
    assert again.encode() == example["invoice"].lower()
    assert again.payee_node_id == SPEC_PAYEE


@pytest.mark.parametrize(
    "example", [v for v in VALID if v["title"] not in (HIGH_S_TITLE, IGNORED_TITLE)], ids=_title)
def test_valid_example_rebuilt_from_typed_values_is_byte_exact(example: dict[str, Any]) -> None:
    """invoice_fields writes each value exactly as the spec does, given the example's order.

    Not for the high-S example (our signer only makes low-S) nor the one with fields a reader
    skips (those are not values); both are covered by the tests above.
    """
    inv = _invoice_of(example)
    tags = [f.tag for f in inv.tagged_fields]
    fields = invoice_fields(
        payment_hash=inv.payment_hash, payment_secret=inv.payment_secret,
        description=inv.description, description_hash=inv.description_hash,
        expiry_seconds=inv.expiry_seconds if "x" in tags else None,
        min_final_cltv_expiry_delta=inv.min_final_cltv_expiry_delta if "c" in tags else None,
        payment_metadata=inv.payment_metadata, fallback_addresses=inv.fallback_addresses,
        route_hints=inv.route_hints, features=inv.features,
        field_order="".join(dict.fromkeys(tags)))
    rebuilt = sign_tagged_fields(network=inv.network, amount_msat=inv.amount_msat,
                                 timestamp=inv.timestamp, tagged_fields=fields,
                                 node_secret=SPEC_KEY)
    assert rebuilt.encode() == example["invoice"].lower()


def test_high_s_example_recovers_the_libsecp256k1_key_and_cannot_be_resigned() -> None:
    """The high-S example decodes (recovery accepts high S); our signer would write low S."""
    example = next(v for v in VALID if v["title"] == HIGH_S_TITLE)
    inv = _invoice_of(example)
    assert int.from_bytes(inv.signature[32:64], "big") > 0x7FFFFFFF << 224
    assert inv.payee_node_id.hex() == \
        "02d0139ce7427d6dfffd26a326c18be754ef1e64672b42694ba5b23ef6e6e7803d"
    resigned = sign_tagged_fields(network=inv.network, amount_msat=None,
                                  timestamp=inv.timestamp, tagged_fields=inv.tagged_fields,
                                  node_secret=SPEC_KEY)
    assert resigned.encode() == VALID[0]["invoice"]  # the first example: same fields, low S


def test_description_hash_example_matches_the_spec_description() -> None:
    """The 'h' examples commit to the spec's long description, and to nothing else."""
    inv = _invoice_of(next(v for v in VALID if v["description_hash"]))
    assert inv.matches_description(LONG_DESCRIPTION)
    assert not inv.matches_description(LONG_DESCRIPTION + ".")


EXPECTED_REASONS = {
    "Same, but adding invalid unknown feature 100": "unknown feature bit(s) [100]",
    "Bech32 checksum is invalid.": "checksum does not verify",
    "Malformed bech32 string (no 1)": "no '1' separating",
    "Malformed bech32 string (mixed case)": "mixes upper and lower case",
    "Signature is not recoverable.": "signature is not recoverable",
    "String is too short.": "too short",
    "Invalid multiplier": "invalid amount '2500x'",
    "Invalid sub-millisatoshi precision.": "'2500000001p' is a fraction of a msat",
    "Missing required `s` field.": "no payment secret ('s' field)",
    "Non canonical signature (high-S) with 'n' field defined": "high-S signature with an 'n'",
}


@pytest.mark.parametrize("example", INVALID, ids=_title)
def test_invalid_example_is_rejected_for_its_reason(example: dict[str, Any]) -> None:
    """Each invalid spec example raises InvalidInvoice naming the rule the spec gives."""
    with pytest.raises(InvalidInvoice) as caught:
        _invoice_of(example)
    assert EXPECTED_REASONS[example["title"]] in str(caught.value)
    assert "\n" not in str(caught.value)


def test_every_invalid_example_has_an_expected_reason() -> None:
    """The table above covers all 10 invalid examples and the file has 16 valid ones."""
    assert sorted(EXPECTED_REASONS) == sorted(v["title"] for v in INVALID)
    assert (len(VALID), len(INVALID)) == (16, 10)


# ---------------------------------------------------------------------------------------------
# Our invoices


HINT_A = (RouteHintHop(pubkey=PEER_ID, short_channel_id=bytes.fromhex("0000670000010000"),
                       fee_base_msat=1000, fee_proportional_millionths=1, cltv_expiry_delta=40),)
HINT_B = (RouteHintHop(pubkey=SPEC_PAYEE, short_channel_id=bytes.fromhex("00006a0000020001"),
                       fee_base_msat=0, fee_proportional_millionths=0, cltv_expiry_delta=1),
          RouteHintHop(pubkey=PEER_ID, short_channel_id=bytes.fromhex("00006b0000030002"),
                       fee_base_msat=2, fee_proportional_millionths=300,
                       cltv_expiry_delta=144))


def _regtest_invoice(**overrides: Any) -> Bolt11Invoice:
    args: dict[str, Any] = {
        "node_secret": NODE_SECRET, "network": Network.REGTEST, "amount_msat": 150_000_000,
        "timestamp": TIMESTAMP, "payment_hash": PAYMENT_HASH, "payment_secret": PAYMENT_SECRET,
        "description": "chanlab → electrum", "min_final_cltv_expiry_delta": 144,
        "expiry_seconds": 7200, "route_hints": (HINT_A, HINT_B),
    } | overrides
    return sign_invoice(**args)


def test_regtest_invoice_with_route_hints_round_trips() -> None:
    """A regtest invoice with two route hints (1 and 2 hops) decodes to what was signed."""
    text = _regtest_invoice().encode()
    assert text.startswith("lnbcrt1500u1")
    inv = Bolt11Invoice.decode(text)
    assert inv.network is Network.REGTEST
    assert inv.amount_msat == 150_000_000
    assert inv.timestamp == TIMESTAMP
    assert (inv.payment_hash, inv.payment_secret) == (PAYMENT_HASH, PAYMENT_SECRET)
    assert inv.description == "chanlab → electrum"
    assert inv.description_hash is None
    assert (inv.expiry_seconds, inv.min_final_cltv_expiry_delta) == (7200, 144)
    assert inv.route_hints == (HINT_A, HINT_B)
    assert inv.route_hints[1][1].short_channel_id_text == "107x3x2"
    assert inv.payee_node_id == NODE_ID
    assert inv.payee_node_id_recovered
    assert inv.skipped_fields == ()
    assert inv.encode() == text


def test_our_invoices_set_var_onion_optin_and_payment_secret() -> None:
    """Our '9' field is bits 8 and 14, required: '9qrsgq', as in the spec's examples."""
    inv = _regtest_invoice()
    assert inv.features == INVOICE_FEATURES
    assert sorted(Bolt11Invoice.decode(inv.encode()).features.bits) == [8, 14]
    assert TaggedField("9", (16, 8, 0)) in inv.tagged_fields
    assert "9qrsgq" in inv.encode()


def test_features_are_settable_and_written_minimally() -> None:
    """Any known feature set round-trips: basic_mpp optional (17) with 8 and 14 -> 4 words."""
    features = INVOICE_FEATURES | Features.of(optional=[Feature.BASIC_MPP])
    inv = Bolt11Invoice.decode(_regtest_invoice(features=features).encode())
    assert sorted(inv.features.bits) == [8, 14, 17]
    nine = next(f for f in inv.tagged_fields if f.tag == "9")
    assert nine.data == (4, 16, 8, 0)  # words hold bits 19-15, 14-10, 9-5, 4-0


def test_signing_is_deterministic() -> None:
    """Same inputs, same invoice text; another timestamp, another signature."""
    first, second = _regtest_invoice().encode(), _regtest_invoice().encode()
    assert first == second
    later = _regtest_invoice(timestamp=TIMESTAMP + 1)
    assert later.signature != _regtest_invoice().signature


def test_donation_invoice_has_no_amount() -> None:
    """amount_msat None writes a bare prefix; the reader gives None back."""
    inv = Bolt11Invoice.decode(_regtest_invoice(amount_msat=None).encode())
    assert inv.hrp == "lnbcrt"
    assert inv.amount_msat is None


def test_n_field_is_verified_instead_of_recovering() -> None:
    """With include_payee_node_id the 'n' field is written and the signature checked against it."""
    inv = Bolt11Invoice.decode(_regtest_invoice(include_payee_node_id=True).encode())
    assert inv.payee_node_id == NODE_ID
    assert not inv.payee_node_id_recovered
    assert TaggedField.of_bytes("n", NODE_ID) in inv.tagged_fields


def test_tampered_amount_changes_the_recovered_payee_unless_n_is_present() -> None:
    """Without 'n' a changed amount recovers some other key; with 'n' it is rejected."""
    for with_n in (False, True):
        inv = _regtest_invoice(include_payee_node_id=with_n)
        _, words = bech32_decode(inv.encode())
        forged = bech32_encode("lnbcrt2500u", words)
        if with_n:
            with pytest.raises(InvalidInvoice, match="does not match the payee node id"):
                Bolt11Invoice.decode(forged)
        else:
            assert Bolt11Invoice.decode(forged).payee_node_id != NODE_ID


def test_description_hash_invoice_round_trips() -> None:
    """An 'h' invoice carries the hash, not the text, and matches the text it commits to."""
    inv = Bolt11Invoice.decode(_regtest_invoice(
        description=None,
        description_hash=hashlib.sha256(LONG_DESCRIPTION.encode()).digest()).encode())
    assert inv.description is None
    assert inv.matches_description(LONG_DESCRIPTION)


def test_fallbacks_and_metadata_round_trip() -> None:
    """'f' fields (P2WPKH, P2TR) and 'm' are written and read back; addresses render for regtest."""
    p2wpkh = FallbackAddress(version=0, program=bytes(range(20)))
    p2tr = FallbackAddress(version=1, program=bytes(range(32)))
    inv = Bolt11Invoice.decode(_regtest_invoice(
        fallback_addresses=(p2wpkh, p2tr), payment_metadata=b"\x01\xfa\xfa\xf0").encode())
    assert inv.fallback_addresses == (p2wpkh, p2tr)
    assert inv.payment_metadata == b"\x01\xfa\xfa\xf0"
    assert [f.kind for f in inv.fallback_addresses] == ["p2wpkh", "p2tr"]
    assert inv.fallback_addresses[0].address(Network.REGTEST).startswith("bcrt1q")
    assert inv.fallback_addresses[1].address(Network.REGTEST).startswith("bcrt1p")


def test_unknown_fields_are_skipped_but_kept_in_the_signed_text() -> None:
    """An unknown tag and an 'f' of version 19 are listed as skipped and survive re-encoding."""
    fields = _our_fields()
    fields.insert(1, TaggedField("2", (1, 2, 3)))
    fields.append(TaggedField("f", (19, 0, 0)))
    text = _sign_raw("lnbcrt10n", TIMESTAMP, fields, NODE_SECRET)
    inv = Bolt11Invoice.decode(text)
    assert inv.amount_msat == 1000
    assert [(s.field.tag, s.reason) for s in inv.skipped_fields] == [
        ("2", "unknown field type"), ("f", "fallback address: version 19 is unknown")]
    assert inv.encode() == text


def test_repeated_field_uses_the_first() -> None:
    """Two 'd' fields: the first is the description, the second is skipped."""
    fields = [*_our_fields(), TaggedField.of_bytes("d", b"second")]
    inv = Bolt11Invoice.decode(_sign_raw("lnbcrt1m", TIMESTAMP, fields, NODE_SECRET))
    assert inv.description == "tea"
    assert [s.reason for s in inv.skipped_fields] == ["repeated field: the first one counts"]


@pytest.mark.parametrize(("amount_msat", "text"), [
    (1, "10p"), (10, "100p"), (100, "1n"), (1_000, "10n"), (100_000, "1u"),
    (150_000_000, "1500u"), (100_000_000, "1m"), (100_000_000_000, "1"),
    (2_500_000_000_000, "25"), (967_878_534, "9678785340p"),
])
def test_amount_is_written_in_its_shortest_form(amount_msat: int, text: str) -> None:
    """amount_to_hrp picks the largest multiplier that keeps the amount whole."""
    assert amount_to_hrp(amount_msat) == text


@pytest.mark.parametrize(("hrp", "amount_msat"), [
    ("lnbcrt10000u", 1_000_000_000), ("lnbcrt1000000000p", 100_000_000), ("lntbs3n", 300),
    ("lntb7", 700_000_000_000),
])
def test_reader_accepts_amounts_not_in_shortest_form(hrp: str, amount_msat: int) -> None:
    """Readers accept any multiplier ("non-largest multipliers have been encountered")."""
    inv = Bolt11Invoice.decode(_sign_raw(hrp, TIMESTAMP, _our_fields(), NODE_SECRET))
    assert inv.amount_msat == amount_msat
    assert inv.payee_node_id == NODE_ID


@pytest.mark.parametrize(("hrp", "fields", "reason"), [
    ("lnxy1m", None, "unknown currency"),
    ("bcrt1m", None, "does not start with 'ln'"),
    ("lnbcrt01m", None, "invalid amount '01m'"),
    ("lnbcrt1k", None, "invalid amount '1k'"),
    ("lnbcrt15p", None, "fraction of a msat"),
    ("lnbcrt1m", [TaggedField.of_bytes("p", PAYMENT_HASH),
                  TaggedField.of_bytes("s", PAYMENT_SECRET)], "exactly one of a description"),
    ("lnbcrt1m", [*_our_fields(), TaggedField.of_bytes("h", bytes(32))],
     "exactly one of a description"),
    ("lnbcrt1m", _our_fields()[1:], "no payment hash"),
    ("lnbcrt1m", [*_our_fields(), TaggedField("x", (0, 1))], "expiry ('x' field) is not "
                                                              "minimally encoded"),
    ("lnbcrt1m", [*_our_fields(), TaggedField("c", (0, 18))], "not minimally encoded"),
    ("lnbcrt1m", [*_our_fields(features=Features()), TaggedField("9", (0, 16, 8, 0))],
     "features ('9' field) are not minimally encoded"),
    ("lnbcrt1m", _our_fields(features=Features(bits=frozenset({8, 14, 22}))),
     "unknown feature bit(s) [22]"),
    ("lnbcrt1m", _our_fields(features=Features(bits=frozenset({8, 17}))),
     "basic_mpp without payment_secret"),
    ("lnbcrt1m", [*_our_fields(), TaggedField.of_bytes("r", bytes(50))],
     "not a whole number of 51-byte hops"),
    ("lnbcrt1m", [*_our_fields(), TaggedField.of_bytes("d", b"\xff")][::-1],
     "not valid UTF-8"),
])
def test_reader_rejects_invoices_that_break_a_rule(
        hrp: str, fields: list[TaggedField] | None, reason: str) -> None:
    """Each broken rule of the hrp or the tagged fields is refused with its own reason."""
    text = _sign_raw(hrp, TIMESTAMP, _our_fields() if fields is None else fields, NODE_SECRET)
    with pytest.raises(InvalidInvoice) as caught:
        Bolt11Invoice.decode(text)
    assert reason in str(caught.value)


def test_truncated_field_is_rejected() -> None:
    """A field whose data_length runs past the signature is refused, not read short."""
    words = [0] * 7 + [1, 1, 20] + [0] * 10
    text = bech32_encode("lnbcrt1m", words + [0] * 104)
    with pytest.raises(InvalidInvoice, match="claims 52 words but only 10 remain"):
        Bolt11Invoice.decode(text)


def test_lightning_uri_prefix_and_upper_case_are_accepted() -> None:
    """'lightning:' + an upper-case invoice (as in QR codes) reads like the plain text."""
    text = _regtest_invoice().encode()
    assert Bolt11Invoice.decode("LIGHTNING:" + text.upper()) == Bolt11Invoice.decode(text)


def test_expiry_boundary() -> None:
    """An invoice is still valid at timestamp + expiry and expired one second later."""
    inv = _regtest_invoice(expiry_seconds=60)
    assert inv.expires_at == TIMESTAMP + 60
    assert not inv.is_expired(TIMESTAMP + 60)
    assert inv.is_expired(TIMESTAMP + 61)
    default = Bolt11Invoice.decode(VALID[0]["invoice"])
    assert default.expires_at == 1496314658 + 3600


def test_changing_a_signed_part_reverifies() -> None:
    """dataclasses.replace with a new field list re-reads and re-verifies the invoice."""
    inv = _regtest_invoice(include_payee_node_id=True)
    with pytest.raises(InvalidInvoice, match="does not match"):
        dataclasses.replace(inv, timestamp=TIMESTAMP + 1)


def test_writer_refuses_inconsistent_values() -> None:
    """Both or neither description, wrong lengths and empty route hints are programming errors."""
    with pytest.raises(ValueError, match="exactly one of description"):
        invoice_fields(payment_hash=PAYMENT_HASH, payment_secret=PAYMENT_SECRET)
    with pytest.raises(ValueError, match="32 bytes"):
        invoice_fields(payment_hash=b"x", payment_secret=PAYMENT_SECRET, description="")
    with pytest.raises(ValueError, match="at least one hop"):
        invoice_fields(payment_hash=PAYMENT_HASH, payment_secret=PAYMENT_SECRET,
                       description="", route_hints=[()])
    with pytest.raises(ValueError, match="639 bytes"):
        invoice_fields(payment_hash=PAYMENT_HASH, payment_secret=PAYMENT_SECRET,
                       description="x" * 640)


def test_payer_accepts_our_fresh_regtest_invoice() -> None:
    """check_payable passes a regtest invoice with bits 8/14 before its expiry."""
    check_payable(_regtest_invoice(), network=Network.REGTEST, now=TIMESTAMP + 7200)


@pytest.mark.parametrize(("overrides", "now", "reason"), [
    ({"network": Network.MAINNET}, TIMESTAMP, "invoice is for mainnet (lnbc), we pay on "
                                              "regtest (lnbcrt)"),
    ({}, TIMESTAMP + 7201, "invoice expired 1 s ago"),
    ({"features": INVOICE_FEATURES | Features.of(required=[Feature.BASIC_MPP])}, TIMESTAMP,
     "feature bit(s) [16]"),
    ({"min_final_cltv_expiry_delta": 2017}, TIMESTAMP, "min_final_cltv_expiry_delta 2017 "
                                                       "blocks, more than the 2016"),
])
def test_payer_refuses_what_bolt11_says_not_to_pay(
        overrides: dict[str, Any], now: int, reason: str) -> None:
    """Wrong currency, expired, an unsupported required feature, or too long a final delta."""
    with pytest.raises(InvalidInvoice) as caught:
        check_payable(_regtest_invoice(**overrides), network=Network.REGTEST, now=now)
    assert reason in str(caught.value)


def test_bech32_rules_outside_invoices() -> None:
    """BIP 173 test strings: valid ones decode, an 83-character hrp is fine, bad ones fail."""
    assert bech32_decode("A12UEL5L") == ("a", [])
    long_hrp = "an83characterlonghumanreadablepartthatcontainsthenumber1andtheexcludedcharactersbio"
    assert bech32_decode(long_hrp + "1tt5tgs") == (long_hrp, [])
    for text, reason in [("a12uel5L", "mixes"), ("pzry9x0s0muk", "no '1'"),
                         ("x1b4n0q5v", "'b' is not in the bech32 alphabet"),
                         ("li1dgmt3", "shorter than the 6-character checksum"),
                         ("A1G7SGD8", "checksum does not verify")]:
        with pytest.raises(Bech32Error, match=reason):
            bech32_decode(text)
    assert words_to_bytes([31, 31], pad=True) == b"\xff\xc0"
    assert words_to_bytes([31, 31]) == b"\xff"
    assert bytes_to_words(b"\xff") == [31, 28]
    assert words_to_int([1, 0, 0]) == 1024


# ---------------------------------------------------------------------------------------------
# The human reading


def test_human_reading_of_the_route_hint_example() -> None:
    """describe_invoice gives amount in msat and sat, payee, expiry, delta, features, hints."""
    example = next(v for v in VALID if v["title"].startswith("On mainnet, with fallback address"))
    lines = describe_invoice(_invoice_of(example), now=1496314658 + 3601)
    assert lines == [
        "network: bitcoin mainnet (lnbc)",
        "amount: 2000000000 msat (2000000 sat)",
        "description hash: 3925b6f67e2c340036ed12093dd44e0368df1b6ea26c53dbe4811f58fd5db8c1 "
        "(the description itself is not in the invoice)",
        "payee: 03e7156ae33b0a208d0744199163177e909e80176e55d97a2f221ede0f934dd9ad "
        "(recovered from the signature)",
        "payment hash: 0001020304050607080900010203040506070809000102030405060708090102",
        "payment secret: 1111111111111111111111111111111111111111111111111111111111111111",
        "created: 2017-06-01 10:57:38 UTC (timestamp 1496314658)",
        "expires: 2017-06-01 11:57:38 UTC (3600 s after creation, the default); EXPIRED",
        "min_final_cltv_expiry_delta: 18 blocks (no 'c' field: the default 18)",
        "features: var_onion_optin (required, bit 8), payment_secret (required, bit 14)",
        "route hint 1 (2 hops):",
        "  from 029e03a901b85534ff1e92c43c74431f7ce72046060fcf7a95c37e148f78c77255 over channel "
        "66051x263430x1800: fee 1 msat + 20 ppm, cltv_expiry_delta 3 blocks",
        "  from 039e03a901b85534ff1e92c43c74431f7ce72046060fcf7a95c37e148f78c77255 over channel "
        "197637x395016x2314: fee 2 msat + 30 ppm, cltv_expiry_delta 4 blocks",
        "fallback address: 1RustyRX2oai4EYYDpQGWvEL62BBGqN9T (p2pkh)",
    ]


def test_human_reading_of_fractional_sat_and_unknown_feature() -> None:
    """967878534 msat reads as 967878.534 sat; bit 99 is named unknown (optional)."""
    week = describe_invoice(_invoice_of(next(v for v in VALID if v["amount"] == "9678785340p")))
    assert "amount: 967878534 msat (967878.534 sat)" in week
    assert "min_final_cltv_expiry_delta: 10 blocks" in week
    beans = describe_invoice(_invoice_of(next(v for v in VALID if v["title"] == IGNORED_TITLE)))
    assert beans[-11] == ("features: var_onion_optin (required, bit 8), payment_secret "
                          "(required, bit 14), unknown (optional, bit 99)")
    assert beans[-1] == "skipped field 'n' (54 words): 'n' must have data_length 53"


def test_human_reading_escapes_control_characters() -> None:
    """A description cannot send terminal escapes: control characters print escaped."""
    lines = describe_invoice(_regtest_invoice(description="pay\x1b[2Jme\n"), now=TIMESTAMP)
    assert 'description: "pay\\x1b[2Jme\\n"' in lines
    assert "amount: 150000000 msat (150000 sat)" in lines
    assert "expires: 2025-12-02 20:26:40 UTC (7200 s after creation); 7200 s left" in lines


def test_json_form_of_an_invoice() -> None:
    """invoice_as_dict gives hex strings and scid text, and the exact invoice text back."""
    inv = _regtest_invoice(include_payee_node_id=True)
    data = invoice_as_dict(inv)
    assert json.loads(json.dumps(data)) == data
    assert data["invoice"] == inv.encode()
    assert data["amount_msat"] == 150_000_000
    assert data["payee_node_id"] == NODE_ID.hex()
    assert data["payee_node_id_recovered"] is False
    assert data["features"] == [8, 14]
    assert data["route_hints"][1][1] == {
        "pubkey": PEER_ID.hex(), "short_channel_id": "107x3x2", "fee_base_msat": 2,
        "fee_proportional_millionths": 300, "cltv_expiry_delta": 144}


def test_human_reading_of_an_expiry_beyond_the_calendar() -> None:
    """An 'x' of 2**63 s is read (no crash) and shown as seconds since 1970."""
    lines = describe_invoice(_regtest_invoice(expiry_seconds=2**63))
    assert f"expires: {TIMESTAMP + 2**63} s after 1970 (beyond the calendar) ({2**63} s after " \
        "creation)" in lines


def test_an_invoice_shaped_like_electrums_decodes() -> None:
    """Electrum's regtest invoices (bits 8, 14, 17, 151; c 147; r fee 0/0, delta 1) are read."""
    hint = (RouteHintHop(pubkey=PEER_ID, short_channel_id=bytes.fromhex("0000670000010000"),
                         fee_base_msat=0, fee_proportional_millionths=0, cltv_expiry_delta=1),)
    fields = _our_fields(expiry_seconds=3600, min_final_cltv_expiry_delta=147, route_hints=[hint],
                         features=Features(bits=frozenset({8, 14, 17, 151})))
    inv = Bolt11Invoice.decode(_sign_raw("lnbcrt1m", TIMESTAMP, fields, NODE_SECRET))
    assert sorted(inv.features.bits) == [8, 14, 17, 151]
    assert inv.min_final_cltv_expiry_delta == 147
    assert inv.route_hints == (hint,)
    check_payable(inv, network=Network.REGTEST, now=TIMESTAMP)
