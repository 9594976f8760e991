"""I/O: ``Lab``, chanlab for scripts and notebooks: its own bitcoind and nodes, all cleaned up.

    with Lab() as lab:
        alice, bob = lab.nodes("alice", "bob")
        lab.channel(alice, bob, 500_000)
        alice.pay(bob.invoice(25_000_000))

Leaving the ``with`` block, normally, on an exception or on Ctrl-C, stops every node and the
bitcoind and removes their folders. Without ``with``, call ``close()``; a lab still open when
Python exits is closed then.
"""

from __future__ import annotations

import atexit
from collections.abc import Callable
from contextlib import ExitStack
from types import TracebackType
from typing import Protocol, TypeVar

from chanlab.bitcoind import Bitcoind
from chanlab.factory import ANNOUNCE_DEPTH, DEFAULT_TO_SELF_DELAY, NodeFactory
from chanlab.node import Node
from chanlab.records import ChannelRecord
from regtest.wait import wait_for as _wait_for

__all__ = ["Lab", "WaitFor"]

_T = TypeVar("_T")


class WaitFor(Protocol):
    """The type of ``wait_for`` (the fixture, and ``Lab.wait_for``)."""

    def __call__(self, predicate: Callable[[], _T | None], *, timeout: float = 30.0,
                 what: str = "a condition") -> _T: ...


class Lab:
    """A private regtest bitcoind plus chanlab nodes on it, for one script or notebook."""

    def __init__(self, *, backend: str = "local", keep: bool = False) -> None:
        self._backend = backend
        self._keep = keep
        self._stack: ExitStack | None = None
        self._bitcoind: Bitcoind | None = None
        self._factory: NodeFactory | None = None

    # --- life cycle -----------------------------------------------------------------------------

    def start(self) -> Lab:
        """Start bitcoind (provisioned on first use, as ``make demo`` does)."""
        if self._stack is not None:
            return self
        stack = ExitStack()
        try:
            self._bitcoind = stack.enter_context(Bitcoind.running(backend=self._backend))
            self._factory = stack.enter_context(NodeFactory(self._bitcoind, prefix="chanlab-lab-",
                                                            keep=self._keep))
        except BaseException:
            stack.close()
            raise
        self._stack = stack
        atexit.register(self.close)
        return self

    def close(self) -> None:
        """Stop every node and bitcoind, remove their folders. Safe to call twice."""
        stack, self._stack = self._stack, None
        self._bitcoind = self._factory = None
        if stack is not None:
            atexit.unregister(self.close)
            stack.close()

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # --- what scripts use -----------------------------------------------------------------------

    @property
    def bitcoind(self) -> Bitcoind:
        if self._bitcoind is None:
            raise RuntimeError("the lab is not running: use `with Lab() as lab:` or lab.start()")
        return self._bitcoind

    @property
    def factory(self) -> NodeFactory:
        if self._factory is None:
            raise RuntimeError("the lab is not running: use `with Lab() as lab:` or lab.start()")
        return self._factory

    def node(self, name: str, *, funds_sat: int = 1_000_000,
             to_self_delay: int = DEFAULT_TO_SELF_DELAY, allow_cheating: bool = False) -> Node:
        """Start a node called ``name`` with ``funds_sat`` confirmed in its wallet."""
        return self.factory.get_node(name, funds_sat=funds_sat, to_self_delay=to_self_delay,
                                     allow_cheating=allow_cheating)

    def nodes(self, *names: str, funds_sat: int = 1_000_000,
              to_self_delay: int = DEFAULT_TO_SELF_DELAY,
              allow_cheating: bool = False) -> tuple[Node, ...]:
        """Start one node per name, each with ``funds_sat`` in its wallet."""
        return tuple(self.node(name, funds_sat=funds_sat, to_self_delay=to_self_delay,
                               allow_cheating=allow_cheating) for name in names)

    def channel(self, opener: Node, peer: Node, amount_sat: int, *, push_msat: int = 0,
                anchors: bool = False, announce: bool = False) -> ChannelRecord:
        """Open a channel from ``opener`` to ``peer``, mined and ``normal`` on both sides.
        ``announce=True``: a public channel, mined 6 deep so both ends announce it (BOLT 7);
        ``lab.factory.wait_for_graphs(nodes)`` then waits until every node knows it."""
        record = opener.open_channel(peer, amount_sat, push_msat=push_msat, anchors=anchors,
                                     announce=announce, confirm=True)
        if announce:
            self.mine(ANNOUNCE_DEPTH - 1)   # open_channel mined the first confirmation
        return record

    def mine(self, n: int = 1) -> list[str]:
        """Mine ``n`` blocks; return their hashes."""
        return self.bitcoind.generate_block(n)

    def fund(self, node: Node, amount_sat: int) -> str:
        """Send ``amount_sat`` to ``node``'s wallet and confirm it; the txid."""
        return self.bitcoind.fund(node, amount_sat)

    @staticmethod
    def wait_for(predicate: Callable[[], _T | None], *, timeout: float = 30.0,
                 what: str = "a condition") -> _T:
        """Poll ``predicate`` until it returns something truthy (``WaitTimeout`` after
        ``timeout`` seconds); return that value."""
        return _wait_for(predicate, timeout=timeout, what=what)

