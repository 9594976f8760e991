"""I/O: the node's control commands, one method per entry of ``NODE_COMMANDS``.

Each command turns a checked request (:mod:`channel.control_api`) into calls on the node's
channel manager, under the lock of the peer it concerns, and completes the resulting flight
through the node; a ``RejectedUpdate`` is the caller's answer and changes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from channel.chain import require_regtest
from channel.channel_basics import ChannelState
from channel.channel_facts import channel_facts
from channel.daemon import ControlHandler
from channel.effects import Effects, OpenResolved, PipelineDone, ShutdownResolved
from channel.errors import RejectedUpdate, UnsafeOperation
from channel.manager import ChannelManager, txid_hex
from channel.payment_attempts import route_text
from channel.types import Side

if TYPE_CHECKING:
    from channel.bolt11 import Bolt11Invoice, Network
    from channel.node import Node

log = logging.getLogger("chanlab.node")

__all__ = ["PAYMENT_TIMEOUT_S", "NodeControl", "network_of"]

PAYMENT_TIMEOUT_S = 60.0
# Names of channel.bolt11.Network members: BOLT 11 and onion routes are imported in the
# commands that need them, so an idle node does not load them (``make bench``: idle node RSS).
_NETWORKS = {"main": "MAINNET", "test": "TESTNET", "testnet4": "TESTNET", "signet": "SIGNET",
             "regtest": "REGTEST"}


def network_of(chain: str) -> Network:
    """The BOLT 11 currency of the chain bitcoind names ``chain``."""
    from channel.bolt11 import Network
    try:
        return Network[_NETWORKS[chain]]
    except KeyError:
        raise RejectedUpdate(f"no BOLT 11 currency for chain {chain!r}") from None


def channel_list(manager: ChannelManager) -> list[dict[str, Any]]:
    """The ``channels`` answer: one entry per channel, balances once it is funded."""
    out = []
    for h in manager.handles.values():
        chan = h.channel
        entry: dict[str, Any] = {
            "channel": h.key, "peer_id": h.peer_id.hex(), "state": chan.state.value,
            "channel_id": (chan.channel_id or b"").hex(), "funding_sat": chan.funding_sat,
            "funding_outpoint": str(chan.funding_outpoint) if chan.funding_outpoint else None,
            "opener": chan.opener.value, "commitment_format": chan.commitment_format.value,
            "to_self_delay": chan.holder_params.to_self_delay,
        }
        if h.short_channel_id is not None:
            from channel.route import format_short_channel_id
            entry["short_channel_id"] = format_short_channel_id(h.short_channel_id)
        if chan.log is not None:
            entry.update({
                "local_msat": chan.balance_msat(Side.HOLDER),
                "remote_msat": chan.balance_msat(Side.COUNTERPARTY),
                "htlcs": len(chan.htlcs_in_flight()),
                "holder_commitment_number": chan.holder_commitment_number,
                "counterparty_commitment_number": chan.counterparty_commitment_number})
        if chan.closing_tx is not None:
            entry["closing_txid"] = txid_hex(chan.closing_tx)
        out.append(entry)
    return out


def offchain_msat(manager: ChannelManager) -> int:
    """Our side of every channel that is open or closing cooperatively."""
    return sum(h.channel.balance_msat() for h in manager.handles.values()
               if h.channel.log is not None and h.channel.state in (
                   ChannelState.NORMAL, ChannelState.SHUTTING_DOWN,
                   ChannelState.NEGOTIATING_CLOSE, ChannelState.AWAITING_LOCKIN))


def claimable(manager: ChannelManager) -> list[dict[str, Any]]:
    """Per channel, what we can still get on chain and from which height."""
    out = []
    for h in manager.handles.values():
        if h.monitor is None:
            continue
        for b in h.monitor.claimable_balances():
            out.append({"channel": h.key, "status": b.status.value,
                        "amount_sat": b.amount_sat,
                        "claimable_from_height": b.claimable_from_height,
                        "description": b.description})
    return out


class NodeControl:
    """The answers to the node's control commands."""

    def __init__(self, node: Node) -> None:
        self._node = node

    @property
    def _m(self) -> ChannelManager:
        manager = self._node.manager
        if manager is None:
            raise RejectedUpdate("the node is still starting; try again")
        return manager

    def handlers(self) -> dict[str, ControlHandler]:
        return {
            "info": self.cmd_info, "connect": self.cmd_connect, "open": self.cmd_open,
            "invoice": self.cmd_invoice, "invoices": self.cmd_invoices, "pay": self.cmd_pay,
            "pay-batch": self.pay_many, "pay-pipeline": self.cmd_pay_pipeline,
            "settle": self.cmd_settle, "cancel": self.cmd_cancel,
            "channels": self.cmd_channels, "balance": self.cmd_balance,
            "forwarding": self.cmd_forwarding, "graph-info": self.cmd_graph_info,
            "claimable": self.cmd_claimable, "events": self.cmd_events,
            "close": self.cmd_close, "force-close": self.cmd_force_close,
            "update-fee": self.cmd_update_fee, "cheat": self.cmd_cheat,
            "add-tower": self.cmd_add_tower, "towers": self.cmd_towers, "stop": self.cmd_stop,
            "payments": self.cmd_payments, "trace": self.cmd_trace,
            "channel-facts": self.cmd_channel_facts, "graph": self.cmd_channel_facts,
            "channel": self.cmd_channel_facts}

    async def cmd_info(self) -> dict[str, Any]:
        node = self._node
        return {"name": node.settings.name, "node_id": node.node_id.hex(),
                "address": f"{node.node_id.hex()}@{node.settings.host}:{node.port}",
                "chain": self._node.chain.chain, "height": self._m.height,
                "peers": [p.hex() for p in self._node.peers.peers],
                "channels": len(self._m.handles),
                "chain_view": None if node.chain_view is None else
                node.chain_view.status.to_json()}

    async def cmd_connect(self, peer: str) -> dict[str, Any]:
        node_hex, _, addr = peer.partition("@")
        host, _, port = addr.rpartition(":")
        await self._node.peers.connect(bytes.fromhex(node_hex), host, int(port))
        return {"connected": node_hex}

    def _connected(self, peer_id: bytes, what: str) -> asyncio.Lock:
        if peer_id not in self._node.peers.peers:
            raise RejectedUpdate(what)
        return self._node.peers.lock_of(peer_id)

    async def cmd_open(self, peer_id: str, amount_sat: int, push_msat: int,
                       anchors: bool, announce: bool = False) -> dict[str, Any]:
        node_id = bytes.fromhex(peer_id)
        async with self._connected(node_id, f"not connected to {peer_id[:16]}…: connect first"):
            from channel.wire import Feature  # loaded by the connection (idle node RSS)
            fx = Effects()
            # BOLT 2: propose a channel_type both support; a peer that requires anchors
            # (Electrum) refuses any other, so it gets anchors even when not asked for
            anchors = anchors or self._node.peers.features_of(node_id).requires(
                Feature.OPTION_ANCHORS)
            handle = self._m.open_channel(node_id, funding_sat=amount_sat, push_msat=push_msat,
                                          anchors=anchors, fx=fx, announce=announce)
            opened = self._node.waiter(OpenResolved, handle.key)
            await self._node.complete(fx)
        funding_txid = await asyncio.wait_for(opened, 30)
        chan = handle.channel
        return {"channel": handle.key, "channel_id": (chan.channel_id or b"").hex(),
                "funding_txid": funding_txid, "funding_sat": chan.funding_sat,
                "announce": announce}

    def _new_invoice(self, amount_msat: int, description: str, hold: bool,
                     fx: Effects) -> Bolt11Invoice:
        m = self._m
        return m.payments.create_invoice(
            amount_msat, description, hold, fx, now=int(time.time()),
            network=network_of(self._node.chain.chain), route_hints=m.payer.route_hints())

    async def cmd_invoice(self, amount_msat: int, description: str,
                          hold: bool) -> dict[str, Any]:
        fx = Effects()
        invoice = self._new_invoice(amount_msat, description, hold, fx)
        await self._node.complete(fx)
        return {"invoice": invoice.encode(), "payment_hash": invoice.payment_hash.hex(),
                "amount_msat": amount_msat, "hold": hold,
                "expires_at": invoice.expires_at,
                "min_final_cltv_expiry_delta": invoice.min_final_cltv_expiry_delta,
                "route_hints": [[{"node_id": hop.pubkey.hex(),
                                  "short_channel_id": hop.short_channel_id_text}
                                 for hop in hint] for hint in invoice.route_hints]}

    async def cmd_invoices(self, count: int, amount_msat: int,
                           description: str) -> dict[str, Any]:
        """``count`` invoices of ``amount_msat`` each, stored in one transaction."""
        fx = Effects()
        invoices = [self._new_invoice(amount_msat, description, False, fx)
                    for _ in range(count)]
        await self._node.complete(fx)
        return {"invoices": [inv.encode() for inv in invoices]}

    def _decode(self, text: str) -> Bolt11Invoice:
        """A BOLT 11 invoice we may pay now (right network, not expired), or one line why not."""
        from channel.bolt11 import Bolt11Invoice, check_payable
        invoice = Bolt11Invoice.decode(text)
        check_payable(invoice, network=network_of(self._node.chain.chain),
                      now=int(time.time()))
        return invoice

    async def cmd_settle(self, payment_hash: str) -> dict[str, Any]:
        return await self._release_hold(payment_hash, "settle")

    async def cmd_cancel(self, payment_hash: str) -> dict[str, Any]:
        return await self._release_hold(payment_hash, "cancel")

    async def _release_hold(self, payment_hash: str, decision: str) -> dict[str, Any]:
        fx = Effects()
        self._m.release_hold(payment_hash, decision, fx)
        await self._node.complete(fx)
        released = 0
        for handle in self._m.holding(payment_hash):
            if handle.peer_id not in self._node.peers.peers:
                continue  # done at the next channel_reestablish
            async with self._node.peers.lock_of(handle.peer_id):
                fx = Effects()
                self._m.settle_held(handle, fx)
                await self._node.complete(fx)
            released += 1
        return {"payment_hash": payment_hash, "decision": decision, "channels": released}

    async def cmd_pay(self, invoice: str, timeout_s: float, wait: bool) -> dict[str, Any]:
        """Pay ``invoice``; with ``wait`` False, return once the HTLC is sent and signed."""
        return (await self.pay_many([invoice], timeout_s=timeout_s, wait=wait))[0]

    async def pay_many(self, invoices: list[str], timeout_s: float = PAYMENT_TIMEOUT_S,
                       wait: bool = True) -> list[dict[str, Any]]:
        """Pay invoices to one peer as one batch: all HTLCs in one ``commitment_signed``."""
        decoded = [self._decode(text) for text in invoices]
        if not decoded:
            raise RejectedUpdate("no invoices to pay")
        # the first hops' peers, locked in a fixed order: a payment may start on any channel
        peers = sorted({h.peer_id for h in self._m.handles.values()
                        if h.peer_id in self._node.peers.peers})
        async with contextlib.AsyncExitStack() as stack:
            for peer_id in peers:
                await stack.enter_async_context(self._node.peers.lock_of(peer_id))
            fx = Effects()
            outcomes = self._m.pay(decoded, fx)
            loop = asyncio.get_running_loop()
            waiters: dict[bytes, asyncio.Future[dict[str, Any]]] = {}
            for inv, outcome in zip(decoded, outcomes, strict=True):
                if outcome is None:
                    waiters[inv.payment_hash] = loop.create_future()
            self._node.pay_waiters.update(waiters)
            await self._node.complete(fx)
        results: list[dict[str, Any]] = []
        for inv, outcome in zip(decoded, outcomes, strict=True):
            if outcome is not None:
                results.append(dict(outcome))
            elif not wait:
                results.append({"status": "pending",
                                "reason": "sent; not waiting for the outcome"})
            else:
                waiter = waiters[inv.payment_hash]
                try:
                    results.append(await asyncio.wait_for(waiter, timeout_s))
                except TimeoutError:
                    self._node.pay_waiters.pop(inv.payment_hash, None)
                    self._m.payments.abandon(inv.payment_hash)
                    results.append({"status": "pending", "reason": "timed out waiting"})
            results[-1]["payment_hash"] = inv.payment_hash.hex()
        return results

    async def cmd_pay_pipeline(self, invoices_path: str, batch_size: int,
                               timeout_s: float) -> dict[str, Any]:
        """Pay a file's invoices in batches, one in flight; ``paid_s`` ends when the last
        preimage arrives, ``settled_s`` when the channel is quiescent again."""
        decoded = [self._decode(text) for text in Path(invoices_path).read_text().split()]
        if not decoded:
            raise RejectedUpdate("no invoices to pay")
        handle = self._m.usable_channel(decoded[0].payee_node_id)
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            async with self._connected(handle.peer_id, "the payee is not connected"):
                fx = Effects()
                self._m.start_pipeline(decoded, batch_size, fx)
                done = self._node.waiter(PipelineDone, handle.key)
                await self._node.complete(fx)
            await asyncio.wait_for(asyncio.shield(done), timeout_s)
        finally:
            pipeline = self._m.payments.pipelines.get(handle.key)
            self._m.payments.end_pipeline(handle.key)
        paid = loop.time() - started
        chan = handle.channel
        while chan.htlcs_in_flight() or chan.awaiting_revoke_and_ack or \
                chan.has_unsigned_changes():
            if loop.time() > started + paid + timeout_s:
                raise TimeoutError("the channel did not become quiescent")
            await asyncio.sleep(0.0005)
        return {"payments": len(decoded), "batch_size": max(1, batch_size),
                "succeeded": pipeline.succeeded if pipeline is not None else 0,
                "paid_s": paid, "settled_s": loop.time() - started,
                "holder_commitment_number": chan.holder_commitment_number}

    async def cmd_forwarding(self) -> dict[str, Any]:
        return self._m.forwarder.report(self._m.handles.values())

    async def cmd_graph_info(self) -> dict[str, Any]:
        from channel.gossip_local import graph_report
        return {**graph_report(self._m.graph), "gossip": dict(self._m.public.counters)}

    async def cmd_channels(self) -> list[dict[str, Any]]:
        return channel_list(self._m)

    async def cmd_balance(self) -> dict[str, Any]:
        return {"onchain_sat": await self._node.chain.wallet_balance_sat(),
                "offchain_msat": offchain_msat(self._m)}

    async def cmd_claimable(self) -> list[dict[str, Any]]:
        return claimable(self._m)

    async def cmd_events(self) -> list[str]:
        return list(self._m.events)

    async def cmd_close(self, channel: str) -> dict[str, Any]:
        handle = self._m.find(channel)
        lock = self._connected(handle.peer_id, "the peer is offline: use force-close")
        script = await self._node.chain.new_script_pubkey()
        closed = self._node.waiter(ShutdownResolved, handle.key)
        async with lock:
            fx = Effects()
            self._m.close(handle, script, fx)
            await self._node.complete(fx)
        return {"channel": handle.key, "closing_txid": await asyncio.wait_for(closed, 30)}

    async def cmd_force_close(self, channel: str) -> dict[str, Any]:
        handle = self._m.find(channel)
        async with self._node.peers.lock_of(handle.peer_id):
            fx = Effects()
            txid = self._m.force_close(handle, fx)
            await self._node.complete(fx)
        if txid is None:
            raise RejectedUpdate("the channel has no commitment to broadcast")
        log.warning("channel %s force-closed: requested by the user", handle.key[:16])
        answer = {"channel": handle.key, "commitment_txid": txid,
                  "to_self_delay": handle.channel._peer.to_self_delay}
        if txid in self._node.outbox.unsent:
            answer["note"] = ("bitcoind did not take the commitment now (is it running?): it "
                              "is saved and will be broadcast as soon as bitcoind is back")
        return answer

    async def cmd_update_fee(self, channel: str, feerate_per_kw: int) -> dict[str, Any]:
        """Change a channel's commitment feerate (we must be the opener): update_fee + sign."""
        handle = self._m.find(channel)
        async with self._connected(handle.peer_id, "the peer is offline"):
            fx = Effects()
            self._m.update_fee(handle, feerate_per_kw, fx)
            await self._node.complete(fx)
        return {"channel": handle.key, "feerate_per_kw": feerate_per_kw}

    async def cmd_cheat(self, channel: str, state: int, htlc_txs: bool,
                        sweep: bool) -> dict[str, Any]:
        if self._node.cheat is None:
            require_regtest(self._node.chain.chain, "cheat")
            raise UnsafeOperation("this node was not started with --allow-cheating, so it kept "
                                  "no revoked commitments to broadcast")
        return await self._node.cheat.cheat(channel, state, htlc_txs, sweep)

    async def cmd_add_tower(self, address: str) -> dict[str, Any]:
        """Upload a justice kit per revoked state to the tower ``tower_id@host:port``."""
        return self._node.towers.add(address)

    async def cmd_towers(self) -> list[dict[str, Any]]:
        return self._node.towers.status()

    async def cmd_payments(self) -> list[dict[str, Any]]:
        """Sent and received payments; a sent one with the routing fee and route of its last
        attempt, its attempts, and (failed) the decoded failure and the hop that sent it."""
        out: list[dict[str, Any]] = []
        payments = self._m.payments
        for row in payments.all_payments():
            entry: dict[str, Any] = {
                "payment_hash": row.payment_hash,
                "direction": "received" if row.direction == "in" else "sent",
                "status": row.status, "amount_msat": row.amount_msat}
            if row.direction == "out":
                state = payments.outgoing.get(bytes.fromhex(row.payment_hash))
                entry["fee_msat"] = 0 if state is None else state.fee_msat
                if state is not None and state.route is not None:
                    entry["route"] = [hop.node_id.hex() for hop in state.route.hops]
                    entry["route_text"] = route_text(state.route)
                if state is not None and state.attempts:
                    entry["attempts"] = state.attempts
            if row.detail:
                entry["description" if row.direction == "in" else "failure"] = row.detail
            out.append(entry)
        return out

    async def cmd_trace(self, limit: int, since: int) -> list[dict[str, Any]]:
        return [r.to_json() for r in self._node.trace.read(limit, since)]

    async def cmd_channel_facts(self, channel: str) -> dict[str, Any]:
        handle = self._m.find(channel)
        return channel_facts(handle, holder_scripts=(self._m.sweep_script,))

    async def cmd_stop(self) -> dict[str, Any]:
        asyncio.get_running_loop().call_soon(self._node.shell.stopping.set)
        return {"stopping": True}

