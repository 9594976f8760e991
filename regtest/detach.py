"""I/O: run a chanlab daemon in the background and return once it is ready (``--detach``).

A workshop's walk-through must work as typed: ``chanlab node start --name alice --detach``
returns only when Alice's node answers on its control socket, so the next command never races
it, and the daemon's output goes to a file instead of the terminal. The child runs in its own
session (Ctrl-C in the terminal does not reach it; ``chanlab alice stop`` does).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from regtest.errors import NodeStartError

__all__ = ["start_detached"]


def _tail(path: Path, lines: int = 1) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return " / ".join(text[-lines:])


def start_detached(argv: Sequence[str], *, output: Path, ready: Callable[[], bool],
                   what: str, timeout_s: float = 120.0) -> int:
    """Start ``chanlab ARGV`` detached, its output in ``output``; wait until ``ready()``.

    Returns the child's pid. Raises ``NodeStartError`` with the child's last output line if it
    exits first, or if it is not ready within ``timeout_s`` (the child is then stopped).
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("ab") as out:
        child = subprocess.Popen([sys.executable, "-m", "regtest.cli", *argv],
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                 start_new_session=True, env=os.environ.copy())
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise NodeStartError(f"{what} stopped at start ({_tail(output) or 'no output'}); "
                                 f"see {output}")
        if ready():
            return child.pid
        time.sleep(0.1)
    child.terminate()
    raise NodeStartError(f"{what} was not ready within {timeout_s:.0f} s; see {output}")
