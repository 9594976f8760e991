"""I/O (the clock): wait until a condition holds, polling with back-off, or raise ``WaitTimeout``.

Tests and demos wait with this instead of sleeping a fixed time: it returns as soon as the
condition holds and fails with a message naming what was awaited.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from regtest.errors import WaitTimeout

_T = TypeVar("_T")


def wait_for(
    predicate: Callable[[], _T | None],
    *,
    timeout: float = 30.0,
    what: str = "a condition",
    first_interval: float = 0.02,
    max_interval: float = 0.5,
) -> _T:
    """Poll ``predicate`` until it returns something truthy; return that value.

    The interval starts at ``first_interval`` seconds and doubles up to ``max_interval``.
    Raises ``WaitTimeout`` (a ``TimeoutError``) saying ``what`` after ``timeout`` seconds.
    Exceptions raised by ``predicate`` propagate at once: a broken check is not a slow one.
    """
    if timeout < 0:
        raise ValueError(f"timeout must be >= 0, got {timeout}")
    deadline = time.monotonic() + timeout
    interval = first_interval
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(f"timed out after {timeout:.1f} s waiting for {what}")
        time.sleep(min(interval, remaining))
        interval = min(interval * 2, max_interval)
