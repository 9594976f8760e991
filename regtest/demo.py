"""I/O: ``chanlab demo``: narrated scenarios on a private regtest node.

Each scenario is a function taking a ``DemoContext`` (a started node with a funded miner, and a
``Narrator``), registered with ``@scenario(name, summary)``; ``chanlab demo --list`` shows them
and ``chanlab demo NAME`` runs one. ``run_demo`` owns the node's whole life: provision if needed,
start, run the scenario, stop cleanly (also on error or Ctrl-C).
"""

from __future__ import annotations

import hashlib
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from channel.keys import FundingPubkey, PrivateKey
from channel.scripts import funding_script, p2wsh
from channel.seeded import seed_from_text
from regtest.bitcoind_binary import BitcoindBinary, ensure_bitcoind
from regtest.errors import RegtestError
from regtest.node import BitcoindNode, LocalBitcoind, open_node
from regtest.wallet import COINBASE_MATURITY, Wallet

if TYPE_CHECKING:
    from regtest.cluster import Cluster
    from regtest.demo_story import StoryBook

DEFAULT_SCENARIO = "lifecycle"
#: Mock time of height 0 in a seeded run (block N at this + N * 600 s): 2024-01-01 00:00 UTC.
SEEDED_GENESIS_TIME = 1_704_067_200


class Narrator:
    """Numbered steps in plain words, with indented details under each; with a story book,
    the steps also go to the run's story page (and ``--step`` pauses)."""

    def __init__(self, out: TextIO = sys.stdout, book: StoryBook | None = None) -> None:
        self._out = out
        self._step = 0
        self.book = book

    def step(self, text: str) -> None:
        if self.book is not None:
            self.book.step(text)
        self._step += 1
        print(f"\n{self._step}. {text}", file=self._out, flush=True)

    def detail(self, text: str) -> None:
        if self.book is not None:
            self.book.detail(text)
        print(f"   {text}", file=self._out, flush=True)

    def snapshot(self) -> None:
        """Draw the watched channels now (before their nodes stop), if there is a story page."""
        if self.book is not None:
            self.book.end_step()

    def picture(self, caption: str, svg: str) -> None:
        """Put a picture the scenario drew itself under the current step (story page only)."""
        if self.book is not None:
            self.book.picture(caption, svg)

    def watch(self, cluster: Cluster) -> None:
        """Draw ``cluster``'s channels on the story page from now on (if there is one)."""
        if self.book is not None:
            self.book.watch(cluster)


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoContext:
    """What a scenario works with: the node, its mining wallet, the narrator."""

    node: BitcoindNode
    miner: Wallet
    say: Narrator
    seed: str | None = None    # a seeded run: give it to the clusters the scenario starts

    @contextmanager
    def scratch_folder(self, prefix: str) -> Iterator[Path]:
        """A temporary folder for the scenario's node homes, removed when the scenario ends,
        failed or not (the cluster inside stops its processes first)."""
        with tempfile.TemporaryDirectory(prefix=prefix, ignore_cleanup_errors=True) as path:
            yield Path(path)


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    name: str
    summary: str
    run: Callable[[DemoContext], None]


SCENARIOS: dict[str, Scenario] = {}


def scenario(
    name: str, summary: str
) -> Callable[[Callable[[DemoContext], None]], Callable[[DemoContext], None]]:
    """Register a demo scenario under ``name``."""

    def register(run: Callable[[DemoContext], None]) -> Callable[[DemoContext], None]:
        if name in SCENARIOS:
            raise ValueError(f"demo scenario {name!r} registered twice")
        SCENARIOS[name] = Scenario(name=name, summary=summary, run=run)
        return run

    return register


def sat(amount_sat: int) -> str:
    """An amount for people: "1,000,000 sat (0.01 BTC)"."""
    btc = f"{amount_sat / 100_000_000:.8f}".rstrip("0").rstrip(".")
    return f"{amount_sat:,} sat ({btc} BTC)"


def run_demo(
    name: str = DEFAULT_SCENARIO, *, backend: str = "local", out: TextIO = sys.stdout,
    story_dir: Path | None = None, step: bool = False, seed: str | None = None,
) -> None:
    """Provision bitcoind if needed, start a private regtest node, run a scenario, stop the node.

    ``story_dir``: write the run's story page there (``index.html``, SVG pictures beside);
    ``step``: pause before each step, showing the BOLT messages of the one before;
    ``seed``: derive every key from it (bitcoind's wallets too), so each txid repeats."""
    chosen = SCENARIOS.get(name)
    if chosen is None:
        known = ", ".join(sorted(SCENARIOS))
        raise RegtestError(f"no demo scenario {name!r}; known: {known}")
    book = None
    if story_dir is not None or step:
        from regtest.demo_story import StoryBook  # loads the picture code only when asked
        book = StoryBook(step=step, out=out)
    try:
        _run(chosen, backend=backend, say=Narrator(out, book), seed=seed)
    finally:
        if book is not None and story_dir is not None:
            files = book.write(story_dir, f"chanlab demo {name}")
            print(f"\nThe story of this run, with {len(files.pictures)} picture(s): "
                  f"{files.page}", file=out, flush=True)


def run_transactions(node: BitcoindNode) -> list[tuple[int, str]]:
    """(height, txid) of every transaction mined so far but the coinbases, in chain order."""
    out: list[tuple[int, str]] = []
    for height in range(1, node.rpc.getblockcount() + 1):
        block = node.rpc.getblock_verbose(node.rpc.getblockhash(height))
        txids = block["tx"]
        assert isinstance(txids, list)
        out.extend((height, str(txid)) for txid in txids[1:])
    return out


def _run(chosen: Scenario, *, backend: str, say: Narrator, seed: str | None) -> None:
    say.step("Find or provision bitcoind")
    node: BitcoindNode
    if backend == "local":
        binary: BitcoindBinary = ensure_bitcoind(
            progress=lambda line: print(f"   {line}", file=sys.stderr, flush=True)
        )
        say.detail(f"using {binary.bitcoind}")
        say.detail(f"{binary.version_line} ({binary.reason})")
        node = LocalBitcoind(binary=binary)
    else:
        node = open_node(backend)
    say.step(
        "Start a private bitcoind on regtest, a local test chain where we mine blocks on demand"
    )
    with node:
        say.detail(f"RPC at {node.rpc_url}, P2P port {node.p2p_port}, data in {node.datadir}")
        say.detail(f"ZMQ block feed {node.zmq_rawblock}, transaction feed {node.zmq_rawtx}")
        if seed is not None:
            from regtest.seeded_wallet import create_seeded_wallet
            create_seeded_wallet(node.rpc, "miner", seed_from_text(f"{seed}/miner"))
            say.detail(f"seed {seed!r}: every key, coin and txid of this run is derived from it")
        miner = Wallet.open(node.rpc, "miner")
        if seed is not None:
            miner.block_time_base = SEEDED_GENESIS_TIME
        say.step(f"Mine {COINBASE_MATURITY + 1} blocks to a 'miner' wallet")
        miner.mine(COINBASE_MATURITY + 1)
        say.detail(
            f"height {miner.height()}: a block reward may be spent once {COINBASE_MATURITY} "
            "more blocks are on top of it, so exactly one reward is spendable now"
        )
        say.detail(f"miner's spendable balance: {sat(miner.balance_sat())}")
        chosen.run(DemoContext(node=node, miner=miner, say=say, seed=seed))
        if seed is not None:
            say.step(f"Every transaction of this run: the same txids on every run with seed "
                     f"{seed!r}")
            for height, txid in run_transactions(node):
                say.detail(f"height {height:>4}  {txid}")
        say.step("Stop bitcoind")
    say.detail("bitcoind stopped cleanly; its temporary data folder is removed")


def _demo_key(owner: str) -> PrivateKey:
    """A fixed funding key per person, so every run of the demo shows the same script."""
    return PrivateKey(hashlib.sha256(f"chanlab demo funding key of {owner}".encode()).digest())


@scenario(
    "funding", "fund Alice's and Bob's wallets, then lock coins in their 2-of-2 channel output"
)
def funding_story(ctx: DemoContext) -> None:
    say, miner = ctx.say, ctx.miner
    wallet_sat = 1_000_000
    channel_sat = 250_000

    say.step(f"Give Alice and Bob a wallet each, and pay {sat(wallet_sat)} into both")
    alice = Wallet.open(miner.rpc, "alice")
    bob = Wallet.open(miner.rpc, "bob")
    for person, wallet in (("Alice", alice), ("Bob", bob)):
        txid = miner.send_to_address(wallet.new_address(), wallet_sat)
        say.detail(f"miner pays {person}: transaction {txid}")
    block_hash = miner.mine(1)[0]
    say.detail(f"mined block {miner.height()} ({block_hash}) confirming both payments")
    say.detail(f"Alice's balance: {sat(alice.balance_sat())}; Bob's: {sat(bob.balance_sat())}")

    say.step("Alice and Bob each pick a funding key; the channel output needs both signatures")
    alice_key = FundingPubkey(_demo_key("alice").pubkey)
    bob_key = FundingPubkey(_demo_key("bob").pubkey)
    witness_script = funding_script(alice_key, bob_key)
    first, second = sorted((alice_key.hex(), bob_key.hex()))
    say.detail(f"Alice's funding pubkey: {alice_key.hex()}")
    say.detail(f"Bob's funding pubkey:   {bob_key.hex()}")
    say.detail("BOLT 3 funding script (keys in lexicographic order):")
    say.detail(f"  2 <{first[:16]}...> <{second[:16]}...> 2 OP_CHECKMULTISIG")
    script_pubkey = p2wsh(witness_script)
    say.detail(f"it is paid to as P2WSH: scriptPubKey 0 <SHA256(script)> = {script_pubkey.hex()}")

    say.step(f"Alice funds the channel: {sat(channel_sat)} to that 2-of-2 output")
    before_sat = alice.balance_sat()
    outpoint = alice.fund_script(script_pubkey, channel_sat)
    say.detail(f"funding transaction {outpoint.txid_hex} broadcast, output index {outpoint.vout}")
    say.detail("it waits in the mempool: nobody can rely on it until it is in a block")

    say.step("Mine a block to confirm it")
    block_hash = miner.confirm(outpoint.txid_hex)
    height = int(str(miner.rpc.getblockheader(block_hash)["height"]))
    say.detail(f"confirmed in block {height} ({block_hash})")
    confirmed = miner.get_tx_out(outpoint)
    if (
        confirmed is None
        or confirmed.value_sat != channel_sat
        or confirmed.script_pubkey != script_pubkey
    ):
        raise RegtestError(f"the funding output {outpoint} is not on chain as built")
    say.detail(
        f"on chain: output {outpoint} holds {sat(confirmed.value_sat)}, "
        "spendable only with both Alice's and Bob's signatures"
    )
    fee_sat = before_sat - channel_sat - alice.balance_sat()
    say.picture("the funding transaction: Alice's coins into the 2-of-2 output",
                _funding_picture(miner, outpoint.txid_hex, (alice_key, bob_key), fee_sat,
                                 height))
    say.detail(
        f"Alice's wallet now holds {sat(alice.balance_sat())} (she paid a {fee_sat:,} sat fee)"
    )
    say.detail(f"Bob's wallet still holds {sat(bob.balance_sat())}")


def _funding_picture(miner: Wallet, txid: str, keys: tuple[FundingPubkey, FundingPubkey],
                     fee_sat: int, height: int) -> str:
    """The funding transaction as the story page draws it: each output with its owner."""
    from bitcoin.core import CTransaction

    from regtest.txgraph import build_graph
    from regtest.txgraph_render import render_svg
    from regtest.txlabels import funding_record

    tx = CTransaction.deserialize(miner.get_transaction(txid))
    channel_script = p2wsh(funding_script(*keys))
    change = {bytes(out.scriptPubKey): "alice" for out in tx.vout    # she funded it all
              if bytes(out.scriptPubKey) != channel_script}
    record = funding_record(tx, funding_pubkeys=keys, names=("alice", "bob"), opener="alice",
                            fee_sat=fee_sat, owners=change, confirmation_height=height)
    return render_svg(build_graph([record]), title="the channel's funding transaction")
