"""What an idle node loads of the channel code is the state machine's own vocabulary.

``channel.channel_basics`` holds ChannelState and ChannelConfig so that an idle node need not
load the state machine and the BOLT 2 messages (tests/integration/test_idle_footprint.py);
the manager's BOLT 2 handler table is built on the first message. These tests prove the light
names are the state machine's very objects and the table built late is the one the manager
had: one handler per BOLT 2 message, each the manager's ``_on_<message name>``.
"""

from __future__ import annotations

from channel import channel_basics, channel_core, channel_params, state, validation
from channel.manager import ChannelManager, _message_handlers
from channel.messages import BOLT2_MESSAGES


def test_light_names_are_the_state_machines_objects() -> None:
    """state, channel_core, channel_params and validation re-export channel_basics' objects
    (an ``is`` comparison of a state from either module holds)."""
    assert state.ChannelState is channel_basics.ChannelState
    assert channel_core.ChannelState is channel_basics.ChannelState
    assert state.ChannelConfig is channel_basics.ChannelConfig
    assert channel_params.ChannelConfig is channel_basics.ChannelConfig
    assert validation.MAX_HTLC_COUNT == channel_params.MAX_HTLC_COUNT == 483
    assert channel_basics.ChannelConfig().max_accepted_htlcs == 483
    assert channel_basics.ChannelConfig(channel_reserve_sat=None).reserve_for(100_000) == 1_000
    assert channel_basics.ChannelConfig().reserve_for(20_000) == 546


def test_handler_table_built_on_first_use_has_one_handler_per_bolt2_message() -> None:
    """The handler table maps exactly the 15 BOLT 2 message classes, each to the manager's
    ``_on_<name>`` method, and is the same dict on every later call (built once)."""
    table = _message_handlers()
    assert set(table) == set(BOLT2_MESSAGES.values())
    assert len(table) == 15
    for cls in BOLT2_MESSAGES.values():
        assert table[cls] is getattr(ChannelManager, f"_on_{cls.NAME}"), cls.NAME
    assert _message_handlers() is table
