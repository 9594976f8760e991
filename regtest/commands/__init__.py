"""The ``chanlab`` subcommands: one module each, registered with the parser by ``regtest.cli``.

Each module defines ``register(subparsers: argparse._SubParsersAction) -> None``.
"""

MODULES: tuple[str, ...] = (
    "regtest.commands.bitcoind",
    "regtest.commands.decode",
    "regtest.commands.demo",
    "regtest.commands.electrum",
    "regtest.commands.network",
    "regtest.commands.node",
    "regtest.commands.tower",
    "regtest.commands.web",
)
