"""A classroom across laptops, on one machine: two regtest bitcoinds joined over Bitcoin's P2P
network, a chanlab node on each, a channel and a payment between them, and a breach broadcast
to one bitcoind punished by the node watching the other; plus ``chanlab bitcoind start --peer``,
``info`` and ``attach`` (user and password from a 0600 file) as a student would run them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from onchain import REVOCATION_PATH, fee_of, height_of, tx_of, witness

from channel.types import OutPoint
from regtest.bitcoind_binary import BitcoindBinary
from regtest.bitcoind_lan import peer_args
from regtest.cluster import Cluster, NodeProcess
from regtest.drills import owned_by, settlement, unspent_vouts
from regtest.node import LocalBitcoind, free_port
from regtest.wait import wait_for
from regtest.wallet import Wallet, ensure_mature_coins

CHANLAB = [sys.executable, "-m", "regtest.cli"]
CHANNEL_SAT = 1_000_000
ALICE_FUNDS_SAT = 2_000_000
TO_SELF_DELAY = 6
FIRST_PAYMENT_MSAT = 123_456_789      # not a whole number of sat: the msat must survive
SECOND_PAYMENT_MSAT = 200_000_000
# noban: the two bitcoinds announce transactions at once instead of on the few-second trickle
# (Bitcoin Core's privacy delay), so the test measures chanlab, not that timer
RELAY_NOW = "-whitelist=noban@127.0.0.1"


def _same_tip(a: LocalBitcoind, b: LocalBitcoind) -> None:
    wait_for(lambda: a.rpc.getbestblockhash() == b.rpc.getbestblockhash(), timeout=30,
             what="both bitcoinds to have the same tip")


@pytest.fixture()
def peered(bitcoind_binary: BitcoindBinary, tmp_path: Path,
           ) -> Iterator[tuple[LocalBitcoind, LocalBitcoind, Wallet]]:
    """Bitcoind A (the teacher's) and B, which joins A over P2P; A's miner has mature coins
    and B has its blocks."""
    with LocalBitcoind(binary=bitcoind_binary, datadir=tmp_path / "bitcoind-a",
                       extra_args=[RELAY_NOW]) as a:
        join = peer_args((f"127.0.0.1:{a.p2p_port}",))
        with LocalBitcoind(binary=bitcoind_binary, datadir=tmp_path / "bitcoind-b",
                           extra_args=[*join, RELAY_NOW]) as b:
            wait_for(lambda: a.rpc.call("getconnectioncount") == 1, timeout=30,
                     what="bitcoind B to connect to A")
            miner = Wallet.open(a.rpc, "miner")
            ensure_mature_coins(miner)
            _same_tip(a, b)
            yield a, b, miner


def _mine(a: LocalBitcoind, b: LocalBitcoind, miner: Wallet, nodes: tuple[NodeProcess, ...],
          n: int = 1) -> int:
    """Mine ``n`` blocks on A one by one; after each, B and every node have it."""
    for _ in range(n):
        miner.mine(1)
        _same_tip(a, b)
        for node in nodes:
            _wait_height(node, miner.height())
    return miner.height()


def _wait_height(node: NodeProcess, height: int) -> None:
    wait_for(lambda: int(node.call("info")["height"]) >= height, timeout=30,
             what=f"{node.name} to see block {height}")


def _balances(cluster: Cluster, node: NodeProcess, funding_txid: str) -> tuple[int, int]:
    chan = cluster.channel(node, funding_txid)
    return int(chan["local_msat"]), int(chan["remote_msat"])


def test_channel_payment_and_breach_across_two_peered_bitcoinds(
        peered: tuple[LocalBitcoind, LocalBitcoind, Wallet], tmp_path: Path) -> None:
    """Alice's node on bitcoind A and Bob's on B open a channel and pay to the msat; Alice's
    revoked state, broadcast to A only, reaches B over P2P, and Bob's penalty (sent to B)
    confirms on A's chain: Bob's wallet ends with the whole channel minus the fees, exactly."""
    a, b, miner = peered
    with Cluster.running(a, tmp_path / "home-a", miner) as on_a, \
            Cluster.running(b, tmp_path / "home-b", miner) as on_b:
        alice = on_a.start_node("alice", funds_sat=ALICE_FUNDS_SAT, allow_cheating=True,
                                to_self_delay=TO_SELF_DELAY)
        bob = on_b.start_node("bob", to_self_delay=TO_SELF_DELAY)
        assert alice.wallet.balance_sat() == ALICE_FUNDS_SAT     # read on A

        # the funding transaction goes to A; Bob's node learns its depth from B
        opened = on_a.open_channel(alice, bob, CHANNEL_SAT)
        funding_txid = str(opened["funding_txid"])
        channel = str(opened["channel"])
        txid_hex, vout = str(on_a.channel(alice, funding_txid)["funding_outpoint"]).split(":")
        funding = OutPoint.from_txid_hex(txid_hex, int(vout))
        funding_height = height_of(miner, funding_txid)
        assert b.rpc.getrawtransaction(funding_txid) == a.rpc.getrawtransaction(funding_txid)

        states: dict[int, tuple[int, int]] = {}
        for amount_msat in (FIRST_PAYMENT_MSAT, SECOND_PAYMENT_MSAT):
            result = on_a.pay(alice, bob, amount_msat)
            assert result["status"] == "succeeded", result
            chan = on_a.channel(alice, funding_txid)
            states[int(chan["holder_commitment_number"])] = _balances(on_a, alice, funding_txid)
        first, second = sorted(states)
        assert states[first] == (CHANNEL_SAT * 1000 - FIRST_PAYMENT_MSAT, FIRST_PAYMENT_MSAT)
        paid_msat = FIRST_PAYMENT_MSAT + SECOND_PAYMENT_MSAT
        assert states[second] == (CHANNEL_SAT * 1000 - paid_msat, paid_msat)
        assert _balances(on_b, bob, funding_txid) == (paid_msat, CHANNEL_SAT * 1000 - paid_msat)

        # the breach: Alice's revoked state (she had more), to bitcoind A only
        cheated = alice.call("cheat", channel=channel, state=first)
        breach_txid = str(cheated["revoked_commitment_txid"])
        assert breach_txid in a.rpc.getrawmempool()
        broadcast_at = time.monotonic()
        wait_for(lambda: breach_txid in b.rpc.getrawmempool(), timeout=30,
                 what="the breach to reach bitcoind B over P2P", max_interval=0.01)
        relayed_s = time.monotonic() - broadcast_at
        # Bob's node saw it on B and sent its penalty to B; it comes back to A over P2P
        wait_for(lambda: not unspent_vouts(miner, breach_txid), timeout=30,
                 what="Bob's penalty in A's mempool", max_interval=0.01)
        penalty_s = time.monotonic() - broadcast_at
        print(f"\nbreach in A's mempool -> in B's: {relayed_s * 1000:.0f} ms; -> Bob's penalty "
              f"(sent to B) in A's mempool: {penalty_s * 1000:.0f} ms")
        _mine(a, b, miner, (alice, bob), 1)

        s = settlement(miner, funding, funding_height)
        assert s.closing_txid == breach_txid
        assert s.foreign_inputs_sat == 0
        assert s.leaves and s.leaves_of(bob.wallet) == list(s.leaves)
        # Bob started with nothing: every satoshi in his wallet (read from B) is the channel's
        expected_bob_sat = CHANNEL_SAT - s.total_fees_sat
        wait_for(lambda: bob.wallet.balance_sat() == expected_bob_sat, timeout=30,
                 what=f"Bob's wallet on B to hold {expected_bob_sat} sat")
        assert bob.wallet.balance_sat() == expected_bob_sat
        assert alice.wallet.balance_sat() == \
            ALICE_FUNDS_SAT - CHANNEL_SAT - fee_of(miner, funding_txid)
        # how: to_local taken on the revocation path, in the block right after the breach
        claims = [tx_of(miner, t) for t in s.order[1:]]
        stacks = [witness(tx, i) for tx in claims for i in range(len(tx.vin))
                  if bytes(tx.vin[i].prevout.hash)[::-1].hex() == breach_txid]
        assert [w for w in stacks if len(w) == 3 and w[1] == REVOCATION_PATH]
        assert height_of(miner, s.order[-1]) == height_of(miner, breach_txid)
        assert not any(owned_by(alice.wallet, leaf.script_pubkey) for leaf in s.leaves)


# --- the CLI a student runs ----------------------------------------------------------------------


def _rpcauth(user: str, password: str) -> str:
    """bitcoind's ``-rpcauth`` line: user, salt and HMAC-SHA256(salt, password) (share/rpcauth)."""
    salt = os.urandom(16).hex()
    digest = hmac.new(salt.encode(), password.encode(), hashlib.sha256).hexdigest()
    return f"-rpcauth={user}:{salt}${digest}"


STUDENT = "student"
STUDENT_PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(scope="module")
def teacher(bitcoind_binary: BitcoindBinary, tmp_path_factory: pytest.TempPathFactory,
            ) -> Iterator[LocalBitcoind]:
    """A bitcoind that also accepts the RPC user ``student`` (its cookie still works)."""
    with LocalBitcoind(binary=bitcoind_binary, datadir=tmp_path_factory.mktemp("teacher"),
                       extra_args=[_rpcauth(STUDENT, STUDENT_PASSWORD), RELAY_NOW]) as node:
        ensure_mature_coins(Wallet.open(node.rpc, "miner"))
        yield node


def _run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CHANLAB, *args], env={**os.environ, "CHANLAB_HOME": str(home)},
                          capture_output=True, text=True, timeout=120)


def _password_file(folder: Path, mode: int = 0o600) -> Path:
    path = folder / "rpc-password"
    path.write_text(STUDENT_PASSWORD + "\n")
    path.chmod(mode)
    return path


def test_attach_with_user_and_password_file_then_a_node_uses_it(
        teacher: LocalBitcoind, tmp_path: Path) -> None:
    """`chanlab bitcoind attach --rpc-user --rpc-password-file` (no ZMQ) writes a bitcoind.json
    holding the file's path, never the password; a node started in that home reports the
    bitcoind's height, and follows new blocks by polling."""
    miner = Wallet(teacher.rpc, "miner")
    home = tmp_path / "home"
    with Cluster.running(teacher, home, miner) as cluster:   # writes a cookie bitcoind.json
        password_file = _password_file(tmp_path)
        attached = _run(home, "bitcoind", "attach", "--rpc-url", teacher.rpc_url,
                        "--rpc-user", STUDENT, "--rpc-password-file", str(password_file))
        assert attached.returncode == 0, attached.stderr
        assert f"height {miner.height()}" in attached.stdout
        saved = json.loads((home / "bitcoind.json").read_text())
        assert saved == {"rpc_url": teacher.rpc_url, "cookie_path": None, "zmq_rawblock": None,
                         "zmq_rawtx": None, "rpc_user": STUDENT,
                         "rpc_password_file": str(password_file)}
        # the node cannot fall back on the cookie: prove it uses the password by hiding it
        teacher.cookie_path.rename(teacher.cookie_path.with_suffix(".hidden"))
        try:
            carol = cluster.start_node("carol-attached")
            assert int(carol.call("info")["height"]) == miner.height()
            miner.mine(2)
            tip = miner.height()
            wait_for(lambda: int(carol.call("info")["height"]) == tip, timeout=30,
                     what="carol to see the new blocks by polling")
            info = _run(home, "bitcoind", "info", "--json")
            assert info.returncode == 0, info.stderr
            shown = json.loads(info.stdout)
            assert (shown["auth"], shown["rpc_user"], shown["height"], shown["local"]) == \
                ("user", STUDENT, tip, False)
            carol.stop()
        finally:
            teacher.cookie_path.with_suffix(".hidden").rename(teacher.cookie_path)
        for log in (carol.home / "node.log", carol.home / "stderr.log",
                    home / "bitcoind.json"):
            assert STUDENT_PASSWORD not in log.read_text()
        assert STUDENT_PASSWORD not in attached.stdout + attached.stderr + info.stdout


def test_attach_refuses_bad_credentials_and_a_readable_password_file(
        teacher: LocalBitcoind, tmp_path: Path) -> None:
    """A wrong password, a password file others can read, and two kinds of credentials at once
    each end in one line saying what to do, and leave no bitcoind.json behind."""
    home = tmp_path / "home"
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    cases: list[tuple[list[str], str]] = [
        (["--rpc-user", STUDENT, "--rpc-password-file", str(wrong)], "check the user and password"),
        (["--rpc-user", STUDENT, "--rpc-password-file", str(_password_file(tmp_path, 0o644))],
         "chmod 600"),
        (["--cookie", str(teacher.cookie_path), "--rpc-user", STUDENT], "one way"),
    ]
    for extra, hint in cases:
        run = _run(home, "bitcoind", "attach", "--rpc-url", teacher.rpc_url, *extra)
        assert run.returncode == 2, run
        assert len(run.stderr.strip().splitlines()) == 1 and hint in run.stderr, run.stderr
        assert STUDENT_PASSWORD not in run.stderr
    assert not (home / "bitcoind.json").exists()


def _listening(port: int) -> set[str]:
    """The IPv4 addresses a socket listens on at TCP ``port`` (from /proc/net/tcp)."""
    found = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:   # 0A: LISTEN
            found.add(".".join(str(b) for b in reversed(bytes.fromhex(address))))
    return found


def test_start_with_peer_joins_the_teachers_chain(teacher: LocalBitcoind,
                                                  tmp_path: Path) -> None:
    """`chanlab bitcoind start --peer HOST:PORT --listen-lan` syncs to the teacher's chain before
    mining its own coins, opens P2P (and only P2P) on all interfaces, `info` shows the peer and
    the port, and the two bitcoinds share every block after."""
    home = tmp_path / "student"
    p2p_port = free_port()
    student = subprocess.Popen([*CHANLAB, "bitcoind", "start", "--listen-lan", "--peer",
                                f"127.0.0.1:{teacher.p2p_port}", "--p2p-port", str(p2p_port)],
                               env={**os.environ, "CHANLAB_HOME": str(home)},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for(lambda: (home / "bitcoind.json").exists(), timeout=90,
                 what="the student's bitcoind to be ready")
        info = _run(home, "bitcoind", "info", "--json")
        assert info.returncode == 0, info.stderr
        shown: dict[str, Any] = json.loads(info.stdout)
        assert shown["local"] and shown["p2p_bind"] == "0.0.0.0"
        assert shown["p2p_port"] == p2p_port   # the port named, recorded for the next start
        assert json.loads((home / "bitcoind" / "ports.json").read_text())["p2p_port"] == p2p_port
        assert _listening(int(shown["p2p_port"])) == {"0.0.0.0"}
        rpc_port = int(str(shown["rpc_url"]).rsplit(":", 1)[1])
        assert _listening(rpc_port) == {"127.0.0.1"}
        assert shown["joined"] == [f"127.0.0.1:{teacher.p2p_port}"]
        assert [(p["address"], p["inbound"]) for p in shown["peers"]] == \
            [(f"127.0.0.1:{teacher.p2p_port}", False)]
        mined = _run(home, "bitcoind", "mine", "3")   # on the student's bitcoind
        assert mined.returncode == 0, mined.stderr
        student_tip = json.loads(_run(home, "bitcoind", "info", "--json").stdout)
        wait_for(lambda: teacher.rpc.getbestblockhash() == student_tip["best_block_hash"],
                 timeout=30, what="the teacher's bitcoind to have the student's blocks")
        assert teacher.rpc.getblockcount() == student_tip["height"]
        text = _run(home, "bitcoind", "info")
        assert f"out 127.0.0.1:{teacher.p2p_port}" in text.stdout
        assert f"P2P port {shown['p2p_port']} open on all interfaces" in text.stdout
        assert f":{shown['p2p_port']}` (allow TCP {shown['p2p_port']} in" in text.stdout
        stopped = _run(home, "bitcoind", "stop")
        assert stopped.returncode == 0, stopped.stderr
        assert student.wait(timeout=60) == 0
    finally:
        student.kill()
        student.wait()


def test_node_listen_lan_accepts_peers_on_all_interfaces(teacher: LocalBitcoind,
                                                         tmp_path: Path) -> None:
    """`chanlab node start --listen-lan` listens on 0.0.0.0 (not only loopback), so a
    classmate's node can connect to it; a peer reaching it works."""
    miner = Wallet(teacher.rpc, "miner")
    home = tmp_path / "home"
    with Cluster.running(teacher, home, miner) as cluster:
        erin = cluster.start_node("erin-lan")
        lan = subprocess.Popen([*CHANLAB, "node", "start", "--name", "frank-lan", "--listen-lan"],
                               env={**os.environ, "CHANLAB_HOME": str(home)},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            node_json = home / "nodes" / "frank-lan" / "node.json"
            wait_for(node_json.exists, timeout=30, what="frank's node to listen")
            frank = json.loads(node_json.read_text())
            assert _listening(int(frank["port"])) == {"0.0.0.0"}
            erin.call("connect", peer=f"{frank['node_id']}@127.0.0.1:{frank['port']}")
            assert frank["node_id"] in erin.call("info")["peers"]
        finally:
            lan.terminate()
            assert lan.wait(timeout=30) == 0


def test_attach_with_a_copied_cookie_and_zmq(teacher: LocalBitcoind, tmp_path: Path) -> None:
    """`attach --cookie COPY --zmq-rawblock --zmq-rawtx` records the copy and both publishers;
    `info` lists them; a node in that home reports the bitcoind's height."""
    miner = Wallet(teacher.rpc, "miner")
    home = tmp_path / "home"
    copy = tmp_path / "teacher.cookie"
    copy.write_text(teacher.cookie_path.read_text())
    copy.chmod(0o600)
    with Cluster.running(teacher, home, miner) as cluster:
        attached = _run(home, "bitcoind", "attach", "--rpc-url", teacher.rpc_url,
                        "--cookie", str(copy), "--zmq-rawblock", teacher.zmq_rawblock,
                        "--zmq-rawtx", teacher.zmq_rawtx)
        assert attached.returncode == 0, attached.stderr
        assert "by ZMQ" in attached.stdout
        saved = json.loads((home / "bitcoind.json").read_text())
        assert (saved["cookie_path"], saved["zmq_rawblock"], saved["zmq_rawtx"],
                saved["rpc_user"]) == (str(copy), teacher.zmq_rawblock, teacher.zmq_rawtx, None)
        info = _run(home, "bitcoind", "info")
        assert info.returncode == 0, info.stderr
        assert f"rawblock {teacher.zmq_rawblock}, rawtx {teacher.zmq_rawtx}" in info.stdout
        assert f"cookie {copy}" in info.stdout
        gina = cluster.start_node("gina-cookie")
        miner.mine(1)
        tip = miner.height()
        wait_for(lambda: int(gina.call("info")["height"]) == tip, timeout=30,
                 what="gina to see the new block")
