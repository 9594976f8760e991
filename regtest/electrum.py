"""I/O: run ElectrumX and Electrum wallet daemons on chanlab's regtest bitcoind, as foreign peers.

``ElectrumX`` is the server Electrum needs between it and bitcoind; ``ElectrumWallet`` is one
Electrum daemon with one Lightning-enabled wallet, driven over its JSON-RPC interface (the same
commands as the ``electrum`` CLI, without a 0.8 s interpreter start per call). Both run the
programs ``regtest.electrum_provision`` put in chanlab's cache, keep every file under a home
folder given by the caller, and log there (``electrumx.log``, ``electrum.log``).

What each needs (see ../shared/interop/electrum.md): ElectrumX reads bitcoind's cookie only
through ``DAEMON_URL``, polls every 200 ms instead of 5 s, and refuses to run as root unless told;
Electrum needs ``auto_connect false`` with ``oneserver`` or it forgets its server, ``use_gossip``
or it will only open channels to hard-coded trampoline nodes, and ``lightning_listen`` to accept
channels. Electrum reports on-chain amounts as BTC strings: ``btc_to_sat`` converts them exactly.

No orphans: every process gets ``PR_SET_PDEATHSIG`` and is killed at ``stop()`` or at exit.
"""

from __future__ import annotations

import atexit
import json
import os
import secrets
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from channel.seeded import seeded_entropy
from channel.types import OutPoint
from regtest import electrum_seeded_hook
from regtest.electrum_provision import ElectrumInstall, english_wordlist
from regtest.electrum_seed import electrum_seed_words
from regtest.errors import NodeStartError, RegtestError
from regtest.node import LOOPBACK, _pdeathsig_preexec, free_port
from regtest.wait import wait_for

SAT_PER_BTC = 100_000_000
_READY_LINE = "TCP server listening"
_STOP_TIMEOUT_S = 10.0


class ElectrumError(RegtestError):
    """Electrum or ElectrumX refused a command or did not come up; the message says which."""


def btc_to_sat(amount_btc: str) -> int:
    """An Electrum BTC string (``"0.02"``, ``"1."``) as integer satoshis, exactly."""
    try:
        value = Decimal(amount_btc) * SAT_PER_BTC
    except InvalidOperation:
        raise ElectrumError(f"Electrum gave {amount_btc!r} for an amount in BTC") from None
    if value != value.to_integral_value():
        raise ElectrumError(f"{amount_btc} BTC is not a whole number of satoshis")
    return int(value)


def sat_to_btc(amount_sat: int) -> str:
    """Integer satoshis as the BTC string Electrum's commands take (``2_000_000`` → ``"0.02"``)."""
    return format(Decimal(amount_sat) / SAT_PER_BTC, "f")


@dataclass(frozen=True, slots=True, kw_only=True)
class ElectrumChannel:
    """One row of Electrum's ``list_channels``; amounts in sat as Electrum reports them."""

    channel_point: OutPoint
    channel_id: str
    short_channel_id: str | None
    state: str  # Electrum's ChannelState name: OPENING, FUNDED, OPEN, SHUTDOWN, CLOSING, ...
    peer_state: str
    remote_node_id: str
    capacity_sat: int
    local_balance_sat: int
    remote_balance_sat: int
    local_reserve_sat: int
    remote_reserve_sat: int
    closing_txid: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class ElectrumRequest:
    """A Lightning payment request made by Electrum: its BOLT 11 invoice and payment hash."""

    request_id: str
    bolt11: str
    payment_hash: str
    amount_sat: int
    status: int  # Electrum's invoices.py: 0 unpaid, 3 paid


@dataclass(frozen=True, slots=True, kw_only=True)
class ElectrumPayment:
    """What ``lnpay`` reports: success, the preimage when paid, and Electrum's attempt log."""

    success: bool
    payment_hash: str
    preimage: str | None
    log: tuple[tuple[str, ...], ...]


class _Process:
    """A child process with its log file, killed at ``stop()`` or when Python exits."""

    def __init__(self, what: str, log_path: Path) -> None:
        self.what = what
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    def launch(self, argv: list[str], env: dict[str, str]) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            try:
                self.proc = subprocess.Popen(
                    argv, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                    process_group=0, preexec_fn=_pdeathsig_preexec())
            except OSError as exc:
                raise NodeStartError(f"cannot run {argv[0]}: {exc}") from exc
        _register(self)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise NodeStartError(f"{self.what} exited with code {self.proc.returncode}; "
                                 f"last lines of {self.log_path}:\n{self.tail()}")

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def stop(self) -> None:
        """SIGTERM (both programs shut down cleanly on it), SIGKILL if it lingers."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=_STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.proc = None
        _unregister(self)


class ElectrumX:
    """An ElectrumX server on a regtest bitcoind, listening on a free loopback TCP port."""

    def __init__(self, install: ElectrumInstall, *, rpc_url: str, cookie_path: Path,
                 home: Path, port: int | None = None) -> None:
        self._install = install
        self._rpc_url = rpc_url
        self._cookie_path = cookie_path
        self.home = home
        self.port = port or free_port()
        self._process = _Process("ElectrumX", home / "electrumx.log")

    @property
    def server(self) -> str:
        """``host:port`` of the server (plain TCP; ``ElectrumWallet`` adds Electrum's ``:t``)."""
        return f"{LOOPBACK}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process.running

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and return once it serves clients (it has caught up with bitcoind)."""
        db = self.home / "db"
        db.mkdir(parents=True, exist_ok=True)
        try:
            cookie = self._cookie_path.read_text().strip()
        except OSError as exc:
            raise NodeStartError(f"cannot read bitcoind's cookie {self._cookie_path}: "
                                 f"{exc.strerror}; is bitcoind running?") from None
        # ElectrumX cannot read a cookie file: the credentials go into the URL (and change
        # whenever bitcoind restarts, so a restarted bitcoind needs a restarted ElectrumX).
        env = {
            **os.environ,
            "DAEMON_URL": f"http://{cookie}@{urlsplit(self._rpc_url).netloc}/",
            "COIN": "Bitcoin",
            "NET": "regtest",
            "DB_DIRECTORY": str(db),
            "SERVICES": f"tcp://{LOOPBACK}:{self.port}",
            "PEER_DISCOVERY": "off",
            "PEER_ANNOUNCE": "false",
            "DAEMON_POLL_INTERVAL_BLOCKS": "200",
            "DAEMON_POLL_INTERVAL_MEMPOOL": "200",
        }
        if os.geteuid() == 0:
            env["ALLOW_ROOT"] = "1"
        log_start = _size(self._process.log_path)  # the log is appended to across runs
        self._process.launch([str(self._install.electrumx_server)], env)

        def listening() -> bool:
            self._process.check_alive()
            try:
                return _READY_LINE.encode() in self._process.log_path.read_bytes()[log_start:]
            except OSError:
                return False

        try:
            wait_for(listening, timeout=timeout, what="ElectrumX to listen",
                     max_interval=0.1)
        except BaseException:
            self._process.stop()
            raise

    def stop(self) -> None:
        self._process.stop()


class ElectrumWallet:
    """One Electrum daemon with one Lightning wallet, all under ``home``; driven over JSON-RPC."""

    def __init__(self, install: ElectrumInstall, *, home: Path, server: str,
                 to_self_delay: int = 144, listen_port: int | None = None,
                 seed: bytes | None = None) -> None:
        self._install = install
        self.home = home
        self.server = server
        self.to_self_delay = to_self_delay
        #: A seeded wallet (``chanlab demo electrum --seed``, regtest only) is restored from
        #: these words, an Electrum segwit seed derived from ``seed``: the same addresses,
        #: node key and funding keys every run. None: Electrum draws a new wallet.
        self.seed_words: str | None = None
        self._channel_seed_key: bytes | None = None
        if seed is not None:
            self.seed_words = electrum_seed_words(seed, english_wordlist(install))
            self._channel_seed_key = seeded_entropy(seed, "electrum channel seeds")(32)
        self.listen_port = listen_port or free_port()
        self._rpc_port = free_port()
        self._rpc_auth = ("chanlab", secrets.token_hex(16))
        self._process = _Process("Electrum", home / "electrum.log")
        self._http: httpx.Client | None = None
        self._ids = iter(range(1, 1 << 62))

    # --- life cycle ------------------------------------------------------------------------------

    @property
    def wallet_path(self) -> Path:
        return self.home / "regtest" / "wallets" / "default_wallet"

    @property
    def config_path(self) -> Path:
        return self.home / "regtest" / "config"

    @property
    def running(self) -> bool:
        return self._process.running

    def cli_argv(self) -> list[str]:
        """The documented ``electrum`` command line for this wallet (append a command)."""
        return [str(self._install.electrum), "--regtest", "-D", str(self.home)]

    def start(self, timeout: float = 60.0) -> None:
        """Start the daemon, create (or restore) the wallet on first use, load it, wait for sync."""
        start_wallets([self], timeout=timeout)

    def _launch(self, timeout: float) -> None:
        self._write_config()
        self._process.launch([*self.cli_argv(), "-v", "daemon"], self._environment())
        self._http = httpx.Client(base_url=f"http://{LOOPBACK}:{self._rpc_port}",
                                  auth=self._rpc_auth, timeout=timeout)

    def _environment(self) -> dict[str, str]:
        """The daemon's environment; a seeded wallet's also runs ``electrum_seeded_hook``
        (Electrum has no option for its channel key seeds: see that module)."""
        env = dict(os.environ)
        if self._channel_seed_key is None:
            return env
        folder = self.home / "seeded-python"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(electrum_seeded_hook.__file__), folder / "sitecustomize.py")
        env["PYTHONPATH"] = os.pathsep.join(
            [str(folder), *filter(None, [env.get("PYTHONPATH")])])
        env[electrum_seeded_hook.KEY_ENV] = self._channel_seed_key.hex()
        return env

    def _open_wallet(self, timeout: float) -> None:
        wait_for(self._answers, timeout=timeout, what="the Electrum daemon to answer",
                 max_interval=0.1)
        if not self.wallet_path.exists():
            self.wallet_path.parent.mkdir(parents=True, exist_ok=True)
            if self.seed_words is None:
                self.call("create", wallet_path=str(self.wallet_path))
            else:
                self.call("restore", text=self.seed_words, wallet_path=str(self.wallet_path))
        self.call("load_wallet", wallet_path=str(self.wallet_path))
        self.wait_for_sync(timeout)

    def stop(self) -> None:
        """Ask the daemon to stop (it saves the wallet), kill it if it does not."""
        if self.running and self._http is not None:
            try:
                self._http.post("/", json={"jsonrpc": "2.0", "id": 0, "method": "stop",
                                           "params": {}}, timeout=5.0)
                assert self._process.proc is not None
                self._process.proc.wait(timeout=_STOP_TIMEOUT_S)
            except (httpx.HTTPError, subprocess.TimeoutExpired):
                pass
        self._process.stop()
        if self._http is not None:
            self._http.close()
            self._http = None

    def _write_config(self) -> None:
        self.config_path.parent.mkdir(parents=True, exist_ok=True)
        config: dict[str, Any] = {}
        if self.config_path.is_file():
            config = json.loads(self.config_path.read_text())
        user, password = self._rpc_auth
        config.update({
            # A config without a version is "upgraded", which turns every server into TLS (:s).
            "config_version": 3,
            # Without auto_connect false, oneserver makes Electrum drop `server` (trap 2).
            "auto_connect": False,
            "oneserver": True,
            "server": f"{self.server}:t",
            "use_gossip": True,  # else trampoline-only: refuses to open to chanlab nodes
            "lightning_to_self_delay": self.to_self_delay,
            "lightning_listen": f"{LOOPBACK}:{self.listen_port}",
            "rpcuser": user,
            "rpcpassword": password,
            "rpchost": LOOPBACK,
            "rpcport": self._rpc_port,
            "rpcsock": "tcp",
        })
        self.config_path.write_text(json.dumps(config, indent=4, sort_keys=True))
        self.config_path.chmod(0o600)

    def _answers(self) -> bool:
        self._process.check_alive()
        try:
            self._raw_call("ping", {}, timeout=2.0)
        except httpx.HTTPError:
            return False
        return True

    # --- JSON-RPC --------------------------------------------------------------------------------

    def call(self, method: str, *, timeout: float = 120.0, **params: Any) -> Any:
        """One Electrum command with named parameters; wallet commands get this wallet."""
        try:
            return self._raw_call(method, params, timeout=timeout)
        except httpx.HTTPError as exc:
            self._process.check_alive()
            raise ElectrumError(f"Electrum did not answer {method}: {exc}") from exc

    def _raw_call(self, method: str, params: dict[str, Any], *, timeout: float) -> Any:
        if self._http is None:
            raise ElectrumError("the Electrum daemon is not running: call start() first")
        response = self._http.post("/", json={"jsonrpc": "2.0", "id": next(self._ids),
                                              "method": method, "params": params},
                                   timeout=timeout)
        response.raise_for_status()
        body = response.json()
        error = body.get("error")
        if error:
            raise ElectrumError(f"Electrum {method}: {error.get('message')}"
                                + _exception_of(error))
        return body.get("result")

    def _wallet_call(self, method: str, *, timeout: float = 120.0, **params: Any) -> Any:
        return self.call(method, timeout=timeout, wallet_path=str(self.wallet_path), **params)

    # --- typed commands --------------------------------------------------------------------------

    def wait_for_sync(self, timeout: float = 60.0) -> None:
        self._wallet_call("wait_for_sync", timeout=timeout)

    def node_id(self) -> str:
        """The wallet's Lightning node id (33-byte hex)."""
        node_id: str = self._wallet_call("nodeid").split("@")[0]
        return node_id

    def address(self) -> str:
        """``node_id@host:port`` where this wallet accepts Lightning connections."""
        return f"{self.node_id()}@{LOOPBACK}:{self.listen_port}"

    def new_address(self) -> str:
        address: str = self._wallet_call("createnewaddress")
        return address

    def balance_sat(self) -> int:
        """Confirmed on-chain balance."""
        return btc_to_sat(self._wallet_call("getbalance")["confirmed"])

    def lightning_balance_sat(self) -> int:
        return btc_to_sat(self._wallet_call("getbalance").get("lightning", "0"))

    def height(self) -> int:
        height: int = self.call("getinfo")["blockchain_height"]
        return height

    def add_peer(self, connection_string: str) -> None:
        """Connect to ``node_id@host:port``. Electrum reconnects by itself only to peers whose
        address it knows (not to a peer that connected to it and never announced one)."""
        self._wallet_call("add_peer", connection_string=connection_string)

    def open_channel(self, connection_string: str, amount_sat: int, *,
                     push_sat: int = 0) -> OutPoint:
        """Open a private channel to ``node_id@host:port``; return its funding outpoint."""
        point = self._wallet_call("open_channel", connection_string=connection_string,
                                  amount=sat_to_btc(amount_sat), push_amount=sat_to_btc(push_sat),
                                  password=None)
        return _outpoint(point)

    def list_channels(self) -> list[ElectrumChannel]:
        return [_channel(row) for row in self._wallet_call("list_channels")]

    def channel(self, point: OutPoint) -> ElectrumChannel | None:
        return next((c for c in self.list_channels() if c.channel_point == point), None)

    def add_request(self, amount_sat: int, memo: str = "", *,
                    expiry_s: int = 3600) -> ElectrumRequest:
        """A Lightning payment request (BOLT 11 invoice) for ``amount_sat``."""
        return _request(self._wallet_call("add_request", amount=sat_to_btc(amount_sat), memo=memo,
                                          expiry=expiry_s, lightning=True))

    def get_request(self, request_id: str) -> ElectrumRequest:
        return _request(self._wallet_call("get_request", request_id=request_id))

    def lnpay(self, invoice: str, timeout: float = 60.0) -> ElectrumPayment:
        """Pay a BOLT 11 invoice; Electrum retries routes until it succeeds or gives up.

        Electrum ignores ``timeout`` over JSON-RPC (it works only from its CLI), so it bounds
        the wait here: past it, ``ElectrumError`` is raised and the payment may still go on.
        """
        result = self._wallet_call("lnpay", invoice=invoice, timeout=timeout + 5.0)
        return ElectrumPayment(
            success=bool(result["success"]),
            payment_hash=result["payment_hash"],
            preimage=result.get("preimage"),
            log=tuple(tuple(str(part) for part in entry) for entry in result.get("log", [])),
        )

    def close_channel(self, point: OutPoint, *, force: bool = False) -> str:
        """Close cooperatively (or broadcast our commitment with ``force``); return the txid."""
        txid: str = self._wallet_call("close_channel", channel_point=str(point), force=force,
                                      password=None)
        return txid

    def request_force_close(self, point: OutPoint) -> None:
        """Ask the peer to force-close (Electrum sends ``error`` after reestablish)."""
        self._wallet_call("request_force_close", channel_point=str(point), password=None)

    def is_mine(self, address: str) -> bool:
        """Whether ``address`` belongs to this wallet (what it sweeps to, what it is paid to)."""
        return bool(self._wallet_call("ismine", address=address))

    def setconfig(self, key: str, value: object) -> None:
        """Change a setting on the running daemon (value given as its JSON form)."""
        self.call("setconfig", key=key, value=json.dumps(value))


def start_wallets(wallets: list[ElectrumWallet], *, timeout: float = 60.0) -> None:
    """Start several wallets at once: launch every daemon, then open each wallet.

    Electrum's start-up is mostly interpreter and import time, so launching all first overlaps
    it. On failure every wallet of the list is stopped.
    """
    try:
        for wallet in wallets:
            wallet._launch(timeout)
        for wallet in wallets:
            wallet._open_wallet(timeout)
    except BaseException:
        for wallet in wallets:
            wallet.stop()
        raise


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _exception_of(error: dict[str, Any]) -> str:
    data = error.get("data")
    if isinstance(data, dict) and data.get("exception"):
        return f" ({data['exception']})"
    return ""


def _outpoint(point: str) -> OutPoint:
    txid, _, vout = point.partition(":")
    return OutPoint.from_txid_hex(txid, int(vout))


def _channel(row: dict[str, Any]) -> ElectrumChannel:
    return ElectrumChannel(
        channel_point=_outpoint(row["channel_point"]),
        channel_id=row["channel_id"],
        short_channel_id=row.get("short_channel_id"),
        state=row["state"],
        peer_state=row["peer_state"],
        remote_node_id=row["remote_pubkey"],
        capacity_sat=int(row["capacity"]),
        local_balance_sat=int(row["local_balance"]),
        remote_balance_sat=int(row["remote_balance"]),
        local_reserve_sat=int(row["local_reserve"]),
        remote_reserve_sat=int(row["remote_reserve"]),
        closing_txid=row.get("closing_txid"),
    )


def _request(row: dict[str, Any]) -> ElectrumRequest:
    return ElectrumRequest(
        request_id=str(row["request_id"]),
        bolt11=row["lightning_invoice"],
        payment_hash=row["rhash"],
        amount_sat=int(row["amount_sat"]),
        status=int(row["status"]),
    )


# --- orphan protection ---------------------------------------------------------------------------

_live: set[_Process] = set()
_live_lock = threading.Lock()
_atexit_installed = False


def _register(process: _Process) -> None:
    global _atexit_installed
    with _live_lock:
        _live.add(process)
        if _atexit_installed:
            return
        _atexit_installed = True
    atexit.register(_stop_all)


def _unregister(process: _Process) -> None:
    with _live_lock:
        _live.discard(process)


def _stop_all() -> None:
    with _live_lock:
        processes = list(_live)
    for process in processes:
        process.stop()

