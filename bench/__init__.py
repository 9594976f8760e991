"""chanlab's benchmarks: ``make bench`` runs ``python -m bench`` (every figure, then a table).

Each module also runs alone from the repository root: ``python -m bench.transport``,
``python -m bench.state_machine``, ``python -m bench.tower``. ``bench.figures`` is pure;
the others are I/O (processes, sockets, disk, bitcoind).
"""
