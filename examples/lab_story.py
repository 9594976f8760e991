"""A channel's story in a script (or notebook cells), with ``chanlab.Lab``.

I/O: starts a private regtest bitcoind and two chanlab node processes, and removes them all at
the end, also on an error or Ctrl-C. Run it with the Python that has chanlab installed:

    python examples/lab_story.py

Alice opens a channel to Bob, pays him for a coffee, force-closes, and both wallets are checked
against the chain to the satoshi.
"""

from __future__ import annotations

from chanlab import Lab

CHANNEL_SAT = 500_000
COFFEE_MSAT = 25_000_000
WALLET_SAT = 1_000_000


def main() -> None:
    with Lab() as lab:
        alice, bob = lab.nodes("alice", "bob", funds_sat=WALLET_SAT)
        channel = lab.channel(alice, bob, CHANNEL_SAT)
        print(f"channel {channel.channel[:16]}: {channel.funding_sat:,} sat, {channel.state}")

        bob_invoice = bob.invoice(COFFEE_MSAT, description="coffee")
        paid = alice.pay(bob_invoice)
        print(f"Alice paid {COFFEE_MSAT // 1000:,} sat; preimage {paid.payment_preimage}")
        print(f"Alice's side {alice.channel(channel).local_msat:,} msat, "
              f"Bob's side {bob.channel(channel).local_msat:,} msat")

        closing = alice.force_close(channel)
        lab.mine(1)
        commitment = lab.bitcoind.tx(closing.commitment_txid)
        print(f"Alice force-closed: commitment {commitment.txid[:16]}, fee "
              f"{commitment.fee_sat:,} sat; her share waits {closing.to_self_delay} blocks")

        to_remote = commitment.output_paying(COFFEE_MSAT // 1000)
        bob_sweep = lab.wait_for(lambda: lab.bitcoind.spending_tx(commitment.txid,
                                                                 to_remote.vout))
        lab.mine(1)
        bob_has = lab.wait_for(lambda: (b := bob.balance().onchain_sat) > WALLET_SAT and b)
        assert bob_has == WALLET_SAT + to_remote.value_sat - bob_sweep.fee_sat, bob_has
        print(f"Bob's wallet: {bob_has:,} sat = {WALLET_SAT:,} + to_remote "
              f"{to_remote.value_sat:,} - sweep fee {bob_sweep.fee_sat:,}")

        to_local = commitment.output_paying(
            CHANNEL_SAT - COFFEE_MSAT // 1000 - commitment.fee_sat)
        lab.mine(closing.to_self_delay)
        alice_sweep = lab.wait_for(lambda: lab.bitcoind.spending_tx(commitment.txid,
                                                                   to_local.vout))
        lab.mine(1)
        assert channel.funding_txid is not None
        change_sat = WALLET_SAT - CHANNEL_SAT - lab.bitcoind.tx(channel.funding_txid).fee_sat
        alice_has = lab.wait_for(lambda: (b := alice.balance().onchain_sat) > change_sat and b)
        expected = change_sat + to_local.value_sat - alice_sweep.fee_sat
        assert alice_has == expected, (alice_has, expected)
        print(f"Alice's wallet: {alice_has:,} sat = change {change_sat:,} + to_local "
              f"{to_local.value_sat:,} - sweep fee {alice_sweep.fee_sat:,}")
        print("both wallets match the chain to the satoshi")


if __name__ == "__main__":
    main()
