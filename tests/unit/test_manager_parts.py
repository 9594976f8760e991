"""The manager's payer, forwarder, graph and gossip are made on first use, wired as before.

``channel.manager_parts`` keeps an idle node from building (and importing) the routing,
forwarding and gossip code; these tests prove a part made late is the part made at start:
the same secret, the same policy, the forwarder's failure updates from the local gossip, the
node identity set on the public gossip whenever it is built.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from channel import gossip_local, gossip_public
from channel.forwarder import Forwarder, NodePolicy
from channel.gossip import GOSSIP_MESSAGES, GOSSIP_QUERY_MESSAGES
from channel.gossip_kv import ANNOUNCE_KV_PREFIX, GOSSIP_KV_PREFIX, PEER_UPDATE_KV_PREFIX
from channel.gossip_public import NodeIdentity, PublicGossip
from channel.keys import PrivateKey
from channel.manager import ChannelManager
from channel.messages import BOLT2_MESSAGES, MESSAGE_TYPES
from channel.payments import Payments
from channel.state import ChannelConfig
from channel.wire import BOLT1_MESSAGES

SECRET = hashlib.sha256(b"parts").digest()
NODE_ID = PrivateKey(SECRET).pubkey


def _manager(forwarder: Forwarder | None = None,
             make_forwarder: Callable[[], Forwarder] | None = None) -> ChannelManager:
    return ChannelManager(node_id=NODE_ID, config=ChannelConfig(),
                          sweep_script=b"\x00\x14" + bytes(20),
                          payments=Payments(node_id=NODE_ID, node_secret=SECRET),
                          forwarder=forwarder, make_forwarder=make_forwarder)


def test_a_new_manager_builds_no_part_until_asked() -> None:
    """A manager just made holds no payer, forwarder, graph or gossip; each appears on first
    use, once (the same object on the second use)."""
    m = _manager()
    assert (m._forwarder, m._payer, m._graph, m._gossip, m.public_if_built) == \
        (None, None, None, None, None)
    assert m.graph is m.graph and m.payer is m.payer and m.gossip is m.gossip
    assert m.public is m.public_if_built is m.public


def test_the_forwarder_made_late_is_wired_to_the_local_gossip() -> None:
    """The forwarder's failure updates come from the manager's local gossip, whether the
    forwarder was given, made by the factory or made by default (our node key, default
    policy)."""
    given = Forwarder(node_secret=SECRET, policy=NodePolicy(fee_base_msat=7))
    made: list[Forwarder] = []

    def factory() -> Forwarder:
        made.append(Forwarder(node_secret=SECRET, policy=NodePolicy(fee_base_msat=9)))
        return made[-1]

    with_given = _manager(forwarder=given)
    assert with_given.forwarder is given
    assert given.channel_update == with_given.gossip.failure_update
    with_factory = _manager(make_forwarder=factory)
    assert made == []   # not before the first use
    assert with_factory.forwarder is made[0] and with_factory.forwarder.policy.fee_base_msat == 9
    assert made[0].channel_update == with_factory.gossip.failure_update
    default = _manager()
    assert default.forwarder.policy == NodePolicy()
    assert default.forwarder.channel_update == default.gossip.failure_update


def test_a_public_setup_runs_on_the_public_gossip_once_it_is_built() -> None:
    """``when_public`` sets the node identity on the public gossip when it is built, or at
    once if it already is; a manager never asked for it keeps none."""
    identity = NodeIdentity(alias="alice", rgb_color=b"\x01\x02\x03", addresses=b"")

    def set_identity(public: PublicGossip) -> None:
        public.identity = identity

    late = _manager()
    late.when_public(set_identity)
    assert late.public_if_built is None
    assert late.public.identity == identity
    early = _manager()
    assert early.public.identity is None
    early.when_public(set_identity)
    assert early.public.identity == identity


def test_the_message_table_and_the_gossip_kv_names_are_unchanged() -> None:
    """MESSAGE_TYPES (made on first use) holds BOLT 1, BOLT 2 and BOLT 7 messages by type;
    the gossip kv prefixes read by the node are the gossip modules' own."""
    assert dict(MESSAGE_TYPES) == {**BOLT1_MESSAGES, **BOLT2_MESSAGES, **GOSSIP_MESSAGES,
                                   **GOSSIP_QUERY_MESSAGES}
    assert (ANNOUNCE_KV_PREFIX, GOSSIP_KV_PREFIX, PEER_UPDATE_KV_PREFIX) == \
        ("announce:", "gossip:", "peer_update:")
    assert (gossip_public.ANNOUNCE_KV_PREFIX, gossip_public.GOSSIP_KV_PREFIX,
            gossip_local.PEER_UPDATE_KV_PREFIX) == \
        (ANNOUNCE_KV_PREFIX, GOSSIP_KV_PREFIX, PEER_UPDATE_KV_PREFIX)
