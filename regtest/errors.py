"""The exceptions of the regtest harness, named by what the person or code catching them should do.

Pure. Every class here descends from ``channel.errors.ChanlabError`` so one ``except`` at the CLI
catches all deliberate failures.

    ChanlabError
    └── RegtestError             the harness could not do what was asked
        ├── SetupError           the machine lacks something; ``str(e)`` says what to do (exit 2)
        │   ├── BitcoindNotFound     no usable bitcoind and provisioning is impossible here
        │   ├── BitcoindTooOld       the bitcoind found is older than the supported minimum
        │   ├── ProvisionError       provisioning into the cache failed
        │   ├── BrokenCache          the cache holds a half-finished or damaged provision
        │   └── DockerUnavailable    ``--backend docker`` chosen but no Docker engine answers
        ├── NodeStartError       bitcoind did not come up (died, timed out); carries its log tail
        │   └── PortInUse        a port it was told to use is taken
        ├── RpcError(code, message)  bitcoind answered with a JSON-RPC error (subclasses by code)
        ├── RpcUnreachable       no answer at all (connection refused, auth rejected)
        └── WaitTimeout          also a ``TimeoutError``: a condition did not come true in time
"""

from __future__ import annotations

from channel.errors import ChainError, ChanlabError


class RegtestError(ChanlabError):
    """Root of the harness's deliberate errors."""


class SetupError(RegtestError):
    """The machine lacks something chanlab needs; the message says what to do about it."""


class BitcoindNotFound(SetupError):
    """No usable bitcoind anywhere, and it cannot be provisioned on this machine."""


class BitcoindTooOld(SetupError):
    """The bitcoind found is older than the oldest version chanlab supports."""


class ProvisionError(SetupError):
    """Provisioning bitcoind into the cache failed part way."""


class BrokenCache(SetupError):
    """The cache holds a provision that was interrupted or damaged."""


class DockerUnavailable(SetupError):
    """The docker backend was chosen but no Docker engine answers."""


class NodeStartError(RegtestError):
    """bitcoind did not reach a state where it answers RPC."""


class PortInUse(NodeStartError):
    """A port the node was asked to use is already taken by another socket."""


class RpcUnreachable(RegtestError, ChainError):
    """bitcoind could not be reached over RPC at all (refused, reset, or credentials rejected)."""


class WaitTimeout(RegtestError, TimeoutError):
    """A waited-for condition did not come true before the deadline."""
