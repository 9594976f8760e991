"""``chanlab node start`` fee flags become the node's forwarding policy (BOLT 7 fields)."""

from __future__ import annotations

import pytest

from channel.forwarder import NodePolicy
from regtest.cli import build_parser
from regtest.commands.node import _policy
from regtest.errors import NodeStartError


def test_defaults_are_1000_msat_1_ppm_40_blocks() -> None:
    """Without flags a node charges 1000 msat + 1 ppm and keeps 40 blocks."""
    args = build_parser(only="node").parse_args(["node", "start", "--name", "bob"])
    assert _policy(args) == NodePolicy(fee_base_msat=1000, fee_proportional_millionths=1,
                                       cltv_expiry_delta=40)


def test_flags_set_each_field() -> None:
    """--fee-base-msat 2000 --fee-proportional-millionths 100 --cltv-expiry-delta 144."""
    args = build_parser(only="node").parse_args(
        ["node", "start", "--name", "bob", "--fee-base-msat", "2000",
         "--fee-proportional-millionths", "100", "--cltv-expiry-delta", "144"])
    assert _policy(args) == NodePolicy(fee_base_msat=2000, fee_proportional_millionths=100,
                                       cltv_expiry_delta=144)


@pytest.mark.parametrize(("flag", "value", "says"), [
    ("--fee-base-msat", "-1", "--fee-base-msat takes a whole number from 0 to 4294967295"),
    ("--fee-proportional-millionths", "4294967296",
     "--fee-proportional-millionths takes a whole number"),
    ("--cltv-expiry-delta", "65536", "--cltv-expiry-delta takes a number of blocks below"),
])
def test_values_a_channel_update_cannot_carry_are_refused(flag: str, value: str,
                                                          says: str) -> None:
    """A fee or delta outside the channel_update's u32/u16 fields stops the start, in one line."""
    args = build_parser(only="node").parse_args(["node", "start", "--name", "bob", flag, value])
    with pytest.raises(NodeStartError, match=says):
        _policy(args)
