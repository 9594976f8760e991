"""I/O: start Electrum wallets (a foreign Lightning implementation) next to chanlab nodes.

``ElectrumFactory`` is what the ``electrum_factory`` fixture hands a test: each wallet is an
Electrum daemon (``regtest.electrum.ElectrumWallet``) in a folder of its own under one temp
folder, served by the session's ElectrumX on the session's bitcoind, started and synced before
it is returned. ``close()`` stops every wallet and removes the folder, whatever happened
before; ``logs()`` reads each wallet's log for a failure report.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from chanlab.bitcoind import Bitcoind
from regtest.electrum import ElectrumWallet, ElectrumX, start_wallets
from regtest.electrum_provision import ElectrumInstall
from regtest.wait import wait_for

__all__ = ["DEFAULT_ELECTRUM_TO_SELF_DELAY", "ElectrumFactory", "wait_for_balance"]

#: blocks; Electrum's own default is 1008: short, so force-close tests mine little
DEFAULT_ELECTRUM_TO_SELF_DELAY = 10
_LOG_TAIL_LINES = 300


def wait_for_balance(wallet: ElectrumWallet, at_least_sat: int, *,
                     timeout: float = 30.0) -> int:
    """Wait until ``wallet``'s confirmed on-chain balance reaches ``at_least_sat``; return it."""
    def reached() -> int | None:
        balance = wallet.balance_sat()
        return balance if balance >= at_least_sat else None

    found: int = wait_for(reached, timeout=timeout,
                          what=f"Electrum wallet {wallet.home.name} to hold {at_least_sat} sat")
    return found


class ElectrumFactory:
    """Starts Electrum wallets on ``electrumx`` under a temp folder; ``close()`` cleans up."""

    def __init__(self, install: ElectrumInstall, electrumx: ElectrumX, bitcoind: Bitcoind, *,
                 prefix: str = "chanlab-electrum-", keep: bool = False) -> None:
        self.install = install
        self.electrumx = electrumx
        self.bitcoind = bitcoind
        self.home = Path(tempfile.mkdtemp(prefix=prefix))
        self.keep = keep
        self.wallets: list[ElectrumWallet] = []
        self._names = (f"electrum{n}" for n in itertools.count(1))

    def get_wallet(self, name: str | None = None, *, funds_sat: int = 0,
                   to_self_delay: int = DEFAULT_ELECTRUM_TO_SELF_DELAY) -> ElectrumWallet:
        """A started, synced Electrum wallet with Lightning on, accepting channels, holding
        ``funds_sat`` confirmed on chain; ``to_self_delay`` is the CSV delay it imposes on
        its peers' to_local (its ``lightning_to_self_delay``)."""
        return self.get_wallets(1, names=[name] if name else None, funds_sat=funds_sat,
                                to_self_delay=to_self_delay)[0]

    def get_wallets(self, n: int, *, names: list[str] | None = None, funds_sat: int = 0,
                    to_self_delay: int = DEFAULT_ELECTRUM_TO_SELF_DELAY
                    ) -> list[ElectrumWallet]:
        """``n`` wallets with the same options, started together (their start-ups overlap)."""
        chosen = names or [next(self._names) for _ in range(n)]
        wallets = [ElectrumWallet(self.install, home=self.home / name,
                                  server=self.electrumx.server, to_self_delay=to_self_delay)
                   for name in chosen]
        start_wallets(wallets)
        self.wallets.extend(wallets)
        if funds_sat:
            self.fund(wallets, funds_sat)
        return wallets

    def fund(self, wallets: list[ElectrumWallet], amount_sat: int, *,
             timeout: float = 30.0) -> None:
        """Pay ``amount_sat`` from the miner to each wallet, in one block; return once each
        wallet counts it as confirmed."""
        before = [w.balance_sat() for w in wallets]
        miner = self.bitcoind.miner
        txids = [miner.send_to_address(w.new_address(), amount_sat) for w in wallets]
        self.bitcoind.generate_block(1)
        for txid in txids:
            miner.wait_for_confirmation(txid)
        for wallet, had in zip(wallets, before, strict=True):
            wait_for_balance(wallet, had + amount_sat, timeout=timeout)

    def logs(self) -> list[tuple[str, str]]:
        """(title, last lines of the log) for each wallet, for a failing test's report."""
        out = []
        for wallet in self.wallets:
            try:
                text = (wallet.home / "electrum.log").read_text(errors="replace")
            except OSError:
                continue
            out.append((f"Electrum {wallet.home.name} log",
                        "\n".join(text.splitlines()[-_LOG_TAIL_LINES:])))
        return out

    def close(self) -> None:
        """Stop every wallet; remove the folder unless ``keep``."""
        for wallet in self.wallets:
            wallet.stop()
        if not self.keep:
            shutil.rmtree(self.home, ignore_errors=True)

    def __enter__(self) -> ElectrumFactory:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        self.close()
