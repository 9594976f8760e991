"""The watchtower: justice kits, encryption by breach txid, client authentication, breach matrix.

The tower alone punishes: it only ever sees encrypted blobs and then the breach transaction.
Every justice transaction it returns is executed by :mod:`segwit_check` and its amounts are
checked to the satoshi against the revoked commitment.
"""

from __future__ import annotations

import hashlib

import pytest
from bitcoin.core import COutPoint, CTransaction, CTxIn, CTxOut
from bitcoin.core.script import CScript
from chanpair import (
    BOB_DEST,
    CLTV,
    FUNDING_SAT,
    SWEEP_FEERATE,
    Pair,
    breach,
    cheater_second_stage,
)
from segwit_check import lock_satisfied, verify_spends

from channel.errors import InvalidSignature, MalformedMessage, PeerProtocolError
from channel.keys import PrivateKey
from channel.monitor import ChannelMonitor
from channel.state import ForceCloseTransactions
from channel.tower import (
    HINT_BYTES,
    JusticeKit,
    MemoryTowerStore,
    SignedUpload,
    TowerClient,
    Watchtower,
    build_justice_kit,
    decrypt_blob,
    encrypt_blob,
    hint_for,
    justice_kit_for_state,
    scan_raw_transaction,
)
from channel.transactions import ANCHOR_OUTPUT_SAT
from channel.types import CommitmentFormat, HtlcDirection

FORMATS = list(CommitmentFormat)
CLIENT = TowerClient(PrivateKey(b"\x21" * 32))
STRANGER = TowerClient(PrivateKey(b"\x22" * 32))


def _tower() -> Watchtower:
    tower = Watchtower(MemoryTowerStore())
    tower.register_client(CLIENT.pubkey)
    return tower


def _upload_all(tower: Watchtower, monitor: ChannelMonitor) -> int:
    """What a node does after each revocation, done here for every revoked state at once."""
    total = 0
    for number in monitor.revoked_commitment_numbers:
        txid, kit = justice_kit_for_state(monitor, number)
        upload = CLIENT.upload_kit(kit, txid)
        assert tower.accept(upload) is True
        total += len(upload.hint) + len(upload.blob)
    return total


def _anchors_sat(fmt: CommitmentFormat) -> int:
    return 2 * ANCHOR_OUTPUT_SAT if fmt is CommitmentFormat.ANCHORS else 0


# ---------------------------------------------------------------------------------------------
# Breach matrix, tower alone


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(("offered", "received"),
                         [(False, False), (True, False), (False, True), (True, True)],
                         ids=["no-htlc", "offered", "received", "both"])
def test_tower_alone_punishes_revoked_commitment(fmt: CommitmentFormat, offered: bool,
                                                 received: bool) -> None:
    """From the breach tx alone the tower builds one valid justice tx per revocable output; the
    victim ends with the whole channel minus the commitment fee, anchors and justice fees."""
    p, old = breach(fmt, offered=offered, received=received)
    tower = _tower()
    _upload_all(tower, p.bob_monitor)
    c = old.commitment
    justice = tower.on_raw_transaction(old.commitment_tx.serialize())
    assert sorted(j.spends.vout for j in justice) == \
        sorted([c.to_local_vout or 0, *(o.vout for o in c.htlc_outputs)])
    for j in justice:
        verify_spends(j.tx, {c.txid: old.commitment_tx})
        assert lock_satisfied(j.tx, tip_height=0, parent_heights={c.txid: None})
        assert j.breach_txid == c.txid
        assert j.client_pubkey == CLIENT.pubkey
        assert bytes(j.tx.vout[0].scriptPubKey) == BOB_DEST
        assert j.amount_sat + j.fee_sat == int(c.tx.vout[j.spends.vout].nValue)
        assert j.fee_sat == SWEEP_FEERATE * _max_weight(j.tx) // 1000
    victim = sum(j.amount_sat for j in justice) + c.to_remote_amount_sat
    assert victim == FUNDING_SAT - c.fee_sat - _anchors_sat(fmt) - \
        sum(j.fee_sat for j in justice)
    assert tower.on_transaction(old.commitment_tx) == justice


def _max_weight(tx: CTransaction) -> int:
    """The weight of ``tx`` had its signature been 73 bytes (what the fee is computed on)."""
    sig = bytes(tx.wit.vtxinwit[0].scriptWitness.stack[0])
    return int(tx.calc_weight()) + (73 - len(sig))


@pytest.mark.parametrize("direction", list(HtlcDirection))
def test_tower_penalises_cheaters_second_stage_output(direction: HtlcDirection) -> None:
    """Without anchors the cheater's HTLC-timeout/-success txid is fixed, so the tower's kit
    covers its output: the tower answers that tx with a valid penalty on its output."""
    p = Pair(CommitmentFormat.STATIC_REMOTEKEY)
    p.pay(p.alice, 300_000_000, "warm-up")
    p.add(p.alice, 50_000_000, "offered")
    p.add(p.bob, 40_000_000, "received")
    p.fulfill(p.alice, "received", commit=False)
    old = p.snapshot(p.alice)
    p.flush()
    p.fulfill(p.bob, "offered")
    tower = _tower()
    _upload_all(tower, p.bob_monitor)
    second = cheater_second_stage(p, old, direction)
    (justice,) = tower.on_raw_transaction(second.serialize())
    verify_spends(justice.tx, {bytes(second.GetTxid()): second})
    assert justice.breach_txid == old.commitment.txid
    assert justice.amount_sat + justice.fee_sat == int(second.vout[0].nValue)
    assert lock_satisfied(justice.tx, tip_height=CLTV,
                          parent_heights={bytes(second.GetTxid()): None})
    # the commitment's own justice txs still cover the other outputs
    first = tower.on_raw_transaction(old.commitment_tx.serialize())
    assert len(first) == 3


def test_tower_cannot_presign_for_anchors_second_stage() -> None:
    """With anchors the cheater's fee-bumped HTLC tx has an unforeseeable txid: the tower
    returns nothing for it (the node's monitor handles it), and the kit carries no such sigs."""
    p = Pair(CommitmentFormat.ANCHORS)
    p.pay(p.alice, 300_000_000, "warm-up")
    p.add(p.alice, 50_000_000, "offered")
    old = p.snapshot(p.alice)
    p.fulfill(p.bob, "offered")
    tower = _tower()
    _upload_all(tower, p.bob_monitor)
    _, kit = justice_kit_for_state(p.bob_monitor, old.commitment.commitment_number)
    assert [h.second_stage_signature for h in kit.htlcs] == [None]
    second = cheater_second_stage(p, old, HtlcDirection.OFFERED)
    assert tower.on_raw_transaction(second.serialize()) == []


# ---------------------------------------------------------------------------------------------
# Privacy and encryption


def _kit_and_old(fmt: CommitmentFormat = CommitmentFormat.STATIC_REMOTEKEY
                 ) -> tuple[Pair, ForceCloseTransactions, JusticeKit]:
    p, old = breach(fmt, offered=False, received=False)
    txid, kit = justice_kit_for_state(p.bob_monitor, old.commitment.commitment_number)
    assert txid == old.commitment.txid
    return p, old, kit


def test_blob_opens_only_with_the_breach_txid() -> None:
    """The blob decrypts under SHA256(breach txid) only; another txid or a flipped bit fails."""
    _, old, kit = _kit_and_old()
    txid = old.commitment.txid
    hint, blob = kit.encrypt(txid)
    assert hint == txid[:HINT_BYTES]
    assert decrypt_blob(blob, txid) == kit.to_bytes()
    assert decrypt_blob(blob, hashlib.sha256(b"other").digest()) is None
    wrong_half = txid[:HINT_BYTES] + bytes(32 - HINT_BYTES)   # knowing the hint is not enough
    assert decrypt_blob(blob, wrong_half) is None
    tampered = bytearray(blob)
    tampered[10] ^= 1
    assert decrypt_blob(bytes(tampered), txid) is None
    assert kit.to_bytes() not in blob
    assert encrypt_blob(kit.to_bytes(), txid) == blob    # deterministic: re-uploads are equal


def test_tampered_stored_blob_yields_no_justice() -> None:
    """A blob altered in the tower's store is ignored at breach time (Poly1305 tag fails)."""
    _, old, kit = _kit_and_old()
    txid = old.commitment.txid
    store = MemoryTowerStore()
    tower = Watchtower(store)
    tower.register_client(CLIENT.pubkey)
    hint, blob = kit.encrypt(txid)
    store.put_blob(CLIENT.pubkey, hint, blob[:-1] + bytes((blob[-1] ^ 1,)))
    assert tower.on_transaction(old.commitment_tx) == []


def test_unrelated_transactions_match_nothing() -> None:
    """A tx that is no stored breach (nor spends one) gets no answer."""
    p, _, _ = _kit_and_old()
    tower = _tower()
    _upload_all(tower, p.bob_monitor)
    current = p.snapshot(p.alice).commitment_tx   # Alice's *current* commitment: not a breach
    assert tower.on_raw_transaction(current.serialize()) == []
    unrelated = CTransaction([CTxIn(COutPoint(b"\x01" * 32, 0), CScript(), 0)],
                             [CTxOut(5000, CScript(BOB_DEST))], 0, 2)
    assert tower.on_raw_transaction(unrelated.serialize()) == []


# ---------------------------------------------------------------------------------------------
# Authentication


def test_unregistered_client_is_refused() -> None:
    """An upload from a key the operator did not register is a PeerProtocolError."""
    _, old, kit = _kit_and_old()
    tower = _tower()
    with pytest.raises(PeerProtocolError, match="unknown client"):
        tower.accept(STRANGER.upload_kit(kit, old.commitment.txid))
    assert tower.store.count_blobs() == 0


def test_bad_signature_is_refused() -> None:
    """An upload signed by another key, or altered after signing, fails InvalidSignature."""
    _, old, kit = _kit_and_old()
    tower = _tower()
    good = CLIENT.upload_kit(kit, old.commitment.txid)
    forged = STRANGER.upload_kit(kit, old.commitment.txid)
    impersonation = SignedUpload(client_pubkey=CLIENT.pubkey, hint=good.hint, blob=good.blob,
                                 signature=forged.signature)
    with pytest.raises(InvalidSignature):
        tower.accept(impersonation)
    altered = SignedUpload(client_pubkey=CLIENT.pubkey, hint=good.hint,
                           blob=good.blob[:-1] + b"\x00", signature=good.signature)
    with pytest.raises(InvalidSignature):
        tower.accept(altered)
    other_hint = SignedUpload(client_pubkey=CLIENT.pubkey, hint=bytes(16), blob=good.blob,
                              signature=good.signature)
    with pytest.raises(InvalidSignature):
        tower.accept(other_hint)
    assert tower.store.count_blobs() == 0
    assert tower.accept(good) is True


def test_duplicate_and_conflicting_uploads() -> None:
    """The same upload twice is stored once; a different blob for a stored state is refused."""
    _, old, kit = _kit_and_old()
    tower = _tower()
    upload = CLIENT.upload_kit(kit, old.commitment.txid)
    assert tower.accept(upload) is True
    assert tower.accept(SignedUpload.from_bytes(upload.to_bytes())) is False
    other = CLIENT.upload(upload.hint, encrypt_blob(b"something else", old.commitment.txid))
    with pytest.raises(PeerProtocolError, match="different blob"):
        tower.accept(other)
    assert tower.store.count_blobs() == 1


def test_size_limits_and_bad_keys_are_refused() -> None:
    """Oversize blobs, short hints, malformed wire uploads and invalid client keys fail."""
    tower = Watchtower(MemoryTowerStore(), max_blob_bytes=1000)
    tower.register_client(CLIENT.pubkey)
    with pytest.raises(PeerProtocolError, match="blob size"):
        tower.accept(CLIENT.upload(bytes(16), bytes(1001)))
    with pytest.raises(PeerProtocolError, match="hint"):
        tower.accept(CLIENT.upload(bytes(15), bytes(100)))
    with pytest.raises(MalformedMessage):
        SignedUpload.from_bytes(bytes(120))
    with pytest.raises(ValueError, match="point"):
        tower.register_client(b"\x02" + b"\xff" * 32)


# ---------------------------------------------------------------------------------------------
# The kit


def test_justice_kit_sizes_and_roundtrip() -> None:
    """A state without HTLCs is 165 bytes of kit, 197 stored with tag and hint; each HTLC adds
    103 bytes (167 with second-stage signatures) and the HTLC keys 66 once; bytes round-trip."""
    sizes = {}
    for fmt in FORMATS:
        for n in (0, 1, 2):
            p = Pair(fmt)
            p.pay(p.alice, 300_000_000, "w")
            for i in range(n):
                p.add(p.alice, 20_000_000, f"h{i}")
            old = p.snapshot(p.alice)
            p.pay(p.alice, 1_000_000, "next")
            _, kit = justice_kit_for_state(p.bob_monitor, old.commitment.commitment_number)
            data = kit.to_bytes()
            assert JusticeKit.from_bytes(data) == kit
            hint, blob = kit.encrypt(old.commitment.txid)
            sizes[fmt, n] = (len(data), len(hint) + len(blob))
    assert sizes[CommitmentFormat.STATIC_REMOTEKEY, 0] == (165, 197)
    assert sizes[CommitmentFormat.ANCHORS, 0] == (165, 197)
    assert sizes[CommitmentFormat.STATIC_REMOTEKEY, 1][0] == 165 + 66 + 167
    assert sizes[CommitmentFormat.STATIC_REMOTEKEY, 2][0] == 165 + 66 + 2 * 167
    assert sizes[CommitmentFormat.ANCHORS, 2][0] == 165 + 66 + 2 * 103


def test_malformed_kits_are_rejected() -> None:
    """Truncated, extended or unknown-version kits raise MalformedMessage."""
    _, _, kit = _kit_and_old()
    data = kit.to_bytes()
    for bad in (data[:-1], data + b"\x00", b"\x02" + data[1:], data[:5]):
        with pytest.raises(MalformedMessage):
            JusticeKit.from_bytes(bad)


def test_kit_refuses_a_wrong_revocation_key() -> None:
    """build_justice_kit checks the revocation key against the revoked commitment."""
    _, old = breach(CommitmentFormat.STATIC_REMOTEKEY, offered=False, received=False)
    with pytest.raises(ValueError, match="revocation_privkey"):
        build_justice_kit(old.commitment, revocation_privkey=PrivateKey(b"\x01" * 32),
                          destination_script_pubkey=BOB_DEST, feerate_per_kw=1000)


def test_scan_raw_transaction_matches_full_parse() -> None:
    """The fast scanner finds the same txid and prevouts as python-bitcoinlib, with and
    without witness, and refuses garbage."""
    _, old = breach(CommitmentFormat.STATIC_REMOTEKEY, offered=True, received=False)
    txs = [old.commitment_tx, *old.htlc_txs,
           CTransaction([CTxIn(COutPoint(b"\x05" * 32, 3), CScript(b"\x51"), 0)] * 2,
                        [CTxOut(1, CScript(BOB_DEST))], 0, 1)]
    for tx in txs:
        txid, prevouts = scan_raw_transaction(tx.serialize())
        assert txid == bytes(tx.GetTxid())
        assert prevouts == [bytes(i.prevout.hash) for i in tx.vin]
        assert hint_for(txid) == txid[:16]
    with pytest.raises(MalformedMessage):
        scan_raw_transaction(old.commitment_tx.serialize()[:-1])
    with pytest.raises(MalformedMessage):
        scan_raw_transaction(b"\x02\x00\x00\x00")
