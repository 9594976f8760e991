"""The next commitments' keys are derived ahead (``ChannelCore.warm_next_commitments``): the
memo then holds exactly the keys the next signature and its check use, and a channel that is
not in normal operation is left alone."""

from __future__ import annotations

import hashlib

import pytest
from chanpair import Pair, preimage

from channel.channel_basics import ChannelState
from channel.transactions import _derive_commitment_keys
from channel.types import CommitmentFormat, Side


@pytest.mark.parametrize("fmt", list(CommitmentFormat), ids=lambda f: f.name)
def test_warmed_keys_serve_the_next_signature_and_its_check(fmt: CommitmentFormat) -> None:
    """After warming, Alice signing Bob's next commitment and Bob checking it derive no key,
    and the keys they use are the ones a fresh (unmemoised) derivation gives."""
    p = Pair(fmt)
    p.pay(p.alice, 5_000_000, "first")
    _derive_commitment_keys.cache_clear()
    p.alice.warm_next_commitments()
    p.bob.warm_next_commitments()
    warmed = _derive_commitment_keys.cache_info()
    # each side warms its own next commitment and the peer's: here, in one process, the
    # same two (Alice's next is Bob's "peer's next")
    assert (warmed.currsize, warmed.misses, warmed.hits) == (2, 2, 2)

    p.bob.on_update_add_htlc(p.alice.add_htlc(
        amount_msat=7_000_000, payment_hash=hashlib.sha256(preimage("second")).digest(),
        cltv_expiry=500, onion_routing_packet=bytes(1366)))
    signed = p.alice.sign_commitment()
    p.alice.on_revoke_and_ack(p.bob.on_commitment_signed(signed))
    after = _derive_commitment_keys.cache_info()
    assert after.misses == warmed.misses
    assert after.hits >= warmed.hits + 2

    bob_number = p.bob.holder_commitment_number
    ctx = p.bob._commitment(Side.HOLDER, bob_number)
    fresh = _derive_commitment_keys.__wrapped__(
        p.bob.keys.per_commitment_point(bob_number), p.bob.holder_params.basepoints,
        p.alice.holder_params.basepoints)
    assert ctx.keys == fresh
    p.flush()   # and the exchange completes: the HTLC is on both sides' commitments
    for chan in (p.alice, p.bob):
        assert chan.log is not None
        assert [h.amount_msat for h in chan.log.htlcs_in_commitment(
            Side.HOLDER, chan.holder_commitment_number)] == [7_000_000]


def test_warming_leaves_a_closing_channel_alone() -> None:
    """A channel past normal operation (shutdown sent) derives nothing ahead."""
    p = Pair(CommitmentFormat.STATIC_REMOTEKEY)
    p.alice.shutdown(bytes.fromhex("0014") + bytes(20))
    assert p.alice.state is not ChannelState.NORMAL
    _derive_commitment_keys.cache_clear()
    p.alice.warm_next_commitments()
    assert _derive_commitment_keys.cache_info().currsize == 0
