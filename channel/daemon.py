"""I/O: the daemon shell shared by the node and the tower: key file, info file, control socket.

A daemon holds ``<home>/<kind>.lock`` (``fcntl.flock``) for its whole life, so a second process
on the same home (same key, same database) refuses to start and names the running one. It
keeps its static secret in ``<home>/<key file>`` (mode 0600, made on first start),
publishes ``<home>/<info file>`` (its address and pid; written atomically, so a reader never
sees half of it), answers its control socket ``<home>/control.sock`` from a table of
:mod:`channel.control_api`, and stops on SIGINT/SIGTERM. Logging for a daemon process is set up
by :func:`daemon_logging`.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
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
from channel.errors import ChanlabError, StartRefused, UnsafeOperation

__all__ = ["ControlHandler", "DaemonShell", "daemon_logging", "hold_home_lock",
           "load_or_create_node_key"]

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


def hold_home_lock(path: Path, what: str) -> int:
    """Take the exclusive lock ``path`` for this process (its file descriptor; closing it, or
    the process ending however it ends, releases the lock). The file holds the holder's pid."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise StartRefused(f"{what} is already running (pid {holder}); stop that process "
                           f"first, or give this one another name") from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return fd


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
        kind = info_file.rsplit(".", 1)[0]
        # before the key: two first starts racing must not make two keys
        self._lock_fd: int | None = hold_home_lock(home / f"{kind}.lock", f"the {kind} in {home}")
        self.key_existed = (home / key_file).exists()
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

    def release_lock(self) -> None:
        """Free the home for another process: the daemon's last step when it stops."""
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

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
