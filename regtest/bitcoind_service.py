"""I/O: the hand-run regtest bitcoind of a ``$CHANLAB_HOME`` (``chanlab bitcoind start|stop``).

One bitcoind per home, on the same ports every time: the first start picks free loopback ports
and records them in ``bitcoind/ports.json``; later starts reuse them, so nodes that kept running
across a bitcoind restart find it where it was (they re-read its new cookie by themselves). The
running service is ``bitcoind.pid`` (the ``chanlab bitcoind start`` process) plus
``bitcoind.json`` (how nodes reach it); both are removed when it stops, and a leftover pair from a
crashed run is noticed (its pid is gone) and cleaned up.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

from regtest.errors import RegtestError
from regtest.node import check_port_free, free_port

__all__ = ["BitcoindService", "ServiceRunning"]

_PORT_NAMES = ("rpc_port", "p2p_port", "zmq_rawblock_port", "zmq_rawtx_port")


class ServiceRunning(RegtestError):
    """A bitcoind already runs for this home: use it, or stop it first."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True, slots=True)
class BitcoindService:
    """The files of one home's hand-run bitcoind."""

    home: Path

    @property
    def datadir(self) -> Path:
        return self.home / "bitcoind"

    @property
    def ports_file(self) -> Path:
        return self.datadir / "ports.json"

    @property
    def pid_file(self) -> Path:
        return self.home / "bitcoind.pid"

    @property
    def endpoint_file(self) -> Path:
        return self.home / "bitcoind.json"

    def running_pid(self) -> int | None:
        """The pid of the live ``chanlab bitcoind start`` for this home; stale files removed."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            pid = None
        if pid is not None and _alive(pid):
            return pid
        self.clean_up()
        return None

    def claim(self) -> None:
        """Become this home's bitcoind service, or raise ``ServiceRunning`` naming the other."""
        pid = self.running_pid()
        if pid is not None and pid != os.getpid():
            raise ServiceRunning(
                f"a bitcoind already runs for {self.home} (chanlab process {pid}): use it, or "
                "stop it with `chanlab bitcoind stop`")
        self.home.mkdir(parents=True, exist_ok=True)
        tmp = self.pid_file.with_suffix(".tmp")
        tmp.write_text(f"{os.getpid()}\n")
        os.replace(tmp, self.pid_file)

    def ports(self) -> dict[str, int]:
        """The ports of this home: recorded ones (checked free), or new ones, then recorded."""
        try:
            recorded = json.loads(self.ports_file.read_text())
            ports = {name: int(recorded[name]) for name in _PORT_NAMES}
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            ports = {}
        if ports:
            for name, port in ports.items():
                check_port_free(port, f"this home's bitcoind {name.removesuffix('_port')}")
            return ports
        chosen: set[int] = set()
        while len(chosen) < len(_PORT_NAMES):
            chosen.add(free_port())
        ports = dict(zip(_PORT_NAMES, sorted(chosen), strict=True))
        self.datadir.mkdir(parents=True, exist_ok=True)
        self.ports_file.write_text(json.dumps(ports, indent=1) + "\n")
        return ports

    def clean_up(self) -> None:
        """Remove the service files (a stopped or crashed service leaves none behind)."""
        self.endpoint_file.unlink(missing_ok=True)
        self.pid_file.unlink(missing_ok=True)

    def stop(self, *, timeout_s: float = 60.0) -> int | None:
        """Ask the running service to stop (SIGTERM) and wait until it has; its pid or None."""
        pid = self.running_pid()
        if pid is None:
            return None
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while _alive(pid) and self.pid_file.exists():
            if time.monotonic() > deadline:
                raise RegtestError(f"bitcoind service {pid} did not stop within {timeout_s:.0f} s;"
                                   f" kill it with: kill {pid}")
            time.sleep(0.1)
        return pid
