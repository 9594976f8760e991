"""I/O: open a node's database and rebuild its channel manager from it at start.

Every channel comes back from its last committed record, its monitor from the last snapshot
plus the updates written since, and the payments (with the routes still awaiting an outcome)
from theirs. Uncommitted updates died with the connection that carried them, as BOLT 2's
``channel_reestablish`` expects. A seeded (teaching) node draws a new randomness stream on
every start, so nothing it signs is ever drawn twice.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from channel.channel_basics import ChannelConfig
from channel.daemon import DaemonShell
from channel.effects import ChannelHandle, Effects
from channel.errors import StartRefused
from channel.gossip_kv import PEER_UPDATE_KV_PREFIX
from channel.manager import ChannelManager
from channel.payment_attempts import ATTEMPT_KV_PREFIX
from channel.payments import Payments
from channel.seeded import seeded_entropy
from channel.store import NodeStore, holds_state

if TYPE_CHECKING:
    from channel.forwarder import Forwarder
    from channel.node_policy import NodePolicy

__all__ = ["open_store", "restore_manager"]


def open_store(shell: DaemonShell, db_path: Path, *, allow_fresh: bool) -> NodeStore:
    """The node's database; refused (and the home's lock released) when the key exists but
    the database does not: starting fresh would forget every channel of that key."""
    if shell.key_existed and not allow_fresh and not holds_state(db_path):
        shell.release_lock()
        raise StartRefused(
            f"{db_path.parent} has this node's key but no channel database ({db_path.name} "
            f"is missing or empty): starting fresh would forget every channel of the key, "
            f"the same danger as restoring an old backup; put the database back, or pass "
            f"--allow-fresh-db if this key never had a channel")
    try:
        return NodeStore(db_path)
    except StartRefused:
        shell.release_lock()
        raise


def _handles(store: NodeStore) -> list[ChannelHandle]:
    handles = []
    snapshots = store.monitors()
    for row in store.channels():
        # the state machine loads with the first restored channel (idle node RSS)
        from channel.state import channel_from_record, monitor_update_from_record
        chan = channel_from_record(row.record)
        chan.on_disconnect()  # uncommitted updates die with the connection
        raw = store.get(f"funding_tx:{row.key}")
        handle = ChannelHandle(key=row.key, peer_id=bytes.fromhex(row.peer_id), channel=chan,
                               funding_tx=bytes.fromhex(raw) if raw else None)
        scid = store.get(f"scid:{row.key}")
        if scid is not None:
            from channel.gossip import ShortChannelId  # a channel's (idle node RSS)
            handle.short_channel_id = bytes(ShortChannelId.parse(scid))
        if row.key in snapshots:
            from channel.monitor import ChannelMonitor  # with the first channel: idle node RSS
            handle.monitor = ChannelMonitor.from_record(snapshots[row.key])
            updates = store.monitor_updates(row.key)
            handle.monitor.apply_updates(monitor_update_from_record(u) for u in updates)
            handle.monitor_seq = len(updates)
        handles.append(handle)
    return handles


def restore_manager(store: NodeStore, *, node_id: bytes, secret: bytes, config: ChannelConfig,
                    sweep_script: bytes, height: int, seed: bytes | None,
                    policy: NodePolicy | None = None) -> ChannelManager:
    """The manager as the database left it (forwards in flight and the peers' channel_updates
    too); payments whose retry never ran end as failed."""
    entropy: dict[str, Any] = {}
    if seed is not None:
        boot = int(store.get("seed_boot") or 0) + 1  # a restart draws afresh
        store.commit_flight(kv=[("seed_boot", str(boot))])
        entropy = {name: seeded_entropy(seed, f"{name}/{boot}")
                   for name in ("channels", "payments")}
    payments = Payments(node_id=node_id, node_secret=secret, rows=store.payments(),
                        holds=store.kv_with_prefix("hold:"),
                        outgoing=store.kv_with_prefix(ATTEMPT_KV_PREFIX),
                        **({"entropy": entropy["payments"]} if entropy else {}))
    forward_rows = store.forwards()

    def make_forwarder() -> Forwarder:
        # (idle node RSS, see tests/integration/test_idle_footprint.py)
        from channel.forwarder import Forwarder, ForwardLink
        return Forwarder(node_secret=secret, policy=policy,
                         links=[ForwardLink.from_record(r) for r in forward_rows])

    # the forwarder, the payer and the graph load with their first need: here only if the
    # database has something for them (forwards in flight, peers' updates, payments retrying)
    manager = ChannelManager(node_id=node_id, config=config, sweep_script=sweep_script,
                             payments=payments, handles=_handles(store),
                             forwarder=make_forwarder() if forward_rows else None,
                             make_forwarder=make_forwarder,
                             **({"entropy": entropy["channels"]} if entropy else {}))
    peer_updates = store.kv_with_prefix(PEER_UPDATE_KV_PREFIX)
    if peer_updates:
        manager.gossip.restore(manager.graph, manager.handles.values(), peer_updates.values())
    manager.height = height
    stopped = Effects()   # payments whose next route was never tried: say so, not hang
    if payments.outgoing:
        manager.payer.end_interrupted_retries(stopped)
    store.commit_flight(payments=stopped.payments, kv=stopped.kv)
    return manager
