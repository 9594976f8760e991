"""Reading outcomes off the chain for the drill and breach tests: fees, witnesses, who owns what.

I/O (bitcoind RPC); no assertions here, the tests make them.
"""

from __future__ import annotations

from bitcoin.core import CTransaction

from regtest.drills import Settlement, owned_by
from regtest.wallet import Chain, Wallet

REVOCATION_PATH = b"\x01"   # to_local-shaped scripts: <revocation_sig> 1 <script>
DELAYED_PATH = b""          # <delayed_sig> <> <script>


def tx_of(chain: Chain, txid: str) -> CTransaction:
    return CTransaction.deserialize(chain.get_transaction(txid))


def fee_of(chain: Chain, txid: str) -> int:
    """Inputs minus outputs, from the chain."""
    tx = tx_of(chain, txid)
    paid_in = sum(int(tx_of(chain, bytes(i.prevout.hash)[::-1].hex()).vout[i.prevout.n].nValue)
                  for i in tx.vin)
    return paid_in - sum(int(o.nValue) for o in tx.vout)


def witness(tx: CTransaction, index: int) -> list[bytes]:
    return [bytes(item) for item in tx.wit.vtxinwit[index].scriptWitness.stack]


def spent_outpoints(tx: CTransaction) -> set[tuple[str, int]]:
    return {(bytes(i.prevout.hash)[::-1].hex(), int(i.prevout.n)) for i in tx.vin}


def height_of(chain: Chain, txid: str) -> int:
    return chain.height() - chain.confirmations(txid) + 1


def all_leaves_owned(settlement: Settlement, wallet: Wallet) -> bool:
    return bool(settlement.leaves) and all(owned_by(wallet, leaf.script_pubkey)
                                           for leaf in settlement.leaves)
