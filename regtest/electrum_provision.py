"""I/O: provision Electrum and ElectrumX into chanlab's cache, without root, pinned.

Electrum is a second, independent Lightning implementation (pure Python). chanlab runs it as a
foreign peer the way it runs bitcoind: nothing is installed system-wide, everything lives in
``<cache>/electrum`` (``regtest.provision.cache_dir()``):

1. Electrum's code comes from Debian ``sid`` (``python3-electrum`` for the package, ``electrum``
   for its ``usr/bin/electrum`` launcher, ``libsecp256k1-6`` for the curve library), fetched with
   ``regtest.provision``'s private apt setup from the Debian archive this machine already uses
   and unpacked with ``dpkg -x``; a ``.pth`` file puts it on the path of
2. a virtualenv with Electrum's Python dependencies at pinned versions, installed by pip with the
   machine's own pip configuration. ``electrum_ecc`` is installed with
   ``ELECTRUM_ECC_DONT_COMPILE=1`` (compiling needs autotools) and gets the unpacked
   ``libsecp256k1.so.6`` copied into its package folder, where it looks first;
3. a second virtualenv with ElectrumX (``e-x`` 1.20.0: 2.x needs bitcoind >= 31);
4. ``bin/electrum`` and ``bin/electrumx_server`` wrapper scripts;
5. ``provisioned.json``, written last, names every version. Without it, anything else there is
   an interrupted provision and is redone; with other versions than this module pins, too.

Cache layout::

    electrum/apt/ debs/      private apt state and downloads; removed after success
    electrum/root/           the unpacked .debs
    electrum/venv/           Electrum's dependencies
    electrum/exvenv/         ElectrumX
    electrum/bin/            electrum, electrumx_server
    electrum/provisioned.json
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from regtest import provision
from regtest.errors import ProvisionError, SetupError
from regtest.node import _pdeathsig_preexec

ELECTRUM_VERSION = "4.8.3"
ELECTRUMX_VERSION = "1.20.0"
DEBIAN_PACKAGES = ("python3-electrum", "electrum", "libsecp256k1-6")
TRIPLET = "x86_64-linux-gnu"

# Electrum 4.8.3's METADATA ranges, resolved once and frozen (transitive ones included), so
# every machine runs the same code. qdarkstyle (GUI only) is left out.
ELECTRUM_REQUIREMENTS = (
    "aiohappyeyeballs==2.7.1", "aiohttp==3.14.5", "aiohttp_socks==0.12.0", "aiorpcX==0.25.0",
    "aiosignal==1.4.0", "attrs==26.1.0", "certifi==2026.10.19.post1", "cffi==2.1.1",
    "cryptography==50.0.2", "dnspython==2.4.2", "electrum-aionostr==0.1.0",
    "electrum-ecc==0.0.8", "frozenlist==1.8.0", "idna==3.20", "jsonpatch==1.48",
    "jsonpointer==3.12", "multidict==7.2.1", "propcache==0.5.4", "pycparser==3.12",
    "python-socks==3.2.1", "qrcode==8.2", "typing_extensions==4.16.0", "yarl==1.25.1",
)  # fmt: skip
ELECTRUMX_REQUIREMENTS = (
    f"e-x=={ELECTRUMX_VERSION}", "aiohappyeyeballs==2.7.1", "aiohttp==3.14.5", "aiorpcX==0.25.0",
    "aiosignal==1.4.0", "attrs==26.1.0", "frozenlist==1.8.0", "idna==3.20", "multidict==7.2.1",
    "plyvel==1.5.1", "propcache==0.5.4", "typing_extensions==4.16.0", "websockets==17.4",
    "yarl==1.25.1",
)  # fmt: skip

MANIFEST = "provisioned.json"
MANIFEST_FORMAT = 1
_PARTS = ("apt", "debs", "root", "venv", "exvenv", "bin", MANIFEST)
_PIP_TIMEOUT_S = 900.0
_INSTALL_HINT = "run `chanlab electrum install` to try again"


@dataclass(frozen=True, slots=True, kw_only=True)
class ElectrumInstall:
    """A finished provision: the two programs to run, and their versions."""

    electrum: Path
    electrumx_server: Path
    electrum_version: str
    electrumx_version: str
    home: Path


def electrum_cache(env: Mapping[str, str] | None = None) -> Path:
    """Where Electrum is provisioned: ``<chanlab cache>/electrum``."""
    return provision.cache_dir(env) / "electrum"


def inspect(root: Path) -> ElectrumInstall | str | None:
    """The install in ``root``; a reason it is broken or out of date; or None when empty."""
    manifest = root / MANIFEST
    if not manifest.is_file():
        leftovers = [part for part in _PARTS[:-1] if (root / part).exists()]
        if leftovers:
            return (f"{', '.join(leftovers)} present but no {MANIFEST}: an earlier "
                    "provisioning was interrupted")
        return None
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError) as exc:
        return f"{MANIFEST} is unreadable ({exc})"
    if data.get("format") != MANIFEST_FORMAT or data.get("pins") != _pins():
        return f"{MANIFEST} names other versions than this chanlab pins"
    install = _install_in(root)
    for path in (install.electrum, install.electrumx_server, _electrum_package(root)):
        if not path.exists():
            return f"{path} is missing"
    return install


def ensure_electrum(
    env: Mapping[str, str] | None = None, *, progress: provision.Progress | None = None
) -> ElectrumInstall:
    """Return the cached install, provisioning it first if it is missing, broken or outdated.

    Safe to call concurrently (an exclusive lock on ``<cache>/electrum.lock``). Raises
    ``SetupError`` (one line saying what to do) where this machine cannot provision.
    """
    env = os.environ if env is None else env
    say = progress if progress is not None else _silent
    root = electrum_cache(env)
    state = inspect(root)
    if isinstance(state, ElectrumInstall):
        return state
    why_not = provision.unsupported_reason(env)
    if why_not is not None:
        raise SetupError(f"cannot provision Electrum: {why_not}")
    root.parent.mkdir(parents=True, exist_ok=True)
    with provision._locked(root.parent / "electrum.lock"):
        state = inspect(root)
        if isinstance(state, ElectrumInstall):
            return state  # another process finished it while we waited for the lock
        if isinstance(state, str):
            say(f"Electrum's cache {root} is broken ({state}); provisioning again")
        wipe(root)
        return _provision(root, say)


def wipe(root: Path) -> None:
    """Remove a provision (finished or not) from ``root``."""
    shutil.rmtree(root, ignore_errors=True)


def _provision(root: Path, say: provision.Progress) -> ElectrumInstall:
    started = time.monotonic()
    root.mkdir(parents=True)
    say(f"provisioning Electrum {ELECTRUM_VERSION} and ElectrumX {ELECTRUMX_VERSION} into {root} "
        "(once; about 40 MB)")
    try:
        apt = provision._PrivateApt(root / "apt", provision.read_apt_source())
        say("  fetching the package index of Debian sid from this machine's archive")
        apt.update()
        debs = apt.download(list(DEBIAN_PACKAGES), root / "debs")
        unpacked = root / "root"
        for deb in debs:
            provision._run(["dpkg", "-x", str(deb), str(unpacked)], what=f"unpacking {deb.name}")
    except ProvisionError as exc:
        raise ProvisionError(f"{_first_line(exc)}; nothing outside {root} was changed, "
                             f"{_INSTALL_HINT}") from exc
    package = _electrum_package(root)
    if not package.is_dir():
        raise ProvisionError(f"python3-electrum did not unpack {package}; {_INSTALL_HINT}")
    say(f"  unpacked {', '.join(DEBIAN_PACKAGES)}")

    say("  installing Electrum's Python dependencies (pinned)")
    venv = root / "venv"
    _make_venv(venv)
    _pip(venv, ELECTRUM_REQUIREMENTS, extra_env={"ELECTRUM_ECC_DONT_COMPILE": "1"})
    site = _site_packages(venv)
    # Electrum's code stays where dpkg put it; the venv's interpreter finds it through this.
    (site / "chanlab-electrum.pth").write_text(f"{package.parent}\n")
    libs = sorted((root / "root" / "usr" / "lib" / TRIPLET).glob("libsecp256k1.so.6*"))
    real_libs = [lib for lib in libs if lib.is_file() and not lib.is_symlink()]
    if not real_libs:
        raise ProvisionError(f"libsecp256k1-6 did not unpack libsecp256k1.so.6; {_INSTALL_HINT}")
    # electrum_ecc looks for libsecp256k1.so.N in its own folder before the linker path.
    shutil.copyfile(real_libs[0], site / "electrum_ecc" / "libsecp256k1.so.6")

    say(f"  installing ElectrumX {ELECTRUMX_VERSION} (pinned)")
    exvenv = root / "exvenv"
    _make_venv(exvenv)
    _pip(exvenv, ELECTRUMX_REQUIREMENTS)

    install = _write_wrappers(root, venv, exvenv)
    version = _run_tool([str(install.electrum), "version", "--offline"], what="running Electrum")
    if version.strip() != ELECTRUM_VERSION:
        raise ProvisionError(f"the unpacked Electrum says {version.strip()!r}, chanlab pins "
                             f"{ELECTRUM_VERSION}: Debian sid moved on; update the pin")
    manifest = {
        "format": MANIFEST_FORMAT,
        "pins": _pins(),
        "provisioned_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    tmp = root / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest, indent=2) + "\n")
    tmp.replace(root / MANIFEST)
    shutil.rmtree(root / "debs", ignore_errors=True)
    shutil.rmtree(root / "apt", ignore_errors=True)  # the sid index (~11 MB) is not needed
    say(f"  ready: Electrum {ELECTRUM_VERSION}, ElectrumX {ELECTRUMX_VERSION} "
        f"({time.monotonic() - started:.1f} s)")
    return install


def _pins() -> dict[str, object]:
    return {
        "electrum": ELECTRUM_VERSION,
        "electrumx": ELECTRUMX_VERSION,
        "debian": list(DEBIAN_PACKAGES),
        "electrum_requirements": list(ELECTRUM_REQUIREMENTS),
        "electrumx_requirements": list(ELECTRUMX_REQUIREMENTS),
        "python": f"{sys.version_info.major}.{sys.version_info.minor}",
    }


def _install_in(root: Path) -> ElectrumInstall:
    return ElectrumInstall(
        electrum=root / "bin" / "electrum",
        electrumx_server=root / "bin" / "electrumx_server",
        electrum_version=ELECTRUM_VERSION,
        electrumx_version=ELECTRUMX_VERSION,
        home=root,
    )


def english_wordlist(install: ElectrumInstall) -> list[str]:
    """Electrum's English seed word list (the 2,048 words its seed phrases are made of)."""
    path = _electrum_package(install.home) / "wordlist" / "english.txt"
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ProvisionError(f"cannot read Electrum's word list {path}: {exc.strerror}; "
                             f"{_INSTALL_HINT}") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def _electrum_package(root: Path) -> Path:
    return root / "root" / "usr" / "lib" / "python3" / "dist-packages" / "electrum"


def _site_packages(venv: Path) -> Path:
    found = sorted((venv / "lib").glob("python3.*/site-packages"))
    if not found:
        raise ProvisionError(f"{venv} has no site-packages; {_INSTALL_HINT}")
    return found[0]


def _make_venv(venv: Path) -> None:
    _run_tool([sys.executable, "-m", "venv", str(venv)], what=f"creating the virtualenv {venv}")


def _pip(venv: Path, requirements: tuple[str, ...], *,
         extra_env: Mapping[str, str] | None = None) -> None:
    # No index options: pip reads this machine's own configuration (index, mirrors, certs).
    _run_tool([str(venv / "bin" / "python"), "-m", "pip", "install", "-q",
               "--disable-pip-version-check", *requirements],
              what=f"pip install into {venv.name}", extra_env=extra_env)


def _write_wrappers(root: Path, venv: Path, exvenv: Path) -> ElectrumInstall:
    install = _install_in(root)
    install.electrum.parent.mkdir()
    launcher = root / "root" / "usr" / "bin" / "electrum"
    if not launcher.is_file():
        raise ProvisionError(f"the electrum package did not unpack {launcher}; {_INSTALL_HINT}")
    scripts = {
        install.electrum: f'exec "{venv / "bin" / "python"}" "{launcher}" "$@"\n',
        install.electrumx_server: f'exec "{exvenv / "bin" / "electrumx_server"}" "$@"\n',
    }
    for path, body in scripts.items():
        path.write_text("#!/bin/sh\n# Written by chanlab's Electrum provisioning; delete "
                        f"{root} to undo.\n{body}")
        path.chmod(0o755)
    return install


def _run_tool(argv: list[str], *, what: str,
              extra_env: Mapping[str, str] | None = None) -> str:
    try:
        # PDEATHSIG: an interrupted provisioning must not leave pip writing into the folder
        # that the next attempt wipes and fills again.
        done = subprocess.run(argv, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S,
                              check=False, env={**os.environ, **(extra_env or {})},
                              preexec_fn=_pdeathsig_preexec())
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ProvisionError(f"{what} failed: {exc}; {_INSTALL_HINT}") from exc
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        errors = [line for line in lines if "error" in line.lower()] or lines or ["no output"]
        raise ProvisionError(f"{what} failed (exit {done.returncode}): {errors[-1].strip()}; "
                             f"{_INSTALL_HINT}")
    return done.stdout


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0]


def _silent(_line: str) -> None:
    """Progress sink that drops everything."""
