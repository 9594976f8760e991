"""The control API table: requests are checked against it, and every request gets an answer."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from channel.control_api import (
    NODE_COMMANDS,
    TOWER_COMMANDS,
    BadControlRequest,
    check_args,
    parse_request,
)
from channel.daemon import DaemonShell
from regtest import client
from regtest.client import _parser


def _answer(shell: DaemonShell, line: bytes) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(asyncio.run(shell.answer(line)))
    return answer


def _shell(tmp_path: Path) -> DaemonShell:
    async def info() -> dict[str, Any]:
        return {"name": "t"}

    async def register(client_id: str) -> dict[str, Any]:
        if len(client_id) != 66:
            raise ValueError("client_id must be 33 bytes in hex")
        return {"client_id": client_id, "new": True}

    async def nothing() -> list[str]:
        return []

    return DaemonShell(tmp_path / "home", info_file="t.json", key_file="key",
                       commands=TOWER_COMMANDS,
                       handlers={"info": info, "register": register, "events": nothing,
                                 "justice": nothing, "stop": info})


def test_check_args_fills_defaults_and_refuses_bad_calls() -> None:
    """Defaults are filled in; unknown commands, unknown, missing and mistyped args are
    refused with a one-line reason naming the problem."""
    assert check_args(NODE_COMMANDS, "pay", {"invoice": "lnbcrt1"}) == \
        {"invoice": "lnbcrt1", "timeout_s": 60.0, "wait": True}
    with pytest.raises(BadControlRequest, match="unknown command 'payy'"):
        check_args(NODE_COMMANDS, "payy", {})
    with pytest.raises(BadControlRequest, match="missing argument amount_sat"):
        check_args(NODE_COMMANDS, "open", {"peer_id": "02" * 33})
    with pytest.raises(BadControlRequest, match=r"unknown argument.*colour"):
        check_args(NODE_COMMANDS, "info", {"colour": "red"})
    with pytest.raises(BadControlRequest, match="amount_msat must be int, not str"):
        check_args(NODE_COMMANDS, "invoice", {"amount_msat": "10"})
    with pytest.raises(BadControlRequest, match="must be int, not bool"):
        check_args(NODE_COMMANDS, "invoice", {"amount_msat": True})


def test_parse_request_refuses_garbage() -> None:
    """Bytes that are not one JSON request object are refused, not crashed on."""
    for line in (b"garbage\n", b"[1, 2]\n", b'{"args": {}}\n', b'{"cmd": "info", "args": 3}\n',
                 b"\xff\xfe\n", b""):
        with pytest.raises(BadControlRequest):
            parse_request(line, NODE_COMMANDS)
    assert parse_request(b'{"cmd": "info"}\n', NODE_COMMANDS) == ("info", {})


def test_daemon_answers_every_request_with_a_result_or_one_line_error(tmp_path: Path) -> None:
    """Garbage, an unknown command, bad arguments and a handler's refusal each get
    ``ok: false`` with a one-line error; a good request gets its result."""
    shell = _shell(tmp_path)
    assert _answer(shell, b'{"cmd": "info"}\n') == {"ok": True, "result": {"name": "t"}}
    cases = {
        b"not json\n": "one JSON object",
        b'{"cmd": "nope"}\n': "unknown command 'nope'",
        b'{"cmd": "register"}\n': "missing argument client_id",
        b'{"cmd": "register", "args": {"client_id": 5}}\n': "client_id must be str",
        b'{"cmd": "register", "args": {"client_id": "ab"}}\n': "ValueError: client_id must",
    }
    for line, expected in cases.items():
        answer = _answer(shell, line)
        assert answer["ok"] is False and expected in answer["error"]
        assert "\n" not in answer["error"]


def test_daemon_refuses_a_table_command_without_handler(tmp_path: Path) -> None:
    """A daemon whose handlers miss a command of its table does not start."""
    with pytest.raises(ValueError, match=r"without a handler.*justice"):
        DaemonShell(tmp_path / "h", info_file="t.json", key_file="key", commands=TOWER_COMMANDS,
                    handlers={})


def test_cli_parser_is_built_from_the_table() -> None:
    """``chanlab NAME ...`` offers each CLI command of the table with its arguments."""
    parser = _parser("alice")
    args = parser.parse_args(["open", "bob", "50000", "--push-msat", "7", "--anchors"])
    assert (args.cmd, args.peer, args.amount_sat, args.push_msat, args.anchors) == \
        ("open", "bob", 50000, 7, True)
    args = parser.parse_args(["pay", "lnbcrt1x", "--no-wait"])
    assert (args.invoice, args.wait) == ("lnbcrt1x", False)
    args = parser.parse_args(["cheat", "abcd1234", "--state", "3", "--htlc-txs"])
    assert (args.channel, args.state, args.htlc_txs, args.sweep) == ("abcd1234", 3, True, False)
    with pytest.raises(SystemExit):
        parser.parse_args(["bench-pay", "x"])


def test_cli_sends_the_table_arguments_by_their_wire_names(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """``chanlab alice open ID 5000 --anchors`` and ``chanlab alice pay X --no-wait`` reach
    the node as the table's argument names, with defaults filled in."""
    sent: list[tuple[str, str, dict[str, Any]]] = []

    def fake_call(name: str, cmd: str, args: dict[str, Any]) -> Any:
        sent.append((name, cmd, args))
        return {"status": "pending"} if cmd == "pay" else {"ok": 1}

    monkeypatch.setattr(client, "call_node", fake_call)
    peer = "02" + "ab" * 32
    assert client.run_client("alice", ["open", peer, "5000", "--anchors"]) == 0
    assert client.run_client("alice", ["pay", "lnbcrt1x", "--no-wait"]) == 0
    assert client.run_client("alice", ["cheat", "abcd1234", "--state", "2"]) == 0
    assert sent == [
        ("alice", "open", {"peer_id": peer, "amount_sat": 5000, "push_msat": 0,
                           "anchors": True, "announce": False}),
        ("alice", "pay", {"invoice": "lnbcrt1x", "wait": False}),
        ("alice", "cheat", {"channel": "abcd1234", "state": 2, "htlc_txs": False,
                            "sweep": False}),
    ]
    assert "ok: 1" in capsys.readouterr().out
