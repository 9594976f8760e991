"""I/O: provision a recent bitcoind into chanlab's cache on a Debian-family machine, without root.

Debian's unstable suite (``sid``) carries ``bitcoin-knots``, a Bitcoin Core derivative with the
same consensus code. It needs a newer glibc and libstdc++ than a Debian stable system has, so it
is never installed system-wide. Instead:

1. a private apt configuration under the cache, whose one source is the ``sid`` suite of the
   Debian archive this machine already uses (URI and keyring read from its own apt sources);
   the system's apt state is never touched;
2. the runtime libraries are resolved from the package's dependencies (Depends/PreDepends,
   recursively, keeping ``lib*`` packages), downloaded with ``apt-get download`` and unpacked
   with ``dpkg -x`` into a private prefix;
3. small wrapper scripts ``<cache>/bin/bitcoind`` and ``<cache>/bin/bitcoin-cli`` run the
   binaries through the prefix's own dynamic loader and libraries;
4. ``<cache>/provisioned.json`` is written last: without it, anything else in the cache is a
   half-finished provision (``CacheBroken``) and is redone.

Cache layout (``$XDG_CACHE_HOME/chanlab``, default ``~/.cache/chanlab``)::

    apt/                 private apt state (sources, lists); removed after success
    debs/                downloaded .deb files; removed after success
    prefix/              the unpacked packages
    bin/bitcoind         wrapper scripts, the only paths the rest of chanlab runs
    bin/bitcoin-cli
    provisioned.json     manifest, written after success
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from regtest.errors import ProvisionError

Progress = Callable[[str], None]

PACKAGE = "bitcoin-knots"
SUITE = "sid"
MANIFEST = "provisioned.json"
MANIFEST_FORMAT = 1

_PROVISION_PARTS = ("debs", "prefix", "bin", MANIFEST)
_APT_TIMEOUT_S = 600.0


@dataclass(frozen=True, slots=True, kw_only=True)
class _Arch:
    """What the wrapper scripts need to know about one CPU architecture."""

    triplet: str
    loader: str


# Only x86_64 is exercised; another Debian architecture would be one more row here.
_ARCHES: dict[str, _Arch] = {
    "x86_64": _Arch(triplet="x86_64-linux-gnu", loader="ld-linux-x86-64.so.2"),
}


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheReady:
    """A finished provision: the wrapper scripts to run."""

    bitcoind: Path
    bitcoin_cli: Path


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheBroken:
    """A provision that did not finish, or whose files went missing."""

    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheEmpty:
    """Nothing provisioned yet."""


CacheState = CacheReady | CacheBroken | CacheEmpty
Provisioner = Callable[[Path, Progress], CacheReady]


@dataclass(frozen=True, slots=True, kw_only=True)
class AptSource:
    """The Debian archive this machine already uses: where it is and which key signs it."""

    uri: str
    signed_by: str | None


def cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """chanlab's cache folder: ``$XDG_CACHE_HOME/chanlab``, default ``~/.cache/chanlab``."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME", "").strip()
    if base:
        return Path(base).expanduser() / "chanlab"
    home = env.get("HOME", "").strip()
    return (Path(home) if home else Path.home()) / ".cache" / "chanlab"


def inspect_cache(cache: Path) -> CacheState:
    """Say whether ``cache`` holds a finished provision, a broken one, or none."""
    manifest = cache / MANIFEST
    leftovers = [part for part in _PROVISION_PARTS[:-1] if (cache / part).exists()]
    if not manifest.is_file():
        if leftovers:
            return CacheBroken(
                reason=f"{', '.join(leftovers)} present but no {MANIFEST}: "
                "an earlier provisioning was interrupted"
            )
        return CacheEmpty()
    try:
        data = json.loads(manifest.read_text())
        if data.get("format") != MANIFEST_FORMAT:
            return CacheBroken(reason=f"{MANIFEST} has an unknown format")
    except (OSError, ValueError) as exc:
        return CacheBroken(reason=f"{MANIFEST} is unreadable ({exc})")
    ready = CacheReady(
        bitcoind=cache / "bin" / "bitcoind", bitcoin_cli=cache / "bin" / "bitcoin-cli"
    )
    for path in (ready.bitcoind, ready.bitcoin_cli, cache / "prefix" / "usr" / "bin" / "bitcoind"):
        if not path.is_file():
            return CacheBroken(reason=f"{path} is missing")
    return ready


def wipe(cache: Path) -> None:
    """Remove a provision (finished or not) from ``cache``; an apt index is kept for reuse."""
    for part in _PROVISION_PARTS:
        path = cache / part
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def unsupported_reason(env: Mapping[str, str] | None = None) -> str | None:
    """Why provisioning cannot work on this machine, or None when it can be tried."""
    env = os.environ if env is None else env
    if sys.platform != "linux":
        return f"provisioning needs Debian-family Linux, this is {sys.platform}"
    machine = platform.machine()
    if machine not in _ARCHES:
        return f"provisioning supports x86_64 only, this machine is {machine}"
    search_path = env.get("PATH", "")
    missing = [
        tool
        for tool in ("apt-get", "apt-cache", "dpkg")
        if shutil.which(tool, path=search_path) is None
    ]
    if missing:
        return f"{', '.join(missing)} not found on PATH (not a Debian-family system?)"
    return None


def read_apt_source(etc_apt: Path = Path("/etc/apt")) -> AptSource:
    """Find the machine's Debian archive in its apt configuration (deb822 or one-line format).

    The entry chosen is a ``deb`` source whose suites include a plain release suite (not
    ``-security``, ``-updates`` or ``-backports``) with the ``main`` component.
    """
    candidates: list[AptSource] = []
    parts = etc_apt / "sources.list.d"
    for path in sorted(parts.glob("*.sources")) if parts.is_dir() else []:
        candidates.extend(_parse_deb822(path.read_text()))
    one_line_files = [etc_apt / "sources.list"]
    if parts.is_dir():
        one_line_files.extend(sorted(parts.glob("*.list")))
    for path in one_line_files:
        if path.is_file():
            candidates.extend(_parse_one_line(path.read_text()))
    if not candidates:
        raise ProvisionError(
            f"no Debian archive found in {etc_apt}/sources.list or {parts}/*.sources; "
            "install Bitcoin Core >= 25 and set BITCOIND=/path/to/bitcoind"
        )
    debian = [c for c in candidates if c.signed_by is not None and "debian" in c.signed_by]
    return (debian or candidates)[0]


def provision(cache: Path, progress: Progress) -> CacheReady:
    """Download and unpack ``bitcoin-knots`` from Debian sid into ``cache``; return its wrappers.

    Safe to call concurrently (an exclusive lock on ``<cache>/.lock``) and after an interrupted
    run (everything but the apt lists is redone).
    """
    arch = _ARCHES.get(platform.machine())
    if arch is None:
        raise ProvisionError(f"provisioning supports x86_64 only, not {platform.machine()}")
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / ".lock"):
        state = inspect_cache(cache)
        if isinstance(state, CacheReady):
            return state  # another process finished it while we waited for the lock
        started = time.monotonic()
        wipe(cache)
        source = read_apt_source()
        apt = _PrivateApt(cache / "apt", source)
        progress(
            f"provisioning bitcoind into {cache} (once; about 20 MB to download, 60 MB on disk)"
        )
        progress(f"  fetching the package index of Debian {SUITE} from this machine's archive")
        apt.update()
        packages = apt.resolve_libraries(PACKAGE)
        progress(f"  resolved {PACKAGE} and {len(packages) - 1} runtime libraries")
        debs_dir = cache / "debs"
        debs = apt.download(packages, debs_dir)
        size_mb = sum(deb.stat().st_size for deb in debs) / 1e6
        progress(f"  downloaded {len(debs)} packages ({size_mb:.1f} MB)")
        prefix = cache / "prefix"
        prefix.mkdir()
        for deb in debs:
            _run(["dpkg", "-x", str(deb), str(prefix)], what=f"unpacking {deb.name}")
        progress(f"  unpacked into {prefix}")
        ready = _write_wrappers(cache, prefix, arch)
        version_line = _check_runs(ready.bitcoind)
        manifest = {
            "format": MANIFEST_FORMAT,
            "package": PACKAGE,
            "suite": SUITE,
            "version_line": version_line,
            "packages": packages,
            "provisioned_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        tmp = cache / (MANIFEST + ".tmp")
        tmp.write_text(json.dumps(manifest, indent=2) + "\n")
        tmp.replace(cache / MANIFEST)
        # The .debs and the sid index (~25 MB) are not needed once unpacked.
        shutil.rmtree(debs_dir)
        shutil.rmtree(cache / "apt", ignore_errors=True)
        progress(f"  ready: {version_line} ({time.monotonic() - started:.1f} s)")
        return ready


class _PrivateApt:
    """apt-get/apt-cache with every state and config path redirected under one folder."""

    def __init__(self, root: Path, source: AptSource) -> None:
        self._root = root
        parts = root / "sources.list.d"
        for sub in (
            parts,
            root / "lists" / "partial",
            root / "archives" / "partial",
            root / "cache",
        ):
            sub.mkdir(parents=True, exist_ok=True)
        lines = ["Types: deb", f"URIs: {source.uri}", f"Suites: {SUITE}", "Components: main"]
        if source.signed_by is not None:
            lines.append(f"Signed-By: {source.signed_by}")
        (parts / "chanlab.sources").write_text("\n".join(lines) + "\n")
        self._opts = [
            "-o", "Dir::Etc::SourceList=/dev/null",
            "-o", f"Dir::Etc::SourceParts={parts}",
            "-o", f"Dir::State::Lists={root / 'lists'}",
            "-o", f"Dir::Cache={root / 'cache'}",
            "-o", f"Dir::Cache::archives={root / 'archives'}",
        ]  # fmt: skip
        if os.geteuid() == 0:
            # As root apt drops to the _apt user, who cannot enter a private home's cache.
            self._opts += ["-o", "APT::Sandbox::User=root"]

    def update(self) -> None:
        _run(["apt-get", *self._opts, "-q", "update"], what="apt-get update (Debian sid index)")

    def resolve_libraries(self, root_package: str) -> list[str]:
        """``root_package`` plus the ``lib*`` closure of its Depends/PreDepends, sorted."""
        wanted = {root_package}
        frontier = [root_package]
        while frontier:
            out = _run(["apt-cache", *self._opts, "depends", *frontier], what="apt-cache depends")
            frontier = []
            for name in _first_alternatives(out):
                if name.startswith("lib") and name not in wanted:
                    wanted.add(name)
                    frontier.append(name)
        return [root_package, *sorted(wanted - {root_package})]

    def download(self, packages: list[str], into: Path) -> list[Path]:
        into.mkdir(parents=True, exist_ok=True)
        _run(
            ["apt-get", *self._opts, "-q", "download", *packages], what="apt-get download", cwd=into
        )
        debs = sorted(into.glob("*.deb"))
        if len(debs) != len(packages):
            raise ProvisionError(
                f"apt-get download left {len(debs)} .deb files for {len(packages)} packages"
            )
        return debs


def _first_alternatives(apt_cache_depends: str) -> list[str]:
    """Package names that must be installed, from ``apt-cache depends`` output.

    Each ``Depends``/``PreDepends`` group ``a | b | c`` appears as lines prefixed ``|`` for all
    but the last alternative; the first one is taken. Virtual names (``<name>``) are skipped.
    """
    names: list[str] = []
    in_group = False
    for raw in apt_cache_depends.splitlines():
        if not raw.startswith(" ") or raw.startswith("    "):
            continue  # a package header, or the providers listed under a virtual name
        line = raw.strip()
        alternative = line.startswith("|")
        kind, _, name = line.lstrip("|").partition(":")
        if kind not in ("Depends", "PreDepends"):
            in_group = False
            continue
        if not in_group:
            name = name.strip().split(":")[0]
            if not name.startswith("<"):
                names.append(name)
        in_group = alternative
    return names


def _parse_deb822(text: str) -> list[AptSource]:
    found: list[AptSource] = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = ""
        for line in stanza.splitlines():
            if line.startswith("#") or not line.strip():
                continue
            if line[0].isspace() and key:
                fields[key] += "\n" + line
                continue
            key, _, value = line.partition(":")
            key = key.strip().lower()
            fields[key] = value.strip()
        if fields.get("enabled", "yes").lower() == "no":
            continue
        if "deb" not in fields.get("types", "").split():
            continue
        if "main" not in fields.get("components", "").split():
            continue
        if not any(_is_release_suite(s) for s in fields.get("suites", "").split()):
            continue
        uris = fields.get("uris", "").split()
        if uris:
            found.append(AptSource(uri=uris[0], signed_by=fields.get("signed-by") or None))
    return found


def _parse_one_line(text: str) -> list[AptSource]:
    found: list[AptSource] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line.startswith("deb "):
            continue
        signed_by: str | None = None
        options = re.match(r"deb\s+\[([^\]]*)\]\s*", line)
        rest = line[options.end() :] if options else line[4:]
        if options:
            for option in options.group(1).split():
                name, _, value = option.partition("=")
                if name == "signed-by":
                    signed_by = value
        words = rest.split()
        if len(words) >= 3 and _is_release_suite(words[1]) and "main" in words[2:]:
            found.append(AptSource(uri=words[0], signed_by=signed_by))
    return found


def _is_release_suite(suite: str) -> bool:
    return "-" not in suite and "/" not in suite


def _write_wrappers(cache: Path, prefix: Path, arch: _Arch) -> CacheReady:
    bin_dir = cache / "bin"
    bin_dir.mkdir()
    loader = prefix / "usr" / "lib" / arch.triplet / arch.loader
    if not loader.is_file():
        raise ProvisionError(f"the unpacked libc has no loader at {loader}")
    library_path = ":".join(
        [
            str(prefix / "usr" / "lib" / arch.triplet),
            str(prefix / "lib" / arch.triplet),
            f"/usr/lib/{arch.triplet}",
            f"/lib/{arch.triplet}",
        ]
    )
    paths = {}
    for program in ("bitcoind", "bitcoin-cli"):
        target = prefix / "usr" / "bin" / program
        if not target.is_file():
            raise ProvisionError(f"{PACKAGE} did not unpack {target}")
        wrapper = bin_dir / program
        wrapper.write_text(
            "#!/bin/sh\n"
            f"# Written by chanlab: runs {PACKAGE}'s {program} through its own loader and\n"
            "# libraries, which are newer than this system's. Delete the cache to undo.\n"
            f'exec "{loader}" --library-path "{library_path}" "{target}" "$@"\n'
        )
        wrapper.chmod(0o755)
        paths[program] = wrapper
    return CacheReady(bitcoind=paths["bitcoind"], bitcoin_cli=paths["bitcoin-cli"])


def _check_runs(bitcoind: Path) -> str:
    out = _run([str(bitcoind), "--version"], what="running the provisioned bitcoind")
    lines = out.strip().splitlines()
    if not lines:
        raise ProvisionError("the provisioned bitcoind printed no version")
    return lines[0].strip()


def _run(argv: list[str], *, what: str, cwd: Path | None = None) -> str:
    try:
        done = subprocess.run(
            argv,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=_APT_TIMEOUT_S,
            check=False,
            env={**os.environ, "LC_ALL": "C"},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProvisionError(f"{what} failed: {exc}") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise ProvisionError(
            f"{what} failed (exit {done.returncode}):\n{tail}\n"
            "Nothing outside chanlab's cache was changed; run `chanlab bitcoind install` "
            "to try again, or install Bitcoin Core >= 25 and set BITCOIND=/path/to/bitcoind"
        )
    return done.stdout


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
