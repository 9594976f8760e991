"""The docker backend behaves like the local one (needs a Docker engine; skipped without one)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from regtest.docker_node import (
    COMPOSE_CONTAINER,
    COMPOSE_RPC_PASSWORD,
    COMPOSE_RPC_USER,
    IMAGE,
    P2P_PORT,
    RPC_PORT,
    ZMQ_RAWBLOCK_PORT,
    ZMQ_RAWTX_PORT,
    DockerBitcoind,
    container_args,
    docker_client,
)
from regtest.errors import DockerUnavailable
from regtest.wallet import Wallet, ensure_mature_coins


@pytest.fixture()
def docker_node() -> Iterator[DockerBitcoind]:
    try:
        docker_client()
    except DockerUnavailable as exc:
        pytest.skip(str(exc))
    with DockerBitcoind() as node:
        yield node


@pytest.mark.docker
def test_docker_node_mines_and_funds(docker_node: DockerBitcoind) -> None:
    """A containerised bitcoind serves RPC on loopback, mines, and pays exact amounts."""
    miner = Wallet.open(docker_node.rpc, "miner")
    ensure_mature_coins(miner)
    alice = Wallet.open(docker_node.rpc, "alice")
    txid = miner.send_to_address(alice.new_address(), 123_456)
    miner.confirm(txid)
    assert alice.balance_sat() == 123_456
    assert docker_node.chain == "regtest"
    assert docker_node.cookie_path.read_text().startswith("chanlab:")


@pytest.mark.docker
def test_docker_node_restart_keeps_chain(docker_node: DockerBitcoind) -> None:
    """restart() keeps the chain and the published ports."""
    miner = Wallet.open(docker_node.rpc, "miner")
    miner.mine(3)
    tip, url = docker_node.rpc.getbestblockhash(), docker_node.rpc_url
    docker_node.restart()
    assert docker_node.rpc_url == url
    assert docker_node.rpc.getbestblockhash() == tip


def test_missing_engine_is_a_setup_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an engine (DOCKER_HOST pointing nowhere) the error says to start Docker."""
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    with pytest.raises(DockerUnavailable, match="no Docker engine answers"):
        docker_client()


def test_compose_file_matches_the_docker_backend() -> None:
    """docker-compose.yml runs the same image and bitcoind arguments as DockerBitcoind."""
    text = (Path(__file__).resolve().parents[2] / "docker-compose.yml").read_text()
    assert f"image: {IMAGE}\n" in text
    assert f"container_name: {COMPOSE_CONTAINER}\n" in text
    listed = re.findall(r'^      - "(-[^"]+)"$', text, flags=re.M)
    expected = container_args(rpc_user=COMPOSE_RPC_USER, rpc_password=COMPOSE_RPC_PASSWORD)
    assert listed == expected
    for inner in (RPC_PORT, P2P_PORT, ZMQ_RAWBLOCK_PORT, ZMQ_RAWTX_PORT):
        assert f'"127.0.0.1:{inner}:{inner}"' in text
