"""I/O: ``chanlab decode INVOICE``: read any BOLT 11 invoice, from chanlab or another wallet."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any


def register(subparsers: argparse._SubParsersAction[Any]) -> None:
    parser = subparsers.add_parser(
        "decode", help="show what a BOLT 11 invoice asks for (any wallet's, any network)")
    parser.add_argument("invoice", help="the invoice text (lnbcrt1..., lnbc1..., lntb1...)")
    parser.add_argument("--json", action="store_true", help="print the fields as JSON")
    parser.set_defaults(handler=_decode)


def _decode(args: argparse.Namespace) -> int:
    from channel.bolt11 import Bolt11Invoice
    from channel.bolt11_text import describe_invoice, invoice_as_dict

    invoice = Bolt11Invoice.decode(args.invoice.strip())  # InvalidInvoice: one line, exit 1
    if args.json:
        print(json.dumps(invoice_as_dict(invoice), indent=1))
    else:
        print("\n".join(describe_invoice(invoice, now=int(time.time()))))
    return 0
