"""A human reading of a decoded BOLT 11 invoice, as lines of text (for ``chanlab decode``).

Pure: the caller passes ``now`` if it wants to know whether the invoice has expired. Text from
the invoice (the description) is shown with control characters escaped, so an invoice cannot
drive the terminal (BOLT 11 "Security Considerations for Payment Descriptions").
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from channel.bolt11 import (
    DEFAULT_MIN_FINAL_CLTV_EXPIRY_DELTA,
    Bolt11Invoice,
    Network,
    RouteHintHop,
)
from channel.wire import Feature, Features

__all__ = ["describe_invoice", "feature_names", "format_amount_msat", "invoice_as_dict"]

_NETWORK_NAMES = {Network.MAINNET: "bitcoin mainnet", Network.TESTNET: "bitcoin testnet",
                  Network.SIGNET: "bitcoin signet", Network.REGTEST: "bitcoin regtest"}


def format_amount_msat(amount_msat: int) -> str:
    """``250000000 msat (250000 sat)``; a part of a satoshi shows as decimals of sat."""
    sat, msat = divmod(amount_msat, 1000)
    sat_text = f"{sat}" if msat == 0 else f"{sat}.{msat:03d}"
    return f"{amount_msat} msat ({sat_text} sat)"


def feature_names(features: Features) -> list[str]:
    """Each set bit by its BOLT 9 name, e.g. ``payment_secret (required, bit 14)``."""
    names: list[str] = []
    for bit in sorted(features.bits):
        kind = "required" if bit % 2 == 0 else "optional"
        try:
            name = Feature(bit - bit % 2).name.lower()
        except ValueError:
            name = "unknown"
        names.append(f"{name} ({kind}, bit {bit})")
    return names


def _printable(text: str) -> str:
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _utc(timestamp: int) -> str:
    try:
        return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, ValueError, OSError):  # an 'x' of centuries: past year 9999
        return f"{timestamp} s after 1970 (beyond the calendar)"


def _hop_line(hop: RouteHintHop) -> str:
    return (f"from {hop.pubkey.hex()} over channel {hop.short_channel_id_text}: "
            f"fee {hop.fee_base_msat} msat + {hop.fee_proportional_millionths} ppm, "
            f"cltv_expiry_delta {hop.cltv_expiry_delta} blocks")


def describe_invoice(invoice: Bolt11Invoice, *, now: int | None = None) -> list[str]:
    """The invoice as labelled lines for people: what to pay, to whom, until when, and how."""
    tags = {f.tag for f in invoice.tagged_fields}
    lines = [f"network: {_NETWORK_NAMES[invoice.network]} ({invoice.network.hrp_prefix})"]
    lines.append("amount: " + ("any (none in the invoice: the payer chooses)"
                               if invoice.amount_msat is None
                               else format_amount_msat(invoice.amount_msat)))
    if invoice.description is not None:
        lines.append(f'description: "{_printable(invoice.description)}"')
    if invoice.description_hash is not None:
        lines.append(f"description hash: {invoice.description_hash.hex()} (the description "
                     "itself is not in the invoice)")
    how = ("recovered from the signature" if invoice.payee_node_id_recovered
           else "given in the 'n' field, signature checked")
    lines.append(f"payee: {invoice.payee_node_id.hex()} ({how})")
    lines.append(f"payment hash: {invoice.payment_hash.hex()}")
    lines.append(f"payment secret: {invoice.payment_secret.hex()}")
    lines.append(f"created: {_utc(invoice.timestamp)} (timestamp {invoice.timestamp})")
    expiry = (f"expires: {_utc(invoice.expires_at)} ({invoice.expiry_seconds} s after "
              f"creation{'' if 'x' in tags else ', the default'})")
    if now is not None:
        expiry += ("; EXPIRED" if invoice.is_expired(now)
                   else f"; {invoice.expires_at - now} s left")
    lines.append(expiry)
    delta = invoice.min_final_cltv_expiry_delta
    lines.append(f"min_final_cltv_expiry_delta: {delta} blocks"
                 + ("" if "c" in tags else f" (no 'c' field: the default "
                                           f"{DEFAULT_MIN_FINAL_CLTV_EXPIRY_DELTA})"))
    lines.append("features: " + (", ".join(feature_names(invoice.features)) or "none"))
    for number, hint in enumerate(invoice.route_hints, start=1):
        lines.append(f"route hint {number} ({len(hint)} hop{'s' if len(hint) > 1 else ''}):")
        lines.extend(f"  {_hop_line(hop)}" for hop in hint)
    for fallback in invoice.fallback_addresses:
        lines.append(f"fallback address: {fallback.address(invoice.network)} ({fallback.kind})")
    if invoice.payment_metadata is not None:
        lines.append(f"payment metadata: {invoice.payment_metadata.hex()}")
    for skipped in invoice.skipped_fields:
        lines.append(f"skipped field '{skipped.field.tag}' ({len(skipped.field.data)} words): "
                     f"{skipped.reason}")
    return lines


def invoice_as_dict(invoice: Bolt11Invoice) -> dict[str, Any]:
    """The decoded invoice as JSON-ready values (hex for bytes), for ``--json`` output."""
    def hex_or_none(data: bytes | None) -> str | None:
        return None if data is None else data.hex()

    return {
        "invoice": invoice.encode(), "network": invoice.network.name.lower(),
        "amount_msat": invoice.amount_msat, "timestamp": invoice.timestamp,
        "expiry_seconds": invoice.expiry_seconds, "expires_at": invoice.expires_at,
        "payment_hash": invoice.payment_hash.hex(),
        "payment_secret": invoice.payment_secret.hex(),
        "description": invoice.description,
        "description_hash": hex_or_none(invoice.description_hash),
        "min_final_cltv_expiry_delta": invoice.min_final_cltv_expiry_delta,
        "payee_node_id": invoice.payee_node_id.hex(),
        "payee_node_id_recovered": invoice.payee_node_id_recovered,
        "features": sorted(invoice.features.bits),
        "feature_names": feature_names(invoice.features),
        "route_hints": [[{"pubkey": hop.pubkey.hex(),
                          "short_channel_id": hop.short_channel_id_text,
                          "fee_base_msat": hop.fee_base_msat,
                          "fee_proportional_millionths": hop.fee_proportional_millionths,
                          "cltv_expiry_delta": hop.cltv_expiry_delta} for hop in hint]
                        for hint in invoice.route_hints],
        "fallback_addresses": [{"version": f.version, "type": f.kind,
                                "address": f.address(invoice.network)}
                               for f in invoice.fallback_addresses],
        "payment_metadata": hex_or_none(invoice.payment_metadata),
        "skipped_fields": [{"type": s.field.tag, "data_length": len(s.field.data),
                            "reason": s.reason} for s in invoice.skipped_fields],
    }
