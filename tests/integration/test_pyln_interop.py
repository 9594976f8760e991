"""Interop with pyln-proto (Core Lightning's Python protocol library) as an independent peer.

pyln-proto depends on a coincurve fork (``coincurve-cp314-fix``) that installs the same
``coincurve`` package directory as the coincurve we pin: installed into one environment,
whichever comes last silently overwrites the other's files (``pip check`` sees no
problem) and uninstalling either removes the module. So pyln-proto lives in its own
virtualenv, created once under the pytest cache (``.pytest_cache/d/pyln-proto-venv``), or
named by ``CHANLAB_PYLN_PYTHON``; the tests skip with the reason if it cannot be installed.

pyln runs in a subprocess, as the initiator: against a small asyncio peer built on our
transport and message code, and against a real ``chanlab node start`` process.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import coincurve
import pytest

from channel.errors import UnknownEvenMessage
from channel.messages import decode_message, encode_message
from channel.onion import HopPayload, PaymentData, build_single_hop_onion, peel_onion
from channel.transport import Transport, serve
from channel.wire import (
    REGTEST_CHAIN_HASH,
    Features,
    Init,
    Ping,
    UnknownMessage,
    WarningMessage,
    check_compatible,
    our_features,
    pong_for,
)
from regtest.cluster import Cluster

NODE_KEY = b"\x21" * 32
NODE_ID = coincurve.PrivateKey(NODE_KEY).public_key.format(compressed=True)
PYLN_KEY = b"\x44" * 32
PYLN_ID = coincurve.PrivateKey(PYLN_KEY).public_key.format(compressed=True)
PING_ROUNDS = 1005  # > 1000 messages each way: crosses two key rotations per direction

PYLN_SCRIPT = r'''
import io, json, socket, sys
from pyln.proto.message import Message, MessageNamespace
from pyln.proto.wire import PrivateKey, connect

CSV = """msgtype,init,16
msgdata,init,gflen,u16,
msgdata,init,globalfeatures,byte,gflen
msgdata,init,flen,u16,
msgdata,init,features,byte,flen
msgdata,init,tlvs,init_tlvs,
tlvtype,init_tlvs,networks,1
tlvdata,init_tlvs,networks,chains,chain_hash,...
tlvtype,init_tlvs,remote_addr,3
tlvdata,init_tlvs,remote_addr,data,byte,...
msgtype,ping,18
msgdata,ping,num_pong_bytes,u16,
msgdata,ping,byteslen,u16,
msgdata,ping,ignored,byte,byteslen
msgtype,pong,19
msgdata,pong,byteslen,u16,
msgdata,pong,ignored,byte,byteslen
msgtype,warning,1
msgdata,warning,channel_id,channel_id,
msgdata,warning,len,u16,
msgdata,warning,data,byte,len"""
NS = MessageNamespace(CSV.splitlines())


def peer(port, node_id, key, chain, plan_json):
    plan = json.loads(plan_json)
    conn = connect(PrivateKey(bytes.fromhex(key)), bytes.fromhex(node_id), "127.0.0.1", port)
    # pyln writes the length header and the body with two send() calls and leaves Nagle on:
    # each lock-step ping would then wait ~40 ms for our delayed ACK.
    conn.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(text):
        buf = io.BytesIO()
        Message.from_str(NS, text).write(buf)
        conn.send_message(buf.getvalue())

    def recv():
        return Message.read(NS, io.BytesIO(conn.read_message()))

    out = {}
    send("init globalfeatures= features=a200 tlvs={networks={chains=[%s]}}" % chain)
    theirs = recv()
    out["init"] = {"type": theirs.messagetype.name, **theirs.to_py()}
    out["pong_sizes"] = []
    for size in plan["pong_sizes"]:
        send("ping num_pong_bytes=%d ignored=%s" % (size, plan["ignored"]))
        pong = recv()
        assert pong.messagetype.name == "pong"
        out["pong_sizes"].append(len(bytes.fromhex(pong.to_py()["ignored"])))
    conn.send_message(bytes.fromhex("8001") + b"odd")
    send("ping num_pong_bytes=%d ignored=" % plan["pong_after_odd"])
    out["pong_after_odd"] = len(bytes.fromhex(recv().to_py()["ignored"]))
    conn.send_message(bytes.fromhex("8000") + b"even")
    out["after_even"] = []
    while True:
        try:
            message = recv()
        except (ValueError, OSError):
            out["after_even"].append("closed")
            break
        out["after_even"].append({"type": message.messagetype.name, **message.to_py()})
    print(json.dumps(out))


def onion(onion_hex, node_key, payment_hash, session_key, payload_hex):
    import coincurve
    from pyln.proto.onion import RoutingOnion, SphinxHop, SphinxPath
    from pyln.proto.primitives import PublicKey, Secret
    from pyln.proto.primitives import PrivateKey as Key
    payload, following = RoutingOnion.from_hex(onion_hex).unwrap(
        Key(bytes.fromhex(node_key)), bytes.fromhex(payment_hash))
    raw = bytes.fromhex(payload_hex)
    pub = PublicKey(coincurve.PrivateKey(bytes.fromhex(node_key)).public_key.format())
    built = SphinxPath(hops=[SphinxHop(pub, bytes([len(raw)]) + raw)],
                       assocdata=bytes.fromhex(payment_hash),
                       session_key=Secret(bytes.fromhex(session_key))).compile()
    print(json.dumps({"payload": payload.to_bytes(include_prefix=False).hex(),
                      "final": following is None, "built": built.to_bin().hex()}))


if sys.argv[1] == "peer":
    peer(int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6])
else:
    onion(*sys.argv[2:7])
'''


def _has_pyln(python: Path) -> bool:
    if not python.exists():
        return False
    probe = subprocess.run([str(python), "-c", "import pyln.proto.wire"], capture_output=True)
    return probe.returncode == 0


@pytest.fixture(scope="session")
def pyln_python(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Python interpreter with pyln-proto, in a virtualenv of its own."""
    override = os.environ.get("CHANLAB_PYLN_PYTHON")
    if override:
        if not _has_pyln(Path(override)):
            pytest.fail(f"CHANLAB_PYLN_PYTHON={override} cannot import pyln.proto")
        return Path(override)
    cache = getattr(request.config, "cache", None)
    venv = (Path(cache.mkdir("pyln-proto-venv")) if cache is not None
            else tmp_path_factory.mktemp("pyln-proto-venv"))
    python = venv / "bin" / "python"
    if _has_pyln(python):
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "pyln-proto"],
        capture_output=True, text=True, timeout=600,
    )
    if install.returncode != 0 or not _has_pyln(python):
        pytest.skip(f"cannot install pyln-proto into {venv}: {install.stderr.strip()[-400:]}")
    return python


@pytest.fixture()
def pyln_script(tmp_path: Path) -> Path:
    """PYLN_SCRIPT as a file for the pyln interpreter to run."""
    script = tmp_path / "pyln_peer.py"
    script.write_text(PYLN_SCRIPT)
    return script


def _run_pyln(python: Path, script: Path, *args: str, timeout: float = 120) -> dict[str, Any]:
    done = subprocess.run([str(python), str(script), *args], capture_output=True, text=True,
                          timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"pyln script failed:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def _pyln_dials(python: Path, script: Path, port: int, node_id: str, *, pong_sizes: list[int],
                ignored: str, pong_after_odd: int) -> dict[str, Any]:
    """pyln dials ``node_id`` as PYLN_KEY: init, one ping per pong size (each carrying
    ``ignored``), an odd unknown type, one more ping, an even unknown type; what it read back."""
    plan = {"pong_sizes": pong_sizes, "ignored": ignored, "pong_after_odd": pong_after_odd}
    return _run_pyln(python, script, "peer", str(port), node_id, PYLN_KEY.hex(),
                     REGTEST_CHAIN_HASH.hex(), json.dumps(plan))


def _our_init_as_pyln_reads_it() -> dict[str, Any]:
    return {
        "type": "init",
        "globalfeatures": "",
        "features": our_features().to_bytes().hex(),
        "tlvs": {"networks": {"chains": [REGTEST_CHAIN_HASH.hex()]}},
    }


def test_our_environment_has_no_coincurve_fork() -> None:
    """Only the real coincurve distribution provides the coincurve package here."""
    providers = {
        dist.metadata["Name"]
        for dist in importlib.metadata.distributions()
        if any(str(f) == "coincurve/__init__.py" for f in (dist.files or ()))
    }
    assert providers == {"coincurve"}
    assert coincurve.__version__ == importlib.metadata.version("coincurve")


def test_pyln_peer_handshake_init_ping_and_even_type(pyln_python: Path,
                                                     pyln_script: Path) -> None:
    """pyln-proto dials us: handshake, init both ways, 1005 ping/pongs, odd ignored, even closes."""
    pong_sizes = [i % 50 for i in range(PING_ROUNDS)]
    seen: list[object] = []

    async def on_connection(transport: Transport) -> None:
        seen.append(transport.remote_pubkey)
        first = decode_message(await transport.recv())
        seen.append(first)
        if not isinstance(first, Init):
            return
        check_compatible(our_features(), first.combined_features())
        await transport.send(encode_message(Init.ours(our_features())))
        while True:
            try:
                message = decode_message(await transport.recv())
            except UnknownEvenMessage as exc:
                seen.append(exc)
                return  # serve() closes the connection: BOLT 1's reaction
            if isinstance(message, Ping):
                pong = pong_for(message)
                if pong is not None:
                    await transport.send(encode_message(pong))
            else:
                seen.append(message)

    async def scenario() -> dict[str, Any]:
        server = await serve("127.0.0.1", 0, local_static=NODE_KEY, on_connection=on_connection)
        port = server.sockets[0].getsockname()[1]
        try:
            return await asyncio.to_thread(
                _pyln_dials, pyln_python, pyln_script, port, NODE_ID.hex(),
                pong_sizes=pong_sizes, ignored="000000", pong_after_odd=7,
            )
        finally:
            server.close()
            await server.wait_closed()

    result = asyncio.run(scenario())

    # what pyln saw from us
    assert result["init"] == _our_init_as_pyln_reads_it()
    assert result["pong_sizes"] == pong_sizes
    assert result["pong_after_odd"] == 7
    assert result["after_even"] == ["closed"]
    # what we saw from pyln
    assert seen[0] == PYLN_ID
    assert seen[1] == Init(globalfeatures=b"", features=bytes.fromhex("a200"),
                           networks=(REGTEST_CHAIN_HASH,))
    assert isinstance(seen[1], Init)
    assert seen[1].combined_features() == Features(bits=frozenset({9, 13, 15}))
    assert seen[2] == UnknownMessage(type=0x8001, payload=b"odd")
    assert isinstance(seen[3], UnknownEvenMessage)
    assert len(seen) == 4


def test_pyln_agrees_on_single_hop_onion(pyln_python: Path, pyln_script: Path) -> None:
    """pyln unwraps our single-hop onion to our payload, and builds the identical packet."""
    node_key = bytes.fromhex("b0" * 32)
    session_key = bytes.fromhex("a1" * 32)
    payment_hash = bytes(range(32))
    payload = HopPayload(
        amt_to_forward=123_456_789, outgoing_cltv_value=432,
        payment_data=PaymentData(payment_secret=bytes(range(50, 82)), total_msat=123_456_789),
    )
    onion = build_single_hop_onion(
        session_key=session_key,
        node_id=coincurve.PrivateKey(node_key).public_key.format(compressed=True),
        amt_to_forward=123_456_789, outgoing_cltv_value=432,
        payment_secret=bytes(range(50, 82)), total_msat=123_456_789, payment_hash=payment_hash,
    )
    result = _run_pyln(pyln_python, pyln_script, "onion", onion.hex(), node_key.hex(),
                       payment_hash.hex(), session_key.hex(), payload.encode().hex())
    assert result == {"payload": payload.encode().hex(), "final": True, "built": onion.hex()}
    peeled = peel_onion(onion=bytes.fromhex(result["built"]), node_key=node_key,
                        associated_data=payment_hash)
    assert peeled.payload == payload


def test_pyln_dials_a_node_process(pyln_python: Path, pyln_script: Path, cluster: Cluster,
                                   wait_for: Callable[..., object]) -> None:
    """pyln-proto dials a chanlab node process: init, ping/pong, odd ignored, even: warn, close."""
    node = cluster.start_node("pyln-target-" + os.urandom(3).hex())
    pong_sizes = [i * 7 for i in range(20)]
    result = _pyln_dials(pyln_python, pyln_script, node.port, node.node_id,
                         pong_sizes=pong_sizes, ignored="00", pong_after_odd=3)
    assert result["init"] == _our_init_as_pyln_reads_it()
    assert result["pong_sizes"] == pong_sizes
    assert result["pong_after_odd"] == 3
    warning, closed = result["after_even"]
    assert closed == "closed"
    assert warning["type"] == "warning"
    assert warning["channel_id"] == bytes(32).hex()
    text = WarningMessage(channel_id=bytes(32), data=bytes.fromhex(warning["data"])).text
    assert "unknown even message type 32768" in text
    # the node hung up on that peer only: it still serves, and no longer lists it
    assert node.call("info")["node_id"] == node.node_id
    wait_for(lambda: PYLN_ID.hex() not in node.call("info")["peers"], timeout=5,
             what="the node to drop the pyln peer")
