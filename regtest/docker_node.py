"""I/O: a regtest bitcoind in a Docker container, with the interface of ``LocalBitcoind``.

For machines where chanlab cannot provision bitcoind itself but Docker runs. Chosen with
``--backend docker``. Two ways to get a node:

* ``DockerBitcoind()`` starts a container of its own from ``IMAGE`` (the image named in
  ``docker-compose.yml``), publishes its RPC, P2P and ZMQ ports on free loopback ports, and
  removes it on ``stop()``;
* ``DockerBitcoind(attach=COMPOSE_CONTAINER)`` uses the node ``docker compose up`` started, and
  leaves it running on ``stop()``. ``open_docker_node()`` attaches when that container runs and
  starts a new one otherwise.

A container cannot share bitcoind's cookie file with the host easily (it is written by the
container's user), so RPC uses a random user/password; ``cookie_path`` is a host file holding
``user:password`` in the cookie's format, so code reading cookies works unchanged.
"""

from __future__ import annotations

import atexit
import contextlib
import secrets
import shutil
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from regtest.backend import BASE_ARGS, CHAIN, LOOPBACK, free_port
from regtest.errors import DockerUnavailable, NodeStartError, RegtestError, RpcUnreachable
from regtest.rpc import AsyncRpc, Rpc, RpcAuth, RpcInWarmup

IMAGE = "bitcoin/bitcoin:28.2"
"""Bitcoin Core 28.2; keep in step with docker-compose.yml."""
COMPOSE_CONTAINER = "chanlab-bitcoind"
COMPOSE_RPC_USER = "chanlab"
COMPOSE_RPC_PASSWORD = "chanlab-regtest-only"
LABEL = "org.chanlab.node"

RPC_PORT = 18443
P2P_PORT = 18444
ZMQ_RAWBLOCK_PORT = 28332
ZMQ_RAWTX_PORT = 28333
_POLL_INTERVAL_S = 0.25


def docker_client() -> Any:
    """A docker SDK client whose engine answered a ping, or ``DockerUnavailable``."""
    try:
        import docker
    except ImportError as exc:
        raise DockerUnavailable("the docker Python package is not installed") from exc
    try:
        client = docker.from_env(timeout=10)
        client.ping()
    except Exception as exc:  # the SDK raises DockerException, requests and OS errors alike
        raise DockerUnavailable(
            f"no Docker engine answers ({type(exc).__name__}: {exc}); start Docker, "
            "or use the local backend (chanlab provisions bitcoind itself)"
        ) from exc
    return client


def container_args(*, rpc_user: str, rpc_password: str) -> list[str]:
    """bitcoind's arguments inside the container (listening on all its interfaces)."""
    # The container's stdout is its log (`docker logs`), so bitcoind prints there.
    console = [arg for arg in BASE_ARGS if not arg.startswith("-printtoconsole")]
    return [
        *console,
        "-printtoconsole=1",
        f"-rpcport={RPC_PORT}",
        f"-port={P2P_PORT}",
        f"-bind=0.0.0.0:{P2P_PORT}",
        "-rpcbind=0.0.0.0",
        "-rpcallowip=0.0.0.0/0",
        f"-rpcuser={rpc_user}",
        f"-rpcpassword={rpc_password}",
        f"-zmqpubrawblock=tcp://0.0.0.0:{ZMQ_RAWBLOCK_PORT}",
        f"-zmqpubrawtx=tcp://0.0.0.0:{ZMQ_RAWTX_PORT}",
    ]


class DockerBitcoind:
    """A regtest bitcoind in a container; same interface as ``LocalBitcoind``."""

    def __init__(
        self,
        *,
        image: str = IMAGE,
        attach: str | None = None,
        startup_timeout_s: float = 120.0,
        shutdown_timeout_s: float = 30.0,
    ) -> None:
        self._image = image
        self._attach = attach
        self._startup_timeout_s = startup_timeout_s
        self._shutdown_timeout_s = shutdown_timeout_s
        self._client: Any = None
        self._container: Any = None
        self._ports: dict[int, int] = {}
        self._hostdir: Path | None = None
        self._auth: tuple[str, str] | None = None
        self._rpc: Rpc | None = None

    @property
    def chain(self) -> str:
        return CHAIN

    @property
    def datadir(self) -> Path:
        """A host folder holding ``.cookie`` (bitcoind's own datadir is inside the container)."""
        if self._hostdir is None:
            raise RegtestError("the node has no host folder until start()")
        return self._hostdir

    @property
    def cookie_path(self) -> Path:
        return self.datadir / ".cookie"

    @property
    def rpc_auth(self) -> RpcAuth:
        if self._auth is None:
            raise RegtestError("the node has no credentials until start()")
        return self._auth

    @property
    def rpc_url(self) -> str:
        return f"http://{LOOPBACK}:{self._host_port(RPC_PORT)}"

    @property
    def p2p_port(self) -> int:
        return self._host_port(P2P_PORT)

    @property
    def zmq_rawblock(self) -> str:
        return f"tcp://{LOOPBACK}:{self._host_port(ZMQ_RAWBLOCK_PORT)}"

    @property
    def zmq_rawtx(self) -> str:
        return f"tcp://{LOOPBACK}:{self._host_port(ZMQ_RAWTX_PORT)}"

    @property
    def rpc(self) -> Rpc:
        if self._rpc is None:
            raise RegtestError("the node is not running: call start() first")
        return self._rpc

    def async_rpc(self, *, timeout_s: float = 60.0) -> AsyncRpc:
        return AsyncRpc(self.rpc_url, auth=self.rpc_auth, timeout_s=timeout_s)

    def start(self) -> None:
        self._client = docker_client()
        self._hostdir = Path(tempfile.mkdtemp(prefix="chanlab-docker-"))
        try:
            if self._attach is not None:
                self._attach_existing(self._attach)
            else:
                self._create()
            if self._auth is None:
                raise RegtestError("internal: no RPC credentials after setup")
            user, password = self._auth
            self.cookie_path.write_text(f"{user}:{password}")
            self.cookie_path.chmod(0o600)
            self._rpc = Rpc(self.rpc_url, auth=self.rpc_auth)
            self._wait_ready()
        except BaseException:
            self._teardown()
            raise

    def stop(self) -> None:
        """Stop and remove an own container (an attached one keeps running); always clean up."""
        try:
            if self._container is not None and self._attach is None:
                if self._rpc is not None:
                    with contextlib.suppress(RegtestError):
                        self._rpc.stop()
                with contextlib.suppress(Exception):
                    self._container.wait(timeout=self._shutdown_timeout_s)
        finally:
            self._teardown()

    def restart(self) -> None:
        """Restart the container; its chain and wallets survive, its ports stay the same."""
        if self._container is None:
            raise RegtestError("the node is not running")
        if self._rpc is not None:
            with contextlib.suppress(RegtestError):
                self._rpc.stop()
        self._container.stop(timeout=int(self._shutdown_timeout_s))
        self._container.start()
        self._wait_ready()

    def __enter__(self) -> DockerBitcoind:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _create(self) -> None:
        client = self._client
        from docker.errors import ImageNotFound

        try:
            client.images.get(self._image)
        except ImageNotFound:
            client.images.pull(self._image)
        user, password = "chanlab", secrets.token_hex(16)
        self._auth = (user, password)
        # Fixed host ports (not Docker's pick) so a restart keeps them.
        self._ports = {
            inner: free_port() for inner in (RPC_PORT, P2P_PORT, ZMQ_RAWBLOCK_PORT, ZMQ_RAWTX_PORT)
        }
        self._container = client.containers.run(
            self._image,
            command=container_args(rpc_user=user, rpc_password=password),
            detach=True,
            labels={LABEL: "1"},
            ports={f"{inner}/tcp": (LOOPBACK, outer) for inner, outer in self._ports.items()},
        )
        _track(self._container)

    def _attach_existing(self, name: str) -> None:
        container = self._client.containers.get(name)
        container.reload()
        if container.status != "running":
            raise NodeStartError(
                f"container {name} is {container.status}: run `docker compose up -d`"
            )
        args = list(container.attrs.get("Args") or [])
        options = dict(arg.lstrip("-").split("=", 1) for arg in args if "=" in arg)
        self._auth = (
            options.get("rpcuser", COMPOSE_RPC_USER),
            options.get("rpcpassword", COMPOSE_RPC_PASSWORD),
        )
        published = container.attrs["NetworkSettings"]["Ports"] or {}
        for inner in (RPC_PORT, P2P_PORT, ZMQ_RAWBLOCK_PORT, ZMQ_RAWTX_PORT):
            bindings = published.get(f"{inner}/tcp") or []
            if bindings:
                self._ports[inner] = int(bindings[0]["HostPort"])
        self._container = container

    def _host_port(self, inner: int) -> int:
        try:
            return self._ports[inner]
        except KeyError:
            raise RegtestError(f"container port {inner} is not published") from None

    def _wait_ready(self) -> None:
        rpc = self.rpc
        deadline = time.monotonic() + self._startup_timeout_s
        while True:
            self._container.reload()
            if self._container.status in ("exited", "dead"):
                logs = self._container.logs(tail=15).decode(errors="replace")
                raise NodeStartError(f"the bitcoind container exited during startup:\n{logs}")
            try:
                rpc.getblockcount()
                return
            except (RpcUnreachable, RpcInWarmup):
                pass
            if time.monotonic() > deadline:
                raise NodeStartError(
                    "the bitcoind container did not answer RPC within "
                    f"{self._startup_timeout_s:.0f} s"
                )
            time.sleep(_POLL_INTERVAL_S)

    def _teardown(self) -> None:
        if self._rpc is not None:
            rpc, self._rpc = self._rpc, None
            rpc.close()
        if self._container is not None and self._attach is None:
            with contextlib.suppress(Exception):
                self._container.remove(force=True)
            _untrack(self._container)
        self._container = None
        if self._hostdir is not None:
            shutil.rmtree(self._hostdir, ignore_errors=True)
            self._hostdir = None


def open_docker_node() -> DockerBitcoind:
    """Attach to the ``docker compose`` node if it runs, else a node in a container of its own."""
    client = docker_client()
    from docker.errors import NotFound

    try:
        container = client.containers.get(COMPOSE_CONTAINER)
    except NotFound:
        return DockerBitcoind()
    if container.status == "running":
        return DockerBitcoind(attach=COMPOSE_CONTAINER)
    return DockerBitcoind()


# Containers we created are removed at interpreter exit if a caller forgot to stop them.
_created: dict[str, Any] = {}
_created_lock = threading.Lock()


def _track(container: Any) -> None:
    with _created_lock:
        _created[container.id] = container


def _untrack(container: Any) -> None:
    with _created_lock:
        _created.pop(container.id, None)


def _remove_all() -> None:
    with _created_lock:
        leftovers = list(_created.values())
        _created.clear()
    for container in leftovers:
        with contextlib.suppress(Exception):
            container.remove(force=True)


atexit.register(_remove_all)
