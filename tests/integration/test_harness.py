"""chanlab as a test harness for other projects: the pytest plugin and ``Lab``, installed the
way a downstream project installs them.

A fresh virtual environment outside the repository gets ``pip install <this repository>
pytest`` (the machine's pip configuration and cache; real dependencies, no ``--no-deps``).
There, plain ``pytest`` runs ``examples/test_with_chanlab.py`` (the file ``docs/testing.md``
shows) plus one test that fails on purpose, with no conftest; and ``examples/lab_story.py``
runs. Each run gets a private ``$TMPDIR``, which must be empty afterwards, and no process may
be left running from the environment's folder.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import venv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from chanlab import Lab, NodeError

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_TEST = REPO / "examples" / "test_with_chanlab.py"
LAB_STORY = REPO / "examples" / "lab_story.py"
DOCS = REPO / "docs" / "testing.md"

FAILING_TEST = '''

def test_fails_on_purpose_to_show_the_logs(node_factory: NodeFactory) -> None:
    """Fails on purpose: its report must carry the node's log."""
    node = node_factory.get_node("logged")
    assert node.balance().onchain_sat == 1, "fails on purpose"
'''


@dataclass(frozen=True)
class Downstream:
    """A virtual environment with chanlab installed from this repository, outside it."""

    root: Path
    python: Path
    install_s: float


def _leftover_processes(root: Path) -> list[str]:
    """Command lines of running processes that mention ``root`` (its python, its temp dirs)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace")
        except OSError:
            continue
        if str(root) in cmdline:
            found.append(f"{proc.name}: {cmdline[:200]}")
    return found


@pytest.fixture(scope="module")
def downstream() -> Iterator[Downstream]:
    import time

    root = Path(tempfile.mkdtemp(prefix="chanlab-downstream-"))
    build_dir = REPO / "build"
    had_build_dir = build_dir.exists()
    try:
        started = time.monotonic()
        venv.EnvBuilder(with_pip=True, system_site_packages=False).create(root / "venv")
        python = root / "venv" / "bin" / "python"
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", str(REPO), "pytest"],
                       check=True, cwd=root, capture_output=True, timeout=600)
        install_s = time.monotonic() - started
        print(f"\nfresh venv + pip install of chanlab and pytest: {install_s:.1f} s",
              file=sys.stderr)
        yield Downstream(root=root, python=python, install_s=install_s)
    finally:
        if not had_build_dir:   # setuptools builds in the source tree; leave it as it was
            shutil.rmtree(build_dir, ignore_errors=True)
        shutil.rmtree(root, ignore_errors=True)


def _run(env_of: Downstream, workdir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the environment's python in ``workdir`` with a private, checked-empty ``$TMPDIR``."""
    tmp = workdir / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTEST_DISABLE_PLUGIN_AUTOLOAD", "PYTEST_ADDOPTS",
                        "CHANLAB_HOME", "VIRTUAL_ENV")}
    env["TMPDIR"] = str(tmp)
    result = subprocess.run([str(env_of.python), *args], cwd=workdir, env=env, text=True,
                            capture_output=True, timeout=600)
    assert sorted(p.name for p in tmp.iterdir()) == [], result.stdout[-3000:]
    assert _leftover_processes(env_of.root) == []
    return result


def test_docs_show_the_example_test_file_verbatim() -> None:
    """docs/testing.md carries examples/test_with_chanlab.py whole, so the docs' file is the
    one this module runs."""
    assert EXAMPLE_TEST.read_text() in DOCS.read_text()


def test_plain_pytest_in_a_fresh_venv_runs_the_example_and_reports_logs(
        downstream: Downstream) -> None:
    """Installed from a path into a fresh venv, the plugin's fixtures run the example tests
    (open, pay, force-close, exact wallets, kill/restart) with no conftest; a failing test's
    report shows its node's log; nothing is left running or on disk."""
    workdir = downstream.root / "project"
    workdir.mkdir()
    (workdir / "test_example.py").write_text(EXAMPLE_TEST.read_text() + FAILING_TEST)
    result = _run(downstream, workdir, "-m", "pytest", "-p", "no:cacheprovider",
                  "test_example.py")
    out = result.stdout
    assert result.returncode == 1, out[-3000:]
    assert "3 passed" in out and "1 failed" in out, out[-3000:]
    assert not list(workdir.glob("conftest.py"))
    failure = out[out.index("test_fails_on_purpose_to_show_the_logs"):]
    assert "fails on purpose" in failure
    assert "chanlab node logged log" in failure, failure[-3000:]
    assert "node logged (" in failure and "listening on 127.0.0.1:" in failure, failure[-3000:]
    # the passing tests attach nothing
    assert out.count("chanlab node ") == failure.count("chanlab node ")


def test_lab_script_in_a_fresh_venv_tells_the_story(downstream: Downstream) -> None:
    """examples/lab_story.py, run with the fresh venv's python, opens, pays, force-closes and
    checks both wallets to the satoshi, then leaves nothing behind."""
    workdir = downstream.root / "script"
    workdir.mkdir()
    script = workdir / "lab_story.py"
    shutil.copy(LAB_STORY, script)
    result = _run(downstream, workdir, str(script))
    assert result.returncode == 0, result.stderr[-3000:]
    assert "both wallets match the chain to the satoshi" in result.stdout


def test_lab_cleans_up_after_an_interrupt() -> None:
    """Ctrl-C (KeyboardInterrupt) inside ``with Lab()`` stops the node and bitcoind and
    removes their folders."""
    with pytest.raises(KeyboardInterrupt), Lab() as lab:
        (node,) = lab.nodes("interrupted", funds_sat=0)
        home, process = lab.factory.home, node.process
        datadir = lab.bitcoind.datadir
        assert process.running and home.is_dir() and datadir.is_dir()
        raise KeyboardInterrupt
    assert not process.running
    assert not home.exists() and not datadir.exists()
    with pytest.raises(NodeError, match="not running"):
        node.info()
