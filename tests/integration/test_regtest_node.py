"""A local regtest bitcoind starts, stops, restarts and fails the way chanlab promises.

Covers: clean start/stop without orphans (also after Ctrl-C, SIGTERM and kill -9 of Python),
ports in use, a node dying at start, a node that never answers, restart and crash keeping
the chain.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from regtest.bitcoind_binary import BinarySource, BitcoindBinary
from regtest.errors import NodeStartError, PortInUse
from regtest.node import LocalBitcoind
from regtest.rpc import Rpc
from regtest.wait import wait_for
from regtest.wallet import Wallet

REPO = Path(__file__).resolve().parents[2]


def process_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a container's init may not reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    state = stat.rsplit(")", 1)[1].split()[0]
    return state != "Z"


def fake_binary(tmp_path: Path, body: str) -> BitcoindBinary:
    """A BitcoindBinary whose 'bitcoind' is a shell script running ``body``."""
    script = tmp_path / "fake" / "bitcoind"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(0o755)
    return BitcoindBinary(
        bitcoind=script,
        bitcoin_cli=None,
        version=(27, 0, 0),
        version_line="Bitcoin Core version v27.0.0",
        source=BinarySource.ENV,
        reason="test fake",
    )


@pytest.fixture()
def listening_socket() -> Iterator[int]:
    """A port on 127.0.0.1 held by a listening socket for the test's duration."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_start_stop_leaves_no_process_and_no_datadir(bitcoind_binary: BitcoindBinary) -> None:
    """After `with LocalBitcoind()` the bitcoind process is gone and its temp datadir removed."""
    with LocalBitcoind(binary=bitcoind_binary) as node:
        pid = node.pid
        datadir = node.datadir
        assert pid is not None and process_running(pid)
        assert node.rpc.getblockchaininfo().chain == "regtest"
        assert node.cookie_path.is_file()
    assert not process_running(pid)
    assert not datadir.exists()
    assert node.pid is None


def test_node_exposes_its_endpoints(bitcoind: LocalBitcoind) -> None:
    """rpc_url, p2p_port and the two ZMQ endpoints are the ones bitcoind really uses."""
    notifications = {n["type"]: n["address"] for n in bitcoind.rpc.getzmqnotifications()}
    assert notifications == {"pubrawblock": bitcoind.zmq_rawblock, "pubrawtx": bitcoind.zmq_rawtx}
    assert bitcoind.rpc_url == f"http://127.0.0.1:{bitcoind.rpc_port}"
    assert bitcoind.chain == "regtest"
    with socket.create_connection(("127.0.0.1", bitcoind.p2p_port), timeout=5):
        pass  # bitcoind accepts P2P connections there


@pytest.mark.parametrize("which", ["rpc_port", "p2p_port", "zmq_rawtx_port"])
def test_port_in_use_is_a_short_clear_error(
    bitcoind_binary: BitcoindBinary, listening_socket: int, which: str, temp_root: Path
) -> None:
    """Asking for a port another socket holds fails at once, naming the port; nothing starts."""
    node = LocalBitcoind(binary=bitcoind_binary, **{which: listening_socket})  # type: ignore[arg-type]
    with pytest.raises(PortInUse) as caught:
        node.start()
    message = str(caught.value)
    assert f"port {listening_socket} on 127.0.0.1 is already in use" in message
    assert "\n" not in message
    assert node.pid is None
    assert list(temp_root.iterdir()) == []


def test_port_taken_after_the_check_is_reported_from_bitcoind(
    bitcoind_binary: BitcoindBinary,
    listening_socket: int,
    monkeypatch: pytest.MonkeyPatch,
    temp_root: Path,
) -> None:
    """If the port is grabbed between our check and bitcoind's bind, bitcoind's failure is
    still reported as PortInUse, and the dead node leaves nothing behind."""
    monkeypatch.setattr("regtest.node.check_port_free", lambda port, what: None)
    node = LocalBitcoind(binary=bitcoind_binary, p2p_port=listening_socket)
    with pytest.raises(PortInUse, match="already in use") as caught:
        node.start()
    assert "Unable to bind" in str(caught.value)
    assert node.pid is None
    assert list(temp_root.iterdir()) == []


@pytest.fixture()
def temp_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make tempfile (and so a node's own temp datadir) use a folder the test can inspect."""
    root = tmp_path / "tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def test_node_dying_at_start_reports_its_error(
    bitcoind_binary: BitcoindBinary, temp_root: Path
) -> None:
    """A bitcoind that exits during startup (bad option) fails fast with its stderr and leaves
    no process and no temp datadir behind."""
    node = LocalBitcoind(binary=bitcoind_binary, extra_args=["-nosuchoption=1"])
    with pytest.raises(NodeStartError) as caught:
        node.start()
    message = str(caught.value)
    assert not isinstance(caught.value, PortInUse)
    assert "exited with code 1 during startup" in message
    assert "nosuchoption" in message
    assert node.pid is None
    assert list(temp_root.iterdir()) == []


def test_fake_bitcoind_that_exits_reports_stderr(tmp_path: Path) -> None:
    """Whatever the binary prints on stderr before dying is in the error."""
    binary = fake_binary(tmp_path, 'echo "fatal: cannot lock datadir" >&2\nexit 3')
    with pytest.raises(NodeStartError, match="cannot lock datadir") as caught:
        LocalBitcoind(binary=binary).start()
    assert "exited with code 3" in str(caught.value)


def test_node_that_never_answers_times_out_and_is_killed(tmp_path: Path) -> None:
    """A process that runs but never serves RPC is killed after the startup timeout."""
    pid_file = tmp_path / "pid"
    binary = fake_binary(tmp_path, f'echo $$ > "{pid_file}"\nexec sleep 60')
    node = LocalBitcoind(binary=binary, startup_timeout_s=1.0)
    with pytest.raises(NodeStartError, match="did not answer RPC within 1 s"):
        node.start()
    pid = int(pid_file.read_text())
    assert not process_running(pid)


def test_restart_keeps_chain_wallets_and_mempool(fresh_bitcoind: LocalBitcoind) -> None:
    """restart() comes back on the same datadir and ports with blocks, wallets and mempool."""
    miner = Wallet(fresh_bitcoind.rpc, "miner")
    miner.mine(5)
    pending = miner.send_to_address(miner.new_address(), 100_000)
    before = (miner.height(), fresh_bitcoind.rpc.getbestblockhash(), miner.balances())
    rpc_url, pid = fresh_bitcoind.rpc_url, fresh_bitcoind.pid
    assert pid is not None

    fresh_bitcoind.restart()

    assert fresh_bitcoind.rpc_url == rpc_url
    assert fresh_bitcoind.pid != pid and not process_running(pid)
    miner = Wallet(fresh_bitcoind.rpc, "miner")
    assert (miner.height(), fresh_bitcoind.rpc.getbestblockhash(), miner.balances()) == before
    assert fresh_bitcoind.rpc.listwallets() == ["miner"]
    assert miner.in_mempool(pending)


def test_crash_and_start_again_keeps_the_chain(fresh_bitcoind: LocalBitcoind) -> None:
    """After a SIGKILL (a crash drill) start() brings the node back at the same tip."""
    miner = Wallet(fresh_bitcoind.rpc, "miner")
    miner.mine(3)
    tip = fresh_bitcoind.rpc.getbestblockhash()
    pid = fresh_bitcoind.pid
    assert pid is not None
    fresh_bitcoind.kill()
    assert not process_running(pid)
    fresh_bitcoind.start()
    assert fresh_bitcoind.rpc.getbestblockhash() == tip


def test_rpc_client_survives_a_restart(fresh_bitcoind: LocalBitcoind) -> None:
    """A client made before a restart re-reads the new cookie and keeps working."""
    with Rpc(fresh_bitcoind.rpc_url, auth=fresh_bitcoind.cookie_path) as client:
        height = client.getblockcount()
        old_cookie = fresh_bitcoind.cookie_path.read_text()
        fresh_bitcoind.restart()
        assert fresh_bitcoind.cookie_path.read_text() != old_cookie
        assert client.getblockcount() == height


CHILD = """
import sys, time
from pathlib import Path
from regtest.bitcoind_binary import BinarySource, probe
from regtest.node import LocalBitcoind

binary = probe(Path(sys.argv[1]), source=BinarySource.ENV, reason="test")
with LocalBitcoind(binary=binary) as node:
    print(node.pid, node.datadir, flush=True)
    time.sleep(120)
"""


@pytest.mark.parametrize(
    ("sig", "cleans_datadir"),
    [(signal.SIGINT, True), (signal.SIGTERM, True), (signal.SIGKILL, False)],
    ids=["ctrl-c", "sigterm", "kill-9"],
)
def test_no_orphan_when_python_is_interrupted_or_killed(
    bitcoind_binary: BitcoindBinary, sig: signal.Signals, cleans_datadir: bool
) -> None:
    """Ctrl-C, SIGTERM or kill -9 of the Python process running a node takes bitcoind down."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(bitcoind_binary.bitcoind)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        pid_text, datadir_text = child.stdout.readline().split()
        pid, datadir = int(pid_text), Path(datadir_text)
        assert process_running(pid)
        os.kill(child.pid, sig)
        child.wait(timeout=60)
        wait_for(lambda: not process_running(pid), timeout=15, what=f"bitcoind {pid} to exit")
        assert datadir.exists() is not cleans_datadir
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    if not cleans_datadir:
        import shutil

        shutil.rmtree(datadir, ignore_errors=True)
