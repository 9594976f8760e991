"""chanlab as a library: real chanlab nodes on a private regtest bitcoind, for tests and notebooks.

Re-exports the public API; nothing else (the pytest plugin is ``chanlab.pytest_plugin``, loaded
by pytest through the ``pytest11`` entry point, never imported here).
"""

from chanlab.bitcoind import Bitcoind, TxOutput, TxRecord
from chanlab.factory import NodeFactory
from chanlab.lab import Lab, WaitFor
from chanlab.node import Node
from chanlab.records import (
    Balance,
    ChannelRecord,
    CheatRecord,
    CloseRecord,
    ForceCloseRecord,
    InvoiceRecord,
    NodeError,
    NodeInfo,
    PaymentRecord,
)
from regtest.errors import WaitTimeout

__all__ = [
    "Balance",
    "Bitcoind",
    "ChannelRecord",
    "CheatRecord",
    "CloseRecord",
    "ForceCloseRecord",
    "InvoiceRecord",
    "Lab",
    "Node",
    "NodeError",
    "NodeFactory",
    "NodeInfo",
    "PaymentRecord",
    "TxOutput",
    "TxRecord",
    "WaitFor",
    "WaitTimeout",
]
