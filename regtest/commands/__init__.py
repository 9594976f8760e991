"""The ``chanlab`` subcommands: one module each, registered with the parser by ``regtest.cli``.

Each module defines ``register(subparsers: argparse._SubParsersAction) -> None``. The command
line imports only the module of the command it runs (a node daemon never loads the demo's or
the provisioning code), and all of them for ``--help``.
"""

COMMANDS: dict[str, str] = {
    "bitcoind": "regtest.commands.bitcoind",
    "decode": "regtest.commands.decode",
    "demo": "regtest.commands.demo",
    "electrum": "regtest.commands.electrum",
    "network": "regtest.commands.network",
    "node": "regtest.commands.node",
    "tower": "regtest.commands.tower",
    "web": "regtest.commands.web",
}

MODULES: tuple[str, ...] = tuple(COMMANDS.values())
