"""`chanlab bitcoind start|stop` for hand-run sessions: one per home, stable ports, clean stop."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from regtest.wait import wait_for

CHANLAB = [sys.executable, "-m", "regtest.cli"]


def _start(home: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([*CHANLAB, "bitcoind", "start"], env={**os.environ,
                            "CHANLAB_HOME": str(home)}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CHANLAB, *args], env={**os.environ, "CHANLAB_HOME": str(home)},
                          capture_output=True, text=True, timeout=120)


def _endpoint(home: Path) -> dict[str, str]:
    wait_for(lambda: (home / "bitcoind.json").exists(), timeout=90,
             what="bitcoind.json to appear")
    data: dict[str, str] = json.loads((home / "bitcoind.json").read_text())
    return data


def test_second_start_refused_stop_cleans_up_restart_keeps_ports(tmp_path: Path) -> None:
    """A second start names the running one; stop ends it; the next start uses the same ports."""
    first = _start(tmp_path)
    try:
        endpoint = _endpoint(tmp_path)
        second = _run(tmp_path, "bitcoind", "start")
        assert second.returncode == 1
        assert f"(chanlab process {first.pid})" in second.stderr
        assert len(second.stderr.strip().splitlines()) == 1  # one line, no traceback
        mined = _run(tmp_path, "bitcoind", "mine", "2")
        assert mined.returncode == 0, mined.stderr
        stopped = _run(tmp_path, "bitcoind", "stop")
        assert stopped.returncode == 0 and f"process {first.pid}" in stopped.stdout
        assert first.wait(timeout=60) == 0
        assert not (tmp_path / "bitcoind.json").exists()
        assert not (tmp_path / "bitcoind.pid").exists()
        assert "no bitcoind is running" in _run(tmp_path, "bitcoind", "stop").stdout
    finally:
        first.kill()
        first.wait()
    again = _start(tmp_path)
    try:
        assert _endpoint(tmp_path) == endpoint  # same RPC port, same ZMQ endpoints, same cookie
        assert _run(tmp_path, "bitcoind", "stop").returncode == 0
        assert again.wait(timeout=60) == 0
    finally:
        again.kill()
        again.wait()


def test_stale_files_of_a_crashed_run_are_cleaned_up(tmp_path: Path) -> None:
    """A pid file naming a dead process does not block the next start."""
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / "bitcoind.pid").write_text(f"{dead.pid}\n")
    (tmp_path / "bitcoind.json").write_text('{"rpc_url": "http://127.0.0.1:1"}')
    proc = _start(tmp_path)
    try:
        wait_for(lambda: (tmp_path / "bitcoind.pid").read_text().strip() == str(proc.pid)
                 if (tmp_path / "bitcoind.pid").exists() else False, timeout=30,
                 what="the new pid file")
        assert _endpoint(tmp_path)["rpc_url"] != "http://127.0.0.1:1"
        proc.terminate()  # what `stop` sends: a clean exit
        assert proc.wait(timeout=60) == 0
        time.sleep(0.1)
        assert not (tmp_path / "bitcoind.json").exists()
    finally:
        proc.kill()
        proc.wait()
