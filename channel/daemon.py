"""I/O: the daemon shell shared by the node and the tower: key file, info file, control socket.

A daemon keeps its static secret in ``<home>/<key file>`` (mode 0600, made on first start),
publishes ``<home>/<info file>`` (its address and pid; written atomically, so a reader never
sees half of it), answers its control socket ``<home>/control.sock`` from a table of
:mod:`channel.control_api`, and stops on SIGINT/SIGTERM. Logging for a daemon process is set up
by :func:`daemon_logging`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from channel.control_api import (
    BadControlRequest,
    Command,
    error_answer,
    ok_answer,
    parse_request,
)
from channel.control_socket import start_unix_server
from channel.errors import ChanlabError, UnsafeOperation

__all__ = ["ControlHandler", "DaemonShell", "daemon_logging", "load_or_create_node_key"]

log = logging.getLogger("chanlab.daemon")

ControlHandler = Callable[..., Awaitable[Any]]


def load_or_create_node_key(path: Path) -> bytes:
    """A daemon's static secret, kept in ``path`` with mode 0600 (created on first start)."""
    if path.exists():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise UnsafeOperation(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
        secret = bytes.fromhex(path.read_text().strip())
        if len(secret) != 32:
            raise ValueError(f"{path} does not hold a 32-byte hex key")
        return secret
    secret = secrets.token_bytes(32)
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret.hex() + "\n")
    return secret


def daemon_logging(home: Path, label: str, log_name: str, to_stderr: bool = True) -> None:
    """A daemon's log: ``home/log_name`` (and stderr if ``to_stderr``), every line tagged with
    ``label``."""
    handlers: list[logging.Handler] = [logging.FileHandler(home / log_name)]
    if to_stderr:
        handlers.append(logging.StreamHandler(sys.stderr))
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s {label} %(name)s %(message)s",
        handlers=handlers)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per RPC call otherwise


class DaemonShell:
    """The parts every daemon has: its home, info file, control socket, stop signal."""

    def __init__(self, home: Path, *, info_file: str, key_file: str,
                 commands: Mapping[str, Command], handlers: Mapping[str, ControlHandler],
                 ) -> None:
        missing = set(commands) - set(handlers)
        if missing:  # a command in the table with no handler is a programming error
            raise ValueError(f"control commands without a handler: {sorted(missing)}")
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        os.chmod(home, 0o700)
        self.secret = load_or_create_node_key(home / key_file)
        self._info_file = info_file
        self._commands = dict(commands)
        self._handlers = dict(handlers)
        self._control: asyncio.Server | None = None
        self.stopping = asyncio.Event()

    async def open_control(self) -> None:
        self._control = await start_unix_server(self._on_control, self.home / "control.sock")

    def publish(self, info: dict[str, Any]) -> None:
        """Write the info file (address, pid) atomically."""
        info = {**info, "pid": os.getpid()}
        tmp = self.home / f"{self._info_file}.tmp"
        tmp.write_text(json.dumps(info))
        tmp.replace(self.home / self._info_file)

    def install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.stopping.set)

    def close(self) -> None:
        self.stopping.set()
        if self._control is not None:
            self._control.close()
        with contextlib.suppress(FileNotFoundError):
            (self.home / "control.sock").unlink()

    async def answer(self, line: bytes) -> bytes:
        """The answer line to one request line: a result, or a one-line error."""
        try:
            cmd, args = parse_request(line, self._commands)
        except BadControlRequest as exc:
            return error_answer(str(exc))
        try:
            return ok_answer(await self._handlers[cmd](**args))
        except (ChanlabError, ValueError, KeyError, OSError, TimeoutError) as exc:
            text = str(exc) or type(exc).__name__
            return error_answer(f"{type(exc).__name__}: {text}")
        except Exception as exc:  # a bug in a handler: still answer, and keep the trace
            log.exception("control command %s failed", cmd)
            return error_answer(f"internal error in {cmd}: {type(exc).__name__}: {exc}")

    async def _on_control(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        try:
            line = await reader.readline()
            writer.write(await self.answer(line))
            await writer.drain()
        except ConnectionError as exc:
            log.info("control client went away: %s", exc)
        finally:
            writer.close()
