"""Finding, refusing and provisioning bitcoind, without a real bitcoind or network.

Fake ``bitcoind`` shell scripts stand in for binaries; a fake provisioner stands in for apt.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from regtest import provision
from regtest.bitcoind_binary import (
    MIN_MAJOR_VERSION,
    BinarySource,
    ensure_bitcoind,
    locate_bitcoind,
    parse_version,
    require_bitcoind,
)
from regtest.errors import (
    BitcoindNotFound,
    BitcoindTooOld,
    BrokenCache,
    ProvisionError,
    SetupError,
)

REPO = Path(__file__).resolve().parents[2]
KNOTS_LINE = "Bitcoin Knots daemon version v29.4.3.knots20260508"


def fake_bitcoind(path: Path, version_line: str, *, exit_code: int = 0) -> Path:
    """Write an executable shell script that prints ``version_line`` like ``bitcoind --version``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'#!/bin/sh\necho "{version_line}"\necho "Copyright (C) 2024"\nexit {exit_code}\n'
    )
    path.chmod(0o755)
    return path


def bare_env(tmp_path: Path, *, path_dirs: list[Path] | None = None) -> dict[str, str]:
    """An environment with no BITCOIND, an empty cache, and PATH limited to ``path_dirs``."""
    empty = tmp_path / "empty-bin"
    empty.mkdir(exist_ok=True)
    dirs = path_dirs if path_dirs is not None else [empty]
    return {
        "PATH": os.pathsep.join(str(d) for d in dirs),
        "HOME": str(tmp_path / "home"),
        "XDG_CACHE_HOME": str(tmp_path / "cache"),
    }


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m regtest.cli *args`` from the repo with ``env``; output captured as text."""
    return subprocess.run([sys.executable, "-m", "regtest.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


def fake_provisioner(version_line: str = KNOTS_LINE) -> tuple[list[Path], provision.Provisioner]:
    """A provisioner that records its calls and leaves a ready cache holding fake binaries."""
    calls: list[Path] = []

    def run(cache: Path, progress: provision.Progress) -> provision.CacheReady:
        calls.append(cache)
        progress("fake provisioning")
        fake_bitcoind(cache / "prefix" / "usr" / "bin" / "bitcoind", version_line)
        bitcoind = fake_bitcoind(cache / "bin" / "bitcoind", version_line)
        cli = fake_bitcoind(cache / "bin" / "bitcoin-cli", version_line)
        manifest = {"format": provision.MANIFEST_FORMAT, "version_line": version_line}
        (cache / provision.MANIFEST).write_text(json.dumps(manifest))
        return provision.CacheReady(bitcoind=bitcoind, bitcoin_cli=cli)

    return calls, run


# --- versions ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("Bitcoin Knots daemon version v29.4.3.knots20260508", (29, 4, 3)),
        ("Bitcoin Core version v27.0.0", (27, 0, 0)),
        ("Bitcoin Core daemon version v28.1.0rc1", (28, 1, 0)),
        ("Bitcoin Core version v30.0", (30, 0, 0)),
        ("Bitcoin Core Daemon version v0.21.1", (0, 21, 1)),
    ],
)
def test_parse_version_reads_first_line(line: str, expected: tuple[int, int, int]) -> None:
    """The first line of `bitcoind --version` of Core, Knots and old 0.x releases parses."""
    assert parse_version(line) == expected


def test_parse_version_rejects_non_bitcoind_output() -> None:
    """Output without a version number is a setup error, not a crash."""
    with pytest.raises(SetupError, match="cannot read a version"):
        parse_version("usage: something else")


# --- search order ------------------------------------------------------------------------------


def test_bitcoind_env_var_wins(tmp_path: Path) -> None:
    """$BITCOIND is used before PATH and the cache, and the reason says so."""
    on_path = fake_bitcoind(tmp_path / "bin" / "bitcoind", "Bitcoin Core version v27.0.0")
    chosen = fake_bitcoind(tmp_path / "custom" / "bitcoind", "Bitcoin Core version v28.1.0")
    env = bare_env(tmp_path, path_dirs=[on_path.parent])
    env["BITCOIND"] = str(chosen)
    located = locate_bitcoind(env)
    assert located.binary is not None
    assert located.binary.bitcoind == chosen
    assert located.binary.source is BinarySource.ENV
    assert located.binary.version == (28, 1, 0)
    assert str(chosen) in located.binary.reason


def test_path_is_used_when_env_var_unset(tmp_path: Path) -> None:
    """Without $BITCOIND a recent bitcoind on PATH is chosen, with its sibling bitcoin-cli."""
    on_path = fake_bitcoind(tmp_path / "bin" / "bitcoind", "Bitcoin Core version v27.0.0")
    cli = fake_bitcoind(tmp_path / "bin" / "bitcoin-cli", "Bitcoin Core RPC client version v27.0.0")
    located = locate_bitcoind(bare_env(tmp_path, path_dirs=[on_path.parent]))
    assert located.binary is not None
    assert located.binary.source is BinarySource.PATH
    assert located.binary.bitcoind == on_path
    assert located.binary.bitcoin_cli == cli
    assert located.notes == ("$BITCOIND is not set",)


def test_old_bitcoind_in_env_var_is_refused(tmp_path: Path) -> None:
    """$BITCOIND pointing at Bitcoin Core 24 fails with a message saying what to do."""
    old = fake_bitcoind(tmp_path / "old" / "bitcoind", "Bitcoin Core version v24.0.1")
    env = bare_env(tmp_path)
    env["BITCOIND"] = str(old)
    with pytest.raises(BitcoindTooOld) as caught:
        ensure_bitcoind(env)
    message = str(caught.value)
    assert "v24.0.1" in message
    assert f">= {MIN_MAJOR_VERSION}" in message
    assert "BITCOIND=/path/to/bitcoind" in message


def test_old_bitcoind_on_path_is_skipped_for_the_cache(tmp_path: Path) -> None:
    """An old distribution bitcoind on PATH does not block a run: the cache is used, with a note."""
    old = fake_bitcoind(tmp_path / "bin" / "bitcoind", "Bitcoin Core version v22.0.0")
    env = bare_env(tmp_path, path_dirs=[old.parent])
    _calls, run = fake_provisioner()
    run(provision.cache_dir(env), lambda _line: None)
    located = locate_bitcoind(env)
    assert located.binary is not None
    assert located.binary.source is BinarySource.CACHE
    assert located.binary.version == (29, 4, 3)
    assert any("skipped bitcoind on PATH" in note and "v22.0.0" in note for note in located.notes)


def test_env_var_that_is_not_a_file_is_an_error(tmp_path: Path) -> None:
    """A $BITCOIND typo is reported as such, not silently ignored."""
    env = bare_env(tmp_path)
    env["BITCOIND"] = str(tmp_path / "nope" / "bitcoind")
    with pytest.raises(SetupError, match="is not a file"):
        locate_bitcoind(env)


def test_bitcoind_that_fails_version_is_an_error(tmp_path: Path) -> None:
    """A binary whose --version exits non-zero is refused with its output."""
    broken = fake_bitcoind(tmp_path / "b" / "bitcoind", "error while loading libs", exit_code=127)
    env = bare_env(tmp_path)
    env["BITCOIND"] = str(broken)
    with pytest.raises(SetupError, match="exit 127"):
        locate_bitcoind(env)


def test_cache_dir_follows_xdg_then_home(tmp_path: Path) -> None:
    """The cache is $XDG_CACHE_HOME/chanlab, else ~/.cache/chanlab."""
    assert provision.cache_dir({"XDG_CACHE_HOME": "/x"}) == Path("/x/chanlab")
    assert provision.cache_dir({"HOME": "/home/u"}) == Path("/home/u/.cache/chanlab")


# --- no bitcoind, no apt ---------------------------------------------------------------------


def test_no_bitcoind_and_no_apt_says_what_to_do(tmp_path: Path) -> None:
    """Nothing on PATH, empty cache, no apt-get: a short error naming both ways out."""
    env = bare_env(tmp_path)
    with pytest.raises(BitcoindNotFound) as caught:
        ensure_bitcoind(env)
    message = str(caught.value)
    assert "apt-get" in message
    assert "BITCOIND=/path/to/bitcoind" in message
    assert "docker compose up" in message
    assert "\n" not in message
    assert len(message.replace(str(tmp_path), "")) < 400
    assert not (tmp_path / "cache").exists()


def test_cli_install_without_bitcoind_or_apt_exits_2(tmp_path: Path) -> None:
    """`chanlab bitcoind install` on such a machine prints one error line and exits 2."""
    env = bare_env(tmp_path)
    done = run_cli(env, "bitcoind", "install")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("chanlab: no usable bitcoind")
    assert "docker compose up" in lines[0]
    assert "Traceback" not in done.stderr


def test_cli_where_reports_the_choice(tmp_path: Path) -> None:
    """`chanlab bitcoind where` names the binary, its version and why it was chosen."""
    chosen = fake_bitcoind(tmp_path / "custom" / "bitcoind", "Bitcoin Core version v28.1.0")
    env = bare_env(tmp_path)
    env["BITCOIND"] = str(chosen)
    done = run_cli(env, "bitcoind", "where")
    assert done.returncode == 0, done.stderr
    assert f"bitcoind:    {chosen}" in done.stdout
    assert "Bitcoin Core version v28.1.0" in done.stdout
    assert "$BITCOIND is set" in done.stdout


def test_require_without_anything_points_at_install(tmp_path: Path) -> None:
    """Code that needs a bitcoind but must not provision tells the user to run install."""
    with pytest.raises(BitcoindNotFound, match="chanlab bitcoind install"):
        require_bitcoind(bare_env(tmp_path))


# --- the cache -------------------------------------------------------------------------------


def test_fresh_cache_is_provisioned_once(tmp_path: Path) -> None:
    """An empty cache is provisioned; the next search finds it without provisioning again."""
    env = bare_env(tmp_path)
    calls, run = fake_provisioner()
    lines: list[str] = []
    binary = ensure_bitcoind(env, progress=lines.append, provisioner=run)
    assert binary.source is BinarySource.PROVISIONED
    assert binary.bitcoind == provision.cache_dir(env) / "bin" / "bitcoind"
    assert binary.bitcoin_cli == provision.cache_dir(env) / "bin" / "bitcoin-cli"
    assert lines == ["fake provisioning"]
    again = ensure_bitcoind(env, provisioner=run)
    assert again.source is BinarySource.CACHE
    assert calls == [provision.cache_dir(env)]


def test_half_provisioned_cache_is_detected_and_redone(tmp_path: Path) -> None:
    """Leftovers without a manifest are a broken cache: reported, then wiped and redone."""
    env = bare_env(tmp_path)
    cache = provision.cache_dir(env)
    (cache / "prefix" / "usr" / "lib").mkdir(parents=True)
    (cache / "prefix" / "usr" / "lib" / "half.so").write_bytes(b"partial")
    (cache / "debs").mkdir()

    state = provision.inspect_cache(cache)
    assert isinstance(state, provision.CacheBroken)
    assert "interrupted" in state.reason
    with pytest.raises(BrokenCache, match="chanlab bitcoind install"):
        require_bitcoind(env)

    calls, run = fake_provisioner()
    lines: list[str] = []
    binary = ensure_bitcoind(env, progress=lines.append, provisioner=run)
    assert calls == [cache]
    assert binary.version == (29, 4, 3)
    assert not (cache / "prefix" / "usr" / "lib" / "half.so").exists()
    assert not (cache / "debs").exists()
    assert "broken" in lines[0]


def test_cache_with_missing_wrapper_is_broken(tmp_path: Path) -> None:
    """A manifest whose wrapper script was deleted is a broken cache, not a ready one."""
    env = bare_env(tmp_path)
    cache = provision.cache_dir(env)
    _calls, run = fake_provisioner()
    run(cache, lambda _line: None)
    (cache / "bin" / "bitcoind").unlink()
    state = provision.inspect_cache(cache)
    assert isinstance(state, provision.CacheBroken)
    assert "bin/bitcoind is missing" in state.reason


def test_cached_bitcoind_that_does_not_run_is_broken(tmp_path: Path) -> None:
    """A cached wrapper that fails --version (e.g. libraries removed) is reported as broken."""
    env = bare_env(tmp_path)
    cache = provision.cache_dir(env)
    _calls, run = fake_provisioner()
    run(cache, lambda _line: None)
    fake_bitcoind(cache / "bin" / "bitcoind", "cannot open shared object", exit_code=127)
    located = locate_bitcoind(env)
    assert located.binary is None
    assert located.cache_broken is not None
    assert "does not run" in located.cache_broken


def test_wipe_keeps_only_the_apt_index(tmp_path: Path) -> None:
    """wipe() removes every provisioned part and the manifest, and leaves the apt lists."""
    cache = tmp_path / "c"
    _calls, run = fake_provisioner()
    run(cache, lambda _line: None)
    (cache / "apt" / "lists").mkdir(parents=True)
    provision.wipe(cache)
    assert sorted(p.name for p in cache.iterdir()) == ["apt"]
    assert isinstance(provision.inspect_cache(cache), provision.CacheEmpty)


# --- reading the machine's apt configuration ---------------------------------------------------

DEB822 = """\
Types: deb
URIs: http://mirror.invalid/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
# a comment inside the stanza
URIs: http://mirror.invalid/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""


def test_deb822_source_picks_the_release_suite_not_security(tmp_path: Path) -> None:
    """From a deb822 file the entry with the plain release suite is chosen, with its keyring."""
    parts = tmp_path / "sources.list.d"
    parts.mkdir()
    (parts / "debian.sources").write_text(DEB822)
    (parts / "other.sources.disabled").write_text(DEB822.replace("debian", "other"))
    source = provision.read_apt_source(tmp_path)
    assert source == provision.AptSource(
        uri="http://mirror.invalid/debian",
        signed_by="/usr/share/keyrings/debian-archive-keyring.gpg",
    )


def test_disabled_deb822_stanza_is_ignored(tmp_path: Path) -> None:
    """A stanza with `Enabled: no` is not used."""
    parts = tmp_path / "sources.list.d"
    parts.mkdir()
    disabled = "Enabled: no\n" + DEB822.split("\n\n")[1]
    (parts / "a.sources").write_text(disabled)
    with pytest.raises(ProvisionError, match="no Debian archive found"):
        provision.read_apt_source(tmp_path)


def test_one_line_sources_list_with_signed_by(tmp_path: Path) -> None:
    """The classic one-line format, options in brackets, is read too; security lines are not."""
    (tmp_path / "sources.list").write_text(
        "# deb http://old.invalid/debian bookworm main\n"
        "deb http://mirror.invalid/debian-security bookworm-security main\n"
        "deb [arch=amd64 signed-by=/etc/keys/debian.gpg] "
        "http://mirror.invalid/debian bookworm main\n"
    )
    source = provision.read_apt_source(tmp_path)
    assert source == provision.AptSource(
        uri="http://mirror.invalid/debian", signed_by="/etc/keys/debian.gpg"
    )


def test_one_line_sources_without_signed_by(tmp_path: Path) -> None:
    """Without signed-by the source has no keyring (apt then uses its trusted keyrings)."""
    (tmp_path / "sources.list").write_text("deb http://mirror.invalid/debian bookworm main\n")
    assert provision.read_apt_source(tmp_path).signed_by is None


APT_CACHE_DEPENDS = """\
bitcoin-knots
 |Depends: debconf
  Depends: <debconf-2.0>
    cdebconf
    debconf
 |Depends: systemd
  Depends: <systemd-sysusers>
    opensysusers
  Depends: libc6
  Depends: libevent-core-2.1-7t64
 |PreDepends: libzmq5
  PreDepends: libzmq3
  Recommends: libfoo1
  Breaks: libbar2
libzmq5
  Depends: libsodium26:any
  Depends: <libvirtual1>
"""


def test_dependency_parser_takes_first_alternatives_only() -> None:
    """Depends/PreDepends groups yield their first alternative; virtual names and others drop."""
    assert provision._first_alternatives(APT_CACHE_DEPENDS) == [
        "debconf",
        "systemd",
        "libc6",
        "libevent-core-2.1-7t64",
        "libzmq5",
        "libsodium26",
    ]


def test_unsupported_reason_names_missing_tools(tmp_path: Path) -> None:
    """Where apt/dpkg are absent, the reason names them (and provisioning is not tried)."""
    reason = provision.unsupported_reason(bare_env(tmp_path))
    assert reason is not None
    assert "apt-get" in reason and "dpkg" in reason
