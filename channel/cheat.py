"""I/O: cheat mode, a regtest developer power: keep revoked commitments and broadcast one.

Used by ``chanlab node start --allow-cheating`` to stage breaches (drills, tests, the demo).
It refuses to exist off regtest: :class:`CheatMode` checks the chain bitcoind reports, and the
node imports this module only when cheating was asked for. Every signed commitment of ours is
archived as it is persisted (with its signed HTLC transactions and a pre-signed sweep of its
to_local), so ``cheat`` can replay any old state later.
"""

from __future__ import annotations

import json
from typing import Any

from channel.chain import ChainBackend, require_regtest
from channel.effects import ChannelHandle
from channel.errors import ChainError, RejectedUpdate
from channel.manager import SWEEP_FEERATE_PER_KW, ChannelManager, txid_hex
from channel.store import NodeStore
from channel.sweeps import build_sweep_transaction, delayed_output
from channel.transactions import build_htlc_transactions, finalize_htlc_transaction

__all__ = ["CheatMode"]


class CheatMode:
    """The archive of our commitments, and the ``cheat`` command that broadcasts one."""

    def __init__(self, chain: ChainBackend, store: NodeStore, manager: ChannelManager) -> None:
        require_regtest(chain.chain, "--allow-cheating")
        self._chain = chain
        self._manager = manager
        self._archive: dict[str, dict[int, bytes]] = {}
        # per channel, per state: that state's signed HTLC txs and a to_local sweep
        self._extras: dict[str, dict[int, dict[str, Any]]] = {}
        raw_archive = store.get("cheat_archive")
        if raw_archive:
            self._archive = {k: {int(n): bytes.fromhex(t) for n, t in v.items()}
                             for k, v in json.loads(raw_archive).items()}
        raw_extras = store.get("cheat_extras")
        if raw_extras:
            self._extras = {k: {int(n): e for n, e in v.items()}
                            for k, v in json.loads(raw_extras).items()}

    def archive(self, handles: list[ChannelHandle]) -> list[tuple[str, str]]:
        """Archive the current commitment of ``handles``; the kv rows that keep the archive."""
        for handle in handles:
            self._archive_one(handle)
        return [("cheat_archive", json.dumps({k: {str(n): t.hex() for n, t in v.items()}
                                              for k, v in self._archive.items()})),
                ("cheat_extras", json.dumps({k: {str(n): e for n, e in v.items()}
                                             for k, v in self._extras.items()}))]

    def _archive_one(self, handle: ChannelHandle) -> None:
        chan = handle.channel
        if not chan.holder_commitment_signature or not chan.is_funded:
            return
        archive = self._archive.setdefault(handle.key, {})
        number = chan.holder_commitment_number
        if number not in archive:
            archive[number] = chan.holder_transactions().commitment_tx.serialize()
        extras = self._extras.setdefault(handle.key, {})
        if number not in extras:
            extras[number] = self._extras_for(handle)

    def _extras_for(self, handle: ChannelHandle) -> dict[str, Any]:
        """The current state's signed HTLC txs (HTLC-success ones with the preimages we know,
        from the channel or our own invoices) and a pre-signed sweep of its to_local (valid
        ``to_self_delay`` blocks after the commitment confirms)."""
        chan = handle.channel
        txs = chan.holder_transactions()
        ctx = txs.commitment
        preimages = {h.payment_hash: h.payment_preimage for h in chan.log.entries()
                     if h.payment_preimage is not None} if chan.log is not None else {}
        htlc_key = chan.keys.htlc_privkey(ctx.keys.per_commitment_point)
        htlc_txs: list[str] = []
        for htlc_tx, their_sig in zip(build_htlc_transactions(ctx), chan.holder_htlc_signatures,
                                      strict=True):
            preimage = None
            if not htlc_tx.is_timeout:
                payment_hash = htlc_tx.htlc_output.htlc.payment_hash
                preimage = preimages.get(payment_hash)
                row = self._manager.payments.payment(payment_hash.hex())
                if preimage is None and row is not None and row.direction == "in" and \
                        row.preimage is not None:
                    preimage = bytes.fromhex(row.preimage)
                if preimage is None:
                    continue
            htlc_txs.append(finalize_htlc_transaction(
                htlc_tx, countersignatory_signature=their_sig,
                broadcaster_signature=htlc_key.sign(htlc_tx.broadcaster_sighash()),
                payment_preimage=preimage).serialize().hex())
        sweep = ""
        if ctx.to_local_vout is not None:
            spend = delayed_output(ctx, chan.keys.delayed_payment_privkey(
                ctx.keys.per_commitment_point))
            try:
                sweep = build_sweep_transaction(
                    [spend], destination_script_pubkey=self._manager.sweep_script,
                    feerate_per_kw=SWEEP_FEERATE_PER_KW).tx.serialize().hex()
            except ValueError:  # dust after the fee: nothing to sweep
                sweep = ""
        return {"htlc_txs": htlc_txs, "to_local_sweep": sweep}

    async def cheat(self, channel: str, state: int, htlc_txs: bool,
                    sweep: bool) -> dict[str, Any]:
        """Broadcast our revoked commitment ``state``; with ``htlc_txs`` also its HTLC txs,
        with ``sweep`` the sweep of its to_local (valid once to_self_delay has passed). Each
        may be asked for again later (a tx the chain or mempool already holds is fine)."""
        require_regtest(self._chain.chain, "cheat")
        handle = self._manager.find(channel)
        raw = self._archive.get(handle.key, {}).get(state)
        if raw is None:
            raise RejectedUpdate(f"no archived commitment #{state} for this channel")
        if not (htlc_txs or sweep):
            txid = await self._chain.broadcast(raw)
            return {"channel": handle.key, "revoked_commitment_txid": txid, "state": state}
        extras = self._extras.get(handle.key, {}).get(state,
                                                      {"htlc_txs": [], "to_local_sweep": ""})
        result: dict[str, Any] = {"channel": handle.key, "state": state,
                                  "revoked_commitment_txid": txid_hex(raw),
                                  "commitment": await self._broadcast(raw)}
        if htlc_txs:
            result["htlc_txs"] = [await self._broadcast(bytes.fromhex(t))
                                  for t in extras["htlc_txs"]]
        if sweep and extras["to_local_sweep"]:
            result["to_local_sweep"] = await self._broadcast(
                bytes.fromhex(extras["to_local_sweep"]))
        return result

    async def _broadcast(self, raw: bytes) -> dict[str, Any]:
        txid = txid_hex(raw)
        try:
            await self._chain.broadcast(raw)
        except ChainError as exc:  # any rejection: reported to the cheater, who may retry
            if await self._chain.confirmations(txid) > 0:
                return {"txid": txid, "accepted": True, "confirmed": True}
            return {"txid": txid, "accepted": False, "error": str(exc)}
        return {"txid": txid, "accepted": True, "confirmed": False}
