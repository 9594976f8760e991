"""Invoices: how a payee tells a payer what to pay (pure).

chanlab's payments are direct (one hop), so an invoice only needs the payee's node id, the
amount, the payment hash, the payment secret (BOLT 4 ``payment_data``, which stops anyone but
the invoice's holder from probing the payee) and the final CLTV delta. We encode them as
``chanlab1`` followed by hex, with a checksum, rather than BOLT 11: BOLT 11 adds bech32, tagged
fields and a node signature that a one-hop teaching tool does not need yet, and a readable
format lets a student see every field.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from channel.errors import MalformedMessage

__all__ = ["Invoice"]

_PREFIX = "chanlab1"


@dataclass(frozen=True, slots=True, kw_only=True)
class Invoice:
    """A request for ``amount_msat`` to ``payee_node_id``, redeemable once."""

    payee_node_id: bytes
    amount_msat: int
    payment_hash: bytes
    payment_secret: bytes
    min_final_cltv_expiry_delta: int = 18
    description: str = ""

    def __post_init__(self) -> None:
        if len(self.payee_node_id) != 33 or len(self.payment_hash) != 32 or \
                len(self.payment_secret) != 32:
            raise ValueError("Invoice: node id 33 bytes, hash and secret 32 bytes")
        if self.amount_msat <= 0:
            raise ValueError("Invoice: amount_msat must be positive")
        if not 0 < self.min_final_cltv_expiry_delta < 65536:
            raise ValueError("Invoice: min_final_cltv_expiry_delta out of range")

    def encode(self) -> str:
        desc = self.description.encode()
        body = (self.payee_node_id + self.amount_msat.to_bytes(8, "big") + self.payment_hash
                + self.payment_secret + self.min_final_cltv_expiry_delta.to_bytes(2, "big")
                + len(desc).to_bytes(2, "big") + desc)
        checksum = hashlib.sha256(body).digest()[:4]
        return _PREFIX + (body + checksum).hex()

    @classmethod
    def decode(cls, text: str) -> Invoice:
        if not text.startswith(_PREFIX):
            raise MalformedMessage(f"not a chanlab invoice (expected prefix {_PREFIX})")
        try:
            raw = bytes.fromhex(text[len(_PREFIX):])
        except ValueError as exc:
            raise MalformedMessage("invoice is not hex after its prefix") from exc
        body, checksum = raw[:-4], raw[-4:]
        if len(body) < 109 or hashlib.sha256(body).digest()[:4] != checksum:
            raise MalformedMessage("invoice checksum mismatch or truncated invoice")
        desc_len = int.from_bytes(body[107:109], "big")
        if len(body) != 109 + desc_len:
            raise MalformedMessage("invoice length mismatch")
        try:
            return cls(payee_node_id=body[:33], amount_msat=int.from_bytes(body[33:41], "big"),
                       payment_hash=body[41:73], payment_secret=body[73:105],
                       min_final_cltv_expiry_delta=int.from_bytes(body[105:107], "big"),
                       description=body[109:].decode())
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedMessage(f"invalid invoice: {exc}") from exc
