"""I/O: choose the bitcoind chanlab runs, and provision one when the machine has none.

The search order, first match wins:

1. ``$BITCOIND``: a path to a bitcoind binary. Too old or broken is an error: it was asked for.
2. ``bitcoind`` on ``PATH``. Too old is skipped with a note, so a distribution's old package
   does not stop a first run; the next sources are tried.
3. chanlab's cache (``$XDG_CACHE_HOME/chanlab``, default ``~/.cache/chanlab``), filled by
   ``regtest.provision``.
4. Provisioning into that cache (``ensure_bitcoind`` only; ``locate_bitcoind`` never provisions).

Every binary is probed with ``--version`` and must be Bitcoin Core (or a derivative such as
Bitcoin Knots) version ``MIN_MAJOR_VERSION`` or newer.
"""

from __future__ import annotations

import enum
import os
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from regtest import provision
from regtest.errors import BitcoindNotFound, BitcoindTooOld, BrokenCache, SetupError

MIN_MAJOR_VERSION = 25
"""Oldest Bitcoin Core major version chanlab supports (descriptor wallets by default, v3 relay)."""

Progress = provision.Progress

_VERSION_RE = re.compile(r"version v?(\d+)\.(\d+)(?:\.(\d+))?")
_PROBE_TIMEOUT_S = 20.0


class BinarySource(enum.Enum):
    """Where the chosen bitcoind came from."""

    ENV = "$BITCOIND"
    PATH = "PATH"
    CACHE = "cache"
    PROVISIONED = "provisioned"


@dataclass(frozen=True, slots=True, kw_only=True)
class BitcoindBinary:
    """A bitcoind that was probed and is recent enough, with its bitcoin-cli when one is known."""

    bitcoind: Path
    bitcoin_cli: Path | None
    version: tuple[int, int, int]
    version_line: str
    source: BinarySource
    reason: str

    def __post_init__(self) -> None:
        if self.version[0] < MIN_MAJOR_VERSION:
            raise BitcoindTooOld(_too_old_message(self.bitcoind, self.version_line))


@dataclass(frozen=True, slots=True, kw_only=True)
class Located:
    """The outcome of a search: the binary (or None) and, in order, what was looked at."""

    binary: BitcoindBinary | None
    notes: tuple[str, ...] = field(default=())
    cache: Path
    cache_broken: str | None = None


def parse_version(first_line: str) -> tuple[int, int, int]:
    """Read ``(major, minor, patch)`` from the first line of ``bitcoind --version``.

    Accepts "Bitcoin Core version v27.0.0", "Bitcoin Core daemon version v28.1.0",
    "Bitcoin Knots daemon version v29.4.3.knots20260508" and old "v0.21.1" lines (major 0).
    """
    match = _VERSION_RE.search(first_line)
    if match is None:
        raise SetupError(f"cannot read a version from {first_line!r}: is this really bitcoind?")
    major, minor, patch = match.group(1, 2, 3)
    return int(major), int(minor), int(patch or 0)


def probe(path: Path, *, source: BinarySource, reason: str) -> BitcoindBinary:
    """Run ``<path> --version`` and return the binary, refusing versions below the minimum."""
    try:
        done = subprocess.run(
            [str(path), "--version"],
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT_S,
            check=False,
        )
    except OSError as exc:
        raise SetupError(f"cannot run {path}: {exc.strerror or exc}") from exc
    except subprocess.TimeoutExpired as exc:
        raise SetupError(f"{path} --version did not answer in {_PROBE_TIMEOUT_S:.0f} s") from exc
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        detail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise SetupError(f"{path} --version failed (exit {done.returncode}): {detail[0]}")
    version_line = lines[0].strip()
    version = parse_version(version_line)
    if version[0] < MIN_MAJOR_VERSION:
        raise BitcoindTooOld(_too_old_message(path, version_line))
    return BitcoindBinary(
        bitcoind=path,
        bitcoin_cli=_sibling_cli(path),
        version=version,
        version_line=version_line,
        source=source,
        reason=reason,
    )


def locate_bitcoind(env: Mapping[str, str] | None = None) -> Located:
    """Search ``$BITCOIND``, ``PATH`` and the cache, in that order, without provisioning.

    Raises ``BitcoindTooOld`` or ``SetupError`` for a bad ``$BITCOIND`` (it was asked for
    explicitly). A broken cache is reported in ``Located.cache_broken``, not raised.
    """
    env = os.environ if env is None else env
    cache = provision.cache_dir(env)
    notes: list[str] = []

    explicit = env.get("BITCOIND", "").strip()
    if explicit:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise SetupError(
                f"BITCOIND={explicit} is not a file: point it at a bitcoind binary or unset it"
            )
        binary = probe(path, source=BinarySource.ENV, reason=f"$BITCOIND is set to {explicit}")
        return Located(binary=binary, notes=(), cache=cache)
    notes.append("$BITCOIND is not set")

    on_path = shutil.which("bitcoind", path=env.get("PATH", ""))
    if on_path is None:
        notes.append("no bitcoind on PATH")
    else:
        try:
            binary = probe(
                Path(on_path), source=BinarySource.PATH, reason=f"found on PATH at {on_path}"
            )
        except SetupError as exc:
            notes.append(f"skipped bitcoind on PATH: {exc}")
        else:
            return Located(binary=binary, notes=tuple(notes), cache=cache)

    state = provision.inspect_cache(cache)
    if isinstance(state, provision.CacheReady):
        try:
            binary = probe(
                state.bitcoind,
                source=BinarySource.CACHE,
                reason=f"provisioned earlier into chanlab's cache {cache}",
            )
        except SetupError as exc:
            return Located(
                binary=None,
                notes=tuple(notes),
                cache=cache,
                cache_broken=f"the cached bitcoind does not run: {exc}",
            )
        return Located(binary=_with_cli(binary, state.bitcoin_cli), notes=tuple(notes), cache=cache)
    if isinstance(state, provision.CacheBroken):
        return Located(binary=None, notes=tuple(notes), cache=cache, cache_broken=state.reason)
    notes.append(f"nothing provisioned in {cache} yet")
    return Located(binary=None, notes=tuple(notes), cache=cache)


def ensure_bitcoind(
    env: Mapping[str, str] | None = None,
    *,
    progress: Progress | None = None,
    provisioner: provision.Provisioner | None = None,
) -> BitcoindBinary:
    """Return a usable bitcoind, provisioning one into the cache if none is found.

    A broken cache (an interrupted provision) is wiped and redone. ``provisioner`` replaces the
    apt recipe (tests use it to stay offline); it must leave a ready cache behind.
    """
    env = os.environ if env is None else env
    say: Progress = progress if progress is not None else _silent
    located = locate_bitcoind(env)
    if located.binary is not None:
        return located.binary
    cache = located.cache
    if located.cache_broken is not None:
        say(f"chanlab's cache {cache} is broken ({located.cache_broken}); provisioning again")
        provision.wipe(cache)
    if provisioner is None:
        why_not = provision.unsupported_reason(env)
        if why_not is not None:
            raise BitcoindNotFound(not_found_message(located.notes, why_not))
        provisioner = provision.provision
    ready = provisioner(cache, say)
    binary = probe(
        ready.bitcoind,
        source=BinarySource.PROVISIONED,
        reason=f"provisioned just now into chanlab's cache {cache}",
    )
    return _with_cli(binary, ready.bitcoin_cli)


def require_bitcoind(env: Mapping[str, str] | None = None) -> BitcoindBinary:
    """Return the located bitcoind or raise a ``SetupError`` saying how to get one."""
    located = locate_bitcoind(env)
    if located.binary is not None:
        return located.binary
    if located.cache_broken is not None:
        raise BrokenCache(
            f"chanlab's cache {located.cache} is broken ({located.cache_broken}): "
            "run `chanlab bitcoind install` to provision again, or delete that folder"
        )
    raise BitcoindNotFound(
        not_found_message(located.notes, "nothing was provisioned yet")
        + " (or run `chanlab bitcoind install`)"
    )


def not_found_message(notes: tuple[str, ...] | list[str], why: str) -> str:
    """The one error a machine without any usable bitcoind gets: what was tried, what to do."""
    tried = "; ".join(notes) if notes else "nothing found"
    return (
        f"no usable bitcoind ({tried}) and chanlab cannot provision one here: {why}. "
        "Install Bitcoin Core >= "
        f"{MIN_MAJOR_VERSION} and set BITCOIND=/path/to/bitcoind, "
        "or use Docker: `docker compose up -d`, then pass `--backend docker`"
    )


def _too_old_message(path: Path, version_line: str) -> str:
    return (
        f"{path} is {version_line!r}; chanlab needs Bitcoin Core >= {MIN_MAJOR_VERSION}: "
        "install a newer one and set BITCOIND=/path/to/bitcoind, or unset BITCOIND "
        "to let chanlab provision one"
    )


def _sibling_cli(bitcoind: Path) -> Path | None:
    cli = bitcoind.with_name("bitcoin-cli")
    return cli if cli.is_file() else None


def _with_cli(binary: BitcoindBinary, cli: Path | None) -> BitcoindBinary:
    if cli is None or binary.bitcoin_cli is not None:
        return binary
    return BitcoindBinary(
        bitcoind=binary.bitcoind,
        bitcoin_cli=cli,
        version=binary.version,
        version_line=binary.version_line,
        source=binary.source,
        reason=binary.reason,
    )


def _silent(_line: str) -> None:
    """Progress sink that drops everything."""
