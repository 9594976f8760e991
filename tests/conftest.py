"""Shared test setup for all of chanlab's tests.

* python-bitcoinlib's chain parameters are set to regtest once, here, for the whole run
  (``bitcoin.SelectParams`` mutates module state, so it is never done on import).
* A payment batch's kept add budget is checked against a full count at every use
  (``channel.self_checks.CHECK_BUDGET_MEMO``).
* Every test under ``tests/integration/`` gets the ``regtest`` marker automatically, so
  ``pytest -m 'not regtest'`` runs the pure layer alone. The ``docker`` marker is set by hand on
  the few tests that need a Docker engine (they skip, with the reason, where none answers).
* The fixtures ``bitcoind``, ``node_factory``, ``wait_for`` and ``bitcoind_binary``, and the
  option ``--bitcoind-backend local|docker`` (or ``$CHANLAB_BACKEND``), come from chanlab's own
  pytest plugin (``chanlab.pytest_plugin``, loaded through its ``pytest11`` entry point), the
  one any project installing chanlab gets: chanlab's suite runs on it, so every ``make test``
  exercises it. ``tests/integration/conftest.py`` adds the suite's own fixtures on top.
"""

from __future__ import annotations

import os
from pathlib import Path

import bitcoin
import pytest

import channel.self_checks

bitcoin.SelectParams("regtest")
# a payment batch keeps its budget instead of recounting the log per HTLC: in tests, every
# use of the kept budget is checked against a full count
channel.self_checks.CHECK_BUDGET_MEMO = True
os.environ[channel.self_checks.CHECK_BUDGET_ENV] = "1"   # and in every node process

_INTEGRATION = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if _INTEGRATION in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.regtest)
