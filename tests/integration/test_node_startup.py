"""A node process refuses to start where starting would hurt, with one line saying why.

Each test runs ``chanlab node start`` as a real process (beside a running one, over a deleted
or corrupt ``node.db``, on a port in use) and checks its exit code and its stderr: one
``chanlab: error:`` line, no traceback.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path

from regtest.cluster import Cluster, NodeProcess

START_TIMEOUT_S = 20.0


def _name(role: str) -> str:
    """A node name unique in the run (it is also the node's wallet name on the shared bitcoind)."""
    return f"{role}-{secrets.token_hex(3)}"


def _start_cli(cluster: Cluster, name: str, *extra: str) -> subprocess.CompletedProcess[str]:
    """``chanlab node start --name NAME`` as a process; it must exit by itself."""
    cmd = [sys.executable, "-m", "regtest.cli", "node", "start", "--name", name, *extra]
    env = dict(os.environ, CHANLAB_HOME=str(cluster.home))
    return subprocess.run(cmd, env=env, capture_output=True, text=True,
                          timeout=START_TIMEOUT_S, check=False)


def _error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The one error line of a refused start (no traceback anywhere on stderr)."""
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("chanlab: error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def _stopped(cluster: Cluster, role: str) -> NodeProcess:
    node = cluster.start_node(_name(role))
    node.stop()
    return node


def test_second_process_on_the_same_node_is_refused_naming_the_first(cluster: Cluster) -> None:
    """Starting a running node's name again exits at once, naming the running pid; the first
    node keeps answering."""
    alice = cluster.start_node(_name("twice"))
    started = time.monotonic()
    line = _error_line(_start_cli(cluster, alice.name))
    assert time.monotonic() - started < 10
    assert f"(pid {alice.pid})" in line
    assert "already running" in line
    assert alice.call("info")["name"] == alice.name
    assert (alice.home / "node.lock").read_text().strip() == str(alice.pid)


def test_deleted_database_beside_an_existing_key_refuses_to_start(cluster: Cluster) -> None:
    """A key without its node.db (deleted, or empty) refuses to start unless --allow-fresh-db,
    and says it is the old-backup danger."""
    node = _stopped(cluster, "nodb")
    for suffix in ("", "-wal", "-shm"):
        (node.home / f"node.db{suffix}").unlink(missing_ok=True)
    line = _error_line(_start_cli(cluster, node.name))
    assert "--allow-fresh-db" in line and "old backup" in line
    assert not (node.home / "node.db").exists()   # refused before creating anything
    (node.home / "node.db").write_bytes(b"")
    assert "--allow-fresh-db" in _error_line(_start_cli(cluster, node.name))
    node.start_args = ["--allow-fresh-db"]
    node.start()
    assert node.call("info")["channels"] == 0


def test_corrupt_database_gives_one_line(cluster: Cluster) -> None:
    """A node.db that is not a database: exit code 1 and one line, no traceback."""
    node = _stopped(cluster, "corrupt")
    for suffix in ("-wal", "-shm"):
        (node.home / f"node.db{suffix}").unlink(missing_ok=True)
    (node.home / "node.db").write_bytes(b"this is not sqlite " * 512)
    line = _error_line(_start_cli(cluster, node.name))
    assert "not a readable node database" in line


def test_port_in_use_gives_one_line(cluster: Cluster, tmp_path: Path) -> None:
    """--port on a port another socket holds: exit code 1 and one line naming the port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = _error_line(_start_cli(cluster, _name("port"), "--port", str(port)))
    assert f"cannot listen on 127.0.0.1:{port}" in line
