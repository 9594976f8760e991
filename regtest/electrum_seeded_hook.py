"""I/O: runs inside Electrum's Python, never chanlab's: a seeded demo's Electrum channel keys.

*** Used ONLY by ``chanlab demo electrum --seed N`` on regtest, where repeating is the point. ***

Why it exists: Electrum draws every new channel's key seed (its revocation, HTLC and
delayed-payment basepoints and its per-commitment secrets) from ``os.urandom``: its peer code
calls ``LNWallet.make_local_config_for_new_channel`` without the ``channel_seed`` that method
accepts, and no Electrum option sets one. With a fresh seed each run, Alice's commitment
transaction (its ``to_local`` output pays to Erin's revocation key) has a new txid each run,
and the story's pictures show it. Everything else of Erin's repeats through Electrum's own
mechanisms: her wallet is restored from seed words, and for anchors channels Electrum already
derives the channel's funding key from the wallet, the peer and the peer's funding key.

What it does: only when ``CHANLAB_ELECTRUM_CHANNEL_SEED_KEY`` (hex) is set in the Electrum
process's environment, it passes that method a ``channel_seed`` of HMAC-SHA256(that key, the
channel's funding pubkey): one per channel (Electrum refuses to reuse a funding key), the same
every run. A channel without a derived funding key (not anchors) keeps Electrum's random seed.
Nothing else of Electrum changes; its other randomness reaches no transaction of the story.

How it gets there: ``ElectrumWallet`` copies this file as ``sitecustomize.py`` into a folder
of the wallet's home and puts that folder first on the daemon's ``PYTHONPATH``, so Python runs
it at start-up. It patches ``electrum.lnworker`` when Electrum imports it (Electrum imports its
modules in an order of its own), and refuses an Electrum other than the version it was read
against. Standard library only: Electrum's Python has none of chanlab's packages.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Sequence
from types import ModuleType
from typing import Any

KEY_ENV = "CHANLAB_ELECTRUM_CHANNEL_SEED_KEY"
#: The Electrum whose ``make_local_config_for_new_channel`` this was written against.
ELECTRUM_VERSION = "4.8.3"
_MODULE = "electrum.lnworker"


def channel_seed(key: bytes, funding_pubkey: bytes) -> bytes:
    """The channel key seed of the channel whose (Electrum-side) funding pubkey is given."""
    return hmac.new(key, b"chanlab electrum channel seed/" + funding_pubkey,
                    hashlib.sha256).digest()


def _patch(lnworker: ModuleType, key: bytes) -> None:
    from electrum.version import ELECTRUM_VERSION as running  # type: ignore[import-not-found]

    if running != ELECTRUM_VERSION:
        raise SystemExit(f"chanlab's seeded Electrum hook was written for Electrum "
                         f"{ELECTRUM_VERSION}, not {running}: run `chanlab electrum install`")
    wallet_class = lnworker.LNWallet
    original = wallet_class.make_local_config_for_new_channel

    def seeded(self: Any, **kwargs: Any) -> Any:   # Electrum's arguments are keyword-only
        keypair = kwargs.get("multisig_funding_keypair")
        if kwargs.get("channel_seed") is None and keypair is not None:
            kwargs["channel_seed"] = channel_seed(key, bytes(keypair.pubkey))
        return original(self, **kwargs)

    wallet_class.make_local_config_for_new_channel = seeded


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when ``electrum.lnworker`` is imported, patch it once loaded."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname != _MODULE:
            return None
        sys.meta_path.remove(self)            # once; and let the real finders find it
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        loader: Any = spec.loader
        load = loader.exec_module
        key = self._key

        def exec_module(module: ModuleType) -> None:
            load(module)
            _patch(module, key)

        loader.exec_module = exec_module
        return spec


def install() -> None:
    """Patch Electrum's channel seeds if this process was given a key; else do nothing."""
    key_hex = os.environ.pop(KEY_ENV, "")     # not inherited by anything Electrum starts
    if key_hex:
        sys.meta_path.insert(0, _PatchOnImport(bytes.fromhex(key_hex)))


if __name__ == "sitecustomize":   # run by Python at start-up, as the copy ElectrumWallet made
    install()
