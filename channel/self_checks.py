"""Switches for the test suite's self-checks: costly cross-checks that stay off in use.

No imports, so the node command can switch them on before anything else loads (an idle node
loads nothing for them; see tests/integration/test_idle_footprint.py).
"""

from __future__ import annotations

__all__ = ["CHECK_BUDGET_ENV", "CHECK_BUDGET_MEMO"]

#: Every use of a kept add budget (a batch of our adds, a run of the peer's) is checked against
#: a full count over the log (channel.channel_core, channel.add_budget).
CHECK_BUDGET_MEMO = False
#: In a node process's environment (the test suite sets it), turns CHECK_BUDGET_MEMO on.
CHECK_BUDGET_ENV = "CHANLAB_TEST_CHECK_BUDGET"
