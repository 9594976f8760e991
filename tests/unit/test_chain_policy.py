"""Developer powers are refused on every chain but regtest."""

from __future__ import annotations

import pytest

from channel.chain import require_regtest
from channel.errors import UnsafeOperation


def test_regtest_allows_developer_powers() -> None:
    """On regtest, --allow-cheating and cheat are allowed (no exception)."""
    require_regtest("regtest", "cheat")


@pytest.mark.parametrize("chain", ["main", "test", "testnet4", "signet", ""])
def test_every_other_chain_refuses_and_says_why(chain: str) -> None:
    """Any chain name bitcoind may report other than regtest raises UnsafeOperation, naming
    the action and the chain."""
    with pytest.raises(UnsafeOperation, match=f"cheat refuses to run on {chain!r}"):
        require_regtest(chain, "cheat")
