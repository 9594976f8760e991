"""I/O: read a bitcoind RPC password from a file only its owner can read.

A node attached to a bitcoind on another host (``chanlab bitcoind attach --rpc-user U
--rpc-password-file F``) keeps only the file's path in ``bitcoind.json`` and reads the password
when it connects, like ssh refuses a private key others can read: a password others could read
is refused with a one-line fix, and the password itself never appears in a message.
"""

from __future__ import annotations

import stat
from pathlib import Path

from regtest.errors import SetupError

__all__ = ["check_password_file", "read_password_file"]


def check_password_file(path: Path) -> None:
    """Raise ``SetupError`` unless ``path`` is a regular file with no group/other permissions."""
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise SetupError(f"cannot read the RPC password file {path}: {exc.strerror}; create it "
                         "with the password on one line and `chmod 600` it") from None
    if not stat.S_ISREG(mode):
        raise SetupError(f"the RPC password file {path} is not a regular file")
    if mode & 0o077:
        raise SetupError(f"the RPC password file {path} is readable by others "
                         f"(mode {stat.S_IMODE(mode):04o}): run `chmod 600 {path}`")


def read_password_file(path: Path) -> str:
    """The password in ``path`` (its first line), after ``check_password_file``."""
    check_password_file(path)
    try:
        lines = path.read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise SetupError(f"cannot read the RPC password file {path}: {exc}") from None
    if not lines or not lines[0]:
        raise SetupError(f"the RPC password file {path} is empty: put the password on its "
                         "first line")
    return lines[0]
