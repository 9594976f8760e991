"""Electrum as a real foreign peer: provisioned, served by ElectrumX, and working end to end.

One ElectrumX and two Electrum wallets (alice, bob) on the shared regtest bitcoind (which runs
``-txindex``, as ElectrumX needs), for the whole module. Electrum is never mocked: these tests
prove the runner chanlab's interop tests stand on.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from channel.types import OutPoint
from regtest.chain import BitcoindEndpoint
from regtest.electrum import ElectrumWallet, ElectrumX, start_wallets
from regtest.electrum_provision import (
    ELECTRUM_VERSION,
    ElectrumInstall,
    ensure_electrum,
    inspect,
)
from regtest.errors import SetupError
from regtest.node import BitcoindNode
from regtest.wait import wait_for
from regtest.wallet import Wallet

CHANNEL_SAT = 2_000_000
FUNDING_SAT = 3_000_000
PAYMENT_SAT = 100_000


@dataclass(frozen=True)
class Pair:
    electrumx: ElectrumX
    alice: ElectrumWallet
    bob: ElectrumWallet


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


@pytest.fixture(scope="module")
def install() -> ElectrumInstall:
    return ensure_electrum(progress=_progress)


@pytest.fixture(scope="module")
def pair(install: ElectrumInstall, bitcoind: BitcoindNode,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    home = tmp_path_factory.mktemp("electrum")
    electrumx = ElectrumX(install, rpc_url=bitcoind.rpc_url, cookie_path=bitcoind.cookie_path,
                          home=home / "electrumx")
    electrumx.start()
    wallets = [ElectrumWallet(install, home=home / name, server=electrumx.server)
               for name in ("alice", "bob")]
    try:
        start_wallets(wallets)
        yield Pair(electrumx=electrumx, alice=wallets[0], bob=wallets[1])
    finally:
        for wallet in wallets:
            wallet.stop()
        electrumx.stop()


def _fund(miner: Wallet, wallet: ElectrumWallet, amount_sat: int) -> None:
    before = wallet.balance_sat()
    miner.confirm(miner.send_to_address(wallet.new_address(), amount_sat))
    wait_for(lambda: wallet.balance_sat() != before, timeout=30, what="Electrum to see the funds")


def test_provisioned_electrum_is_cached_pinned_and_runs(install: ElectrumInstall,
                                                        tmp_path: Path) -> None:
    """The cached install is reused, runs as the pinned version, and a half-done one is noticed."""
    assert ensure_electrum() == install
    version = subprocess.run([str(install.electrum), "version", "--offline"], check=True,
                             capture_output=True, text=True, timeout=30).stdout.strip()
    assert version == ELECTRUM_VERSION
    interrupted = tmp_path / "electrum"
    (interrupted / "venv").mkdir(parents=True)
    reason = inspect(interrupted)
    assert isinstance(reason, str) and "interrupted" in reason
    assert inspect(tmp_path / "nothing-here") is None


def test_provisioning_without_apt_fails_with_one_line_saying_why(tmp_path: Path) -> None:
    """On a machine without apt, ensure_electrum raises one line naming what is missing."""
    env = {"XDG_CACHE_HOME": str(tmp_path), "PATH": str(tmp_path / "empty-bin")}
    with pytest.raises(SetupError) as raised:
        ensure_electrum(env)
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("cannot provision Electrum: apt-get, apt-cache, dpkg not found")
    assert not (tmp_path / "chanlab" / "electrum").exists()


def test_electrumx_follows_bitcoind(pair: Pair, miner: Wallet) -> None:
    """Blocks mined on bitcoind reach the Electrum wallets through ElectrumX within seconds."""
    miner.mine(1)
    tip = miner.height()

    def both_at_tip() -> bool:
        return all(wallet.height() == tip for wallet in (pair.alice, pair.bob))

    wait_for(both_at_tip, timeout=20, what=f"both Electrum wallets at height {tip}")


def test_wallet_sees_exactly_the_funded_amount(pair: Pair, miner: Wallet) -> None:
    """A confirmed payment from the miner shows in Electrum's balance to the satoshi."""
    before = pair.bob.balance_sat()
    _fund(miner, pair.bob, 1_234_567)
    assert pair.bob.balance_sat() - before == 1_234_567


def test_two_wallets_open_a_channel_and_pay_an_invoice(pair: Pair, miner: Wallet) -> None:
    """alice opens a 2,000,000 sat channel to bob and pays his 100,000 sat BOLT 11 invoice."""
    alice, bob = pair.alice, pair.bob
    _fund(miner, alice, FUNDING_SAT)
    point = alice.open_channel(bob.address(), CHANNEL_SAT)
    wait_for(lambda: miner.get_tx_out(point) is not None, timeout=20,
             what="the funding transaction in the mempool")
    miner.confirm(point.txid_hex, depth=3)  # Electrum as fundee asks for minimum_depth 3
    funding = miner.get_tx_out(point)
    assert funding is not None and funding.value_sat == CHANNEL_SAT

    def both_open() -> bool:
        return all(_state(w, point) == "OPEN" for w in (alice, bob))

    wait_for(both_open, timeout=30, what="the channel to be OPEN on both sides")

    request = bob.add_request(PAYMENT_SAT, "chanlab test")
    assert request.bolt11.startswith("lnbcrt1m1")  # 100,000 sat = 1 mBTC
    payment = alice.lnpay(request.bolt11, timeout=30)
    assert payment.success, payment.log
    assert payment.preimage is not None
    assert hashlib.sha256(bytes.fromhex(payment.preimage)).hexdigest() == request.payment_hash
    assert bob.get_request(request.request_id).status == 3  # PR_PAID
    alice_side, bob_side = alice.channel(point), bob.channel(point)
    assert alice_side is not None and bob_side is not None
    assert (alice_side.local_balance_sat, alice_side.remote_balance_sat) == (
        CHANNEL_SAT - PAYMENT_SAT, PAYMENT_SAT)
    assert (bob_side.local_balance_sat, bob_side.capacity_sat) == (PAYMENT_SAT, CHANNEL_SAT)


def _state(wallet: ElectrumWallet, point: OutPoint) -> str | None:
    channel = wallet.channel(point)
    return None if channel is None else channel.state


def test_cli_starts_a_wallet_the_electrum_cli_reaches_and_stops_it(
        install: ElectrumInstall, bitcoind: BitcoindNode, tmp_path: Path) -> None:
    """`chanlab electrum start --name carol` runs a wallet the documented `electrum` CLI drives;
    `chanlab electrum stop --name carol` ends it cleanly."""
    home = tmp_path / "chanlab"
    home.mkdir()
    endpoint = BitcoindEndpoint(rpc_url=bitcoind.rpc_url, cookie_path=bitcoind.cookie_path)
    (home / "bitcoind.json").write_text(json.dumps(endpoint.to_json()))
    env = dict(os.environ, CHANLAB_HOME=str(home))
    chanlab = [sys.executable, "-m", "regtest.cli", "electrum"]
    info_path = home / "electrum" / "carol" / "electrum.json"
    with (tmp_path / "start.out").open("w") as out:
        start = subprocess.Popen([*chanlab, "start", "--name", "carol"], env=env, stdout=out,
                                 stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: info_path.is_file() or start.poll() is not None, timeout=60,
                 what="chanlab electrum start to write electrum.json")
        assert start.poll() is None, (tmp_path / "start.out").read_text()
        info = json.loads(info_path.read_text())
        node_id = subprocess.run(
            [str(install.electrum), "--regtest", "-D", info["electrum_home"], "nodeid"],
            check=True, capture_output=True, text=True, timeout=30).stdout.strip()
        assert node_id == info["address"]
        assert f"node id:  {node_id}" in (tmp_path / "start.out").read_text()
        stop = subprocess.run([*chanlab, "stop", "--name", "carol"], env=env, timeout=60,
                              capture_output=True, text=True)
        assert stop.returncode == 0, stop.stderr
        assert start.wait(timeout=30) == 0
        assert not info_path.exists()
    finally:
        if start.poll() is None:
            start.kill()
            start.wait()
