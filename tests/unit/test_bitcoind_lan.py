"""Joining another bitcoind and attaching to one: the peer addresses, the endpoint file, the
password file rules (no bitcoind needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from regtest.bitcoind_lan import attach, parse_peer, peer_args
from regtest.chain import BitcoindEndpoint
from regtest.errors import SetupError
from regtest.password_file import read_password_file


def test_peer_addresses_become_addnode_arguments() -> None:
    """HOST:PORT, a name, and a bracketed IPv6 address each become one -addnode."""
    assert parse_peer("192.168.1.20:18444") == ("192.168.1.20", 18444)
    assert parse_peer("[fe80::1]:18444") == ("fe80::1", 18444)
    assert peer_args(("teacher.local:18444", "[fe80::1]:5000")) == \
        ["-addnode=teacher.local:18444", "-addnode=[fe80::1]:5000"]


@pytest.mark.parametrize("text", ["teacher", "teacher:", ":18444", "teacher:0",
                                  "teacher:65536", "teacher:port"])
def test_a_malformed_peer_is_refused_with_the_form_to_use(text: str) -> None:
    """Anything but HOST:PORT with a port in 1..65535 is one SetupError naming the form."""
    with pytest.raises(SetupError, match="HOST:PORT"):
        parse_peer(text)


def test_endpoint_with_a_password_file_round_trips_without_the_password() -> None:
    """bitcoind.json keeps the user and the password file's path; an old cookie-only file
    (no user keys) still reads."""
    endpoint = BitcoindEndpoint(rpc_url="http://10.0.0.5:18443", rpc_user="student",
                                rpc_password_file=Path("/home/s/.chanlab-rpc"))
    data = endpoint.to_json()
    assert data == {"rpc_url": "http://10.0.0.5:18443", "cookie_path": None,
                    "zmq_rawblock": None, "zmq_rawtx": None, "rpc_user": "student",
                    "rpc_password_file": "/home/s/.chanlab-rpc"}
    assert BitcoindEndpoint.from_json(data) == endpoint
    old = BitcoindEndpoint.from_json({"rpc_url": "http://127.0.0.1:1", "cookie_path": "/c",
                                      "zmq_rawblock": "tcp://127.0.0.1:2", "zmq_rawtx": None})
    assert old.rpc_auth() == Path("/c") and old.rpc_user is None


def test_password_file_must_be_private_and_non_empty(tmp_path: Path) -> None:
    """Mode 0600 is read (first line); 0640 and 0604 are refused with the chmod to run; an empty
    file is refused; the password never appears in a message."""
    path = tmp_path / "pw"
    path.write_text("s3cret-pw\nignored\n")
    path.chmod(0o600)
    assert read_password_file(path) == "s3cret-pw"
    assert BitcoindEndpoint(rpc_url="http://h:1", rpc_user="u",
                            rpc_password_file=path).rpc_auth() == ("u", "s3cret-pw")
    for mode in (0o640, 0o604):
        path.chmod(mode)
        with pytest.raises(SetupError, match=f"chmod 600 {path}") as refused:
            read_password_file(path)
        assert "s3cret-pw" not in str(refused.value)
    path.write_text("")
    path.chmod(0o600)
    with pytest.raises(SetupError, match="empty"):
        read_password_file(path)
    with pytest.raises(SetupError, match="cannot read"):
        read_password_file(tmp_path / "missing")


@pytest.mark.parametrize(("options", "message"), [
    ({"rpc_url": "127.0.0.1:18443"}, "http://HOST:PORT"),
    ({"rpc_url": "http://u:p@127.0.0.1:18443"}, "must not carry credentials"),
    ({"rpc_url": "http://127.0.0.1:18443"}, "one way"),
    ({"rpc_url": "http://127.0.0.1:18443", "rpc_user": "u"}, "go together"),
    ({"rpc_url": "http://127.0.0.1:18443", "cookie_path": Path("/nonexistent/.cookie")},
     "no cookie file"),
    ({"rpc_url": "http://127.0.0.1:18443", "cookie_path": Path("/c"),
      "zmq_rawtx": "127.0.0.1:28333"}, "tcp://HOST:PORT"),
])
def test_attach_refuses_bad_options_before_calling_bitcoind(
        tmp_path: Path, options: dict[str, object], message: str) -> None:
    """Each malformed attach is one SetupError, checked before any connection, no file written."""
    with pytest.raises(SetupError, match=message):
        attach(tmp_path, **options)  # type: ignore[arg-type]
    assert not (tmp_path / "bitcoind.json").exists()
