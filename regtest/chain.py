"""I/O: ``channel.chain.ChainBackend`` on a bitcoind: wallet funding, broadcast, block/mempool feed.

New blocks and mempool transactions arrive through bitcoind's ZMQ ``rawblock``/``rawtx``
publishers when given; a poll every ``poll_interval_s`` backs them up (ZMQ drops messages
when a subscriber is slow, and a node restart loses the socket), so no block is ever skipped:
blocks are always delivered by height, fetched over RPC, from the last one seen.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import bitcoin
from bitcoin.core import CBlock, CScript, CTransaction

from channel.chain import BackendHealth, BlockEvent, FundingTransaction, TxEvent
from regtest.errors import RegtestError, RpcUnreachable, SetupError
from regtest.password_file import read_password_file
from regtest.rpc import JSON, AsyncRpc, Rpc, RpcAuth, RpcError
from regtest.rpc_types import btc_to_sat, sat_to_btc

__all__ = ["BitcoindChain", "BitcoindEndpoint", "address_of", "use_chain_params"]

log = logging.getLogger("chanlab.chain")


@dataclass(frozen=True, slots=True, kw_only=True)
class BitcoindEndpoint:
    """How to reach a bitcoind: RPC URL, credentials, optional ZMQ publishers.

    Credentials are a cookie file, or a user plus a password *file* (mode 0600, read when a
    client is built; the password itself is never stored here): ``rpc_user`` and
    ``rpc_password_file`` win over ``cookie_path`` when set.
    """

    rpc_url: str
    cookie_path: Path | None = None
    zmq_rawblock: str | None = None
    zmq_rawtx: str | None = None
    rpc_user: str | None = None
    rpc_password_file: Path | None = None

    def rpc_auth(self) -> RpcAuth:
        """The credentials for ``Rpc``/``AsyncRpc``: a (user, password) pair or the cookie."""
        if self.rpc_user is not None and self.rpc_password_file is not None:
            return (self.rpc_user, read_password_file(self.rpc_password_file))
        if self.cookie_path is None:
            raise SetupError(f"bitcoind endpoint {self.rpc_url} has no credentials: run "
                             "`chanlab bitcoind attach` again with --cookie or --rpc-user")
        return self.cookie_path

    def rpc(self, *, timeout_s: float = 60.0) -> Rpc:
        """A blocking RPC client of this bitcoind (the caller closes it, or uses ``with``)."""
        return Rpc(self.rpc_url, auth=self.rpc_auth(), timeout_s=timeout_s)

    def to_json(self) -> dict[str, str | None]:
        def text(path: Path | None) -> str | None:
            return None if path is None else str(path)
        return {"rpc_url": self.rpc_url, "cookie_path": text(self.cookie_path),
                "zmq_rawblock": self.zmq_rawblock, "zmq_rawtx": self.zmq_rawtx,
                "rpc_user": self.rpc_user, "rpc_password_file": text(self.rpc_password_file)}

    @classmethod
    def from_json(cls, data: dict[str, str | None]) -> BitcoindEndpoint:
        def path(key: str) -> Path | None:
            value = data.get(key)
            return None if value is None else Path(value)
        return cls(rpc_url=str(data["rpc_url"]), cookie_path=path("cookie_path"),
                   zmq_rawblock=data.get("zmq_rawblock"), zmq_rawtx=data.get("zmq_rawtx"),
                   rpc_user=data.get("rpc_user"), rpc_password_file=path("rpc_password_file"))


# bitcoind's chain name -> python-bitcoinlib's name and parameter class
_CHAIN_PARAMS: dict[str, tuple[str, type[bitcoin.core.CoreChainParams]]] = {
    "main": ("mainnet", bitcoin.MainParams), "test": ("testnet", bitcoin.TestNetParams),
    "signet": ("signet", bitcoin.SigNetParams), "regtest": ("regtest", bitcoin.RegTestParams)}
_chosen_chain: str | None = None


def use_chain_params(chain: str) -> None:
    """Choose python-bitcoinlib's (process-global) chain parameters, once per process.

    The first call selects them (unless they are selected already, as the CLI and the tests do
    at start); later calls for the same chain do nothing, and another chain is refused: one
    process addresses one chain, and rebinding the globals under running code is unsafe.
    """
    global _chosen_chain
    if _chosen_chain == chain:
        return
    if _chosen_chain is not None:
        raise RegtestError(f"this process already uses {_chosen_chain} addresses, not {chain}: "
                           "run one process per chain")
    if chain not in _CHAIN_PARAMS:
        raise RegtestError(f"unknown chain {chain!r}: expected one of {sorted(_CHAIN_PARAMS)}")
    name, params = _CHAIN_PARAMS[chain]
    if type(bitcoin.params) is not params:
        bitcoin.SelectParams(name)
    _chosen_chain = chain


def address_of(script_pubkey: bytes, chain: str) -> str:
    """The address bitcoind's wallet RPCs want for ``script_pubkey``."""
    from bitcoin.wallet import CBitcoinAddress  # its key module loads libssl: ~2 MB resident
    use_chain_params(chain)
    return str(CBitcoinAddress.from_scriptPubKey(CScript(script_pubkey)))


def _hex_field(result: JSON) -> str:
    """The ``hex`` member of an RPC result object."""
    if not isinstance(result, dict) or not isinstance(result.get("hex"), str):
        raise RpcError.from_code(-1, f"expected an object with 'hex', got {result!r}")
    return str(result["hex"])


class BitcoindChain:
    """One node's view of bitcoind: its wallet ``wallet`` plus the chain and mempool."""

    def __init__(self, endpoint: BitcoindEndpoint, *, wallet: str, chain: str = "regtest",
                 poll_interval_s: float | None = None, seed: bytes | None = None) -> None:
        auth: RpcAuth = endpoint.rpc_auth()
        self._seed = seed    # a seeded run: wallet keys from the seed, no random choices
        self._endpoint = endpoint
        self._rpc = AsyncRpc(endpoint.rpc_url, auth=auth, timeout_s=5)
        self._wallet = self._rpc.wallet(wallet)
        self._wallet_name = wallet
        self._chain = chain
        # With ZMQ, polling is only the safety net (ZMQ drops messages under load and loses
        # its socket when bitcoind restarts); without it, polling is the feed.
        has_zmq = bool(endpoint.zmq_rawtx or endpoint.zmq_rawblock)
        self._poll_interval_s = poll_interval_s if poll_interval_s is not None else (
            0.5 if has_zmq else 0.05)

    @property
    def chain(self) -> str:
        return self._chain

    async def ensure_wallet(self) -> None:
        """Learn which chain bitcoind runs, and load the node's wallet (created on first use)."""
        self._chain = (await self._rpc.getblockchaininfo()).chain
        names = await self._rpc.listwallets()
        if self._wallet_name in names:
            return
        try:
            await self._rpc.loadwallet(self._wallet_name)
        except RpcError:
            if self._seed is not None:
                from regtest.seeded_wallet import create_seeded_wallet_async
                await create_seeded_wallet_async(self._rpc, self._wallet_name, self._seed)
            else:
                await self._rpc.createwallet(self._wallet_name)

    async def height(self) -> int:
        return await self._rpc.getblockcount()

    async def block_at(self, height: int) -> BlockEvent:
        block_hash = await self._rpc.getblockhash(height)
        raw = await self._rpc.getblock(block_hash)
        block = CBlock.deserialize(raw)
        return BlockEvent(height=height, block_hash=block_hash,
                          transactions=tuple(tx.serialize() for tx in block.vtx),
                          header_time=block.nTime)

    async def mempool_transactions(self) -> list[bytes]:
        out = []
        for txid in await self._rpc.getrawmempool():
            with contextlib.suppress(RpcError):
                out.append(await self._rpc.getrawtransaction(txid))
        return out

    async def events(self, from_height: int | None = None,
                     ) -> AsyncIterator[BlockEvent | TxEvent | BackendHealth]:
        seen: dict[int, str] = {}
        tip_height = await self.height()
        if from_height is not None:
            tip_height = max(0, min(from_height, tip_height))
        seen[tip_height] = await self._rpc.getblockhash(tip_height)
        seen_mempool: set[str] = set()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        zmq_task = None
        outage = False  # bitcoind was down: reload our wallet once it answers again
        failing = False  # the last poll failed (told to the caller as BackendHealth)
        last_uptime = 0
        last_cookie = self._cookie_stamp()
        if self._endpoint.zmq_rawtx or self._endpoint.zmq_rawblock:
            zmq_task = asyncio.ensure_future(self._zmq_listen(queue))
        try:
            while True:
                try:
                    raw = await asyncio.wait_for(queue.get(), self._poll_interval_s)
                except TimeoutError:
                    raw = None
                if raw is not None:
                    tx = CTransaction.deserialize(raw)
                    txid = tx.GetTxid()[::-1].hex()
                    if txid not in seen_mempool:
                        seen_mempool.add(txid)
                        yield TxEvent(raw_tx=raw)
                    continue
                try:
                    # a restart between two polls leaves no failed call behind: notice it by
                    # the new cookie every bitcoind start writes (or its uptime going back)
                    cookie = self._cookie_stamp()
                    uptime = await self._rpc.uptime()
                    if uptime < last_uptime or cookie != last_cookie:
                        outage = True
                    last_uptime, last_cookie = uptime, cookie
                    if outage:
                        await self.ensure_wallet()  # a restarted bitcoind loads no wallet
                        outage = False
                        # It may also have lost its mempool, or reorganised while we could
                        # not look: replay the tip, so the caller re-checks and re-sends.
                        tip_height = max(0, tip_height - 1)
                    tip = await self._rpc.getbestblockhash()
                    if seen.get(tip_height) != tip:
                        height = await self.height()
                        # walk back to the fork point, then replay every block after it
                        # (monitors are idempotent, so a replay is harmless)
                        fork = min(height, tip_height)
                        while fork > 0 and fork in seen and \
                                seen[fork] != await self._rpc.getblockhash(fork):
                            fork -= 1
                        for h in range(fork + 1, height + 1):
                            event = await self.block_at(h)
                            seen[h] = event.block_hash
                            yield event
                        for h in [h for h in seen if h > height or h < height - 100]:
                            del seen[h]
                        seen[height] = tip
                        tip_height = height
                        seen_mempool.clear()
                    for txid in await self._rpc.getrawmempool():
                        if txid not in seen_mempool:
                            seen_mempool.add(txid)
                            with contextlib.suppress(RpcError):
                                yield TxEvent(raw_tx=await self._rpc.getrawtransaction(txid))
                    if failing:
                        failing = False
                        yield BackendHealth(reachable=True)
                except RpcError as exc:
                    log.info("chain poll failed (%s); retrying", exc)
                    outage = failing = True  # e.g. -28, still warming up after a restart
                    yield BackendHealth(reachable=False, error=str(exc))
                    await asyncio.sleep(0.5)
                except (OSError, RpcUnreachable) as exc:
                    log.info("bitcoind unreachable (%s); retrying", exc)
                    outage = failing = True
                    yield BackendHealth(reachable=False, error=str(exc))
                    await asyncio.sleep(0.5)
        finally:
            if zmq_task is not None:
                zmq_task.cancel()
                # Wait until it has stopped: its CancelledError (or a late error of its own) is
                # returned, not raised, while a cancellation of this generator still propagates.
                await asyncio.gather(zmq_task, return_exceptions=True)

    def _cookie_stamp(self) -> int:
        if self._endpoint.cookie_path is None:
            return 0  # user/password auth: a restart shows in uptime alone
        try:
            return self._endpoint.cookie_path.stat().st_mtime_ns
        except OSError:
            return 0

    async def _zmq_listen(self, queue: asyncio.Queue[bytes | None]) -> None:
        import zmq
        import zmq.asyncio
        ctx = zmq.asyncio.Context.instance()
        sock = ctx.socket(zmq.SUB)
        try:
            if self._endpoint.zmq_rawtx:
                sock.connect(self._endpoint.zmq_rawtx)
                sock.setsockopt(zmq.SUBSCRIBE, b"rawtx")
            if self._endpoint.zmq_rawblock:
                sock.connect(self._endpoint.zmq_rawblock)
                sock.setsockopt(zmq.SUBSCRIBE, b"rawblock")
            while True:
                parts = await sock.recv_multipart()
                if len(parts) >= 2 and parts[0] == b"rawtx":
                    queue.put_nowait(parts[1])
                elif parts and parts[0] == b"rawblock":
                    # a new block: wake the poll now; blocks are always read over RPC, by
                    # height, so a dropped ZMQ message never skips one
                    queue.put_nowait(None)
        finally:
            sock.close(linger=0)

    async def broadcast(self, raw_tx: bytes) -> str:
        return await self._rpc.sendrawtransaction(raw_tx)

    async def scid_output(self, height: int, tx_index: int,
                          output_index: int) -> tuple[str, bytes, int] | None:
        """BOLT 7 gossip: the output a short_channel_id names, ``(txid, script_pubkey,
        amount_sat)``, if it exists and is unspent (``channel.gossip_io.ScidLookup``)."""
        if height > await self._rpc.getblockcount():
            return None
        block = await self._rpc.getblock_verbose(await self._rpc.getblockhash(height))
        txids = block.get("tx")
        if not isinstance(txids, list) or tx_index >= len(txids):
            return None
        txid = str(txids[tx_index])
        out = await self._rpc.gettxout(txid, output_index, include_mempool=False)
        return None if out is None else (txid, out.script_pubkey, out.value_sat)

    async def confirmations(self, txid_hex: str) -> int:
        try:
            info = await self._rpc.getrawtransaction_verbose(txid_hex)
        except RpcError:
            return 0
        value = info.get("confirmations", 0)
        return int(value) if isinstance(value, int | float) else 0

    async def fund_output(self, script_pubkey: bytes, amount_sat: int,
                          feerate_sat_per_vb: int) -> FundingTransaction:
        address = address_of(script_pubkey, self._chain)
        if self._seed is not None:
            psbt = await self._seeded_psbt(address, amount_sat, feerate_sat_per_vb)
        else:
            psbt = (await self._wallet.walletcreatefundedpsbt(
                {address: amount_sat}, fee_rate_sat_per_vb=feerate_sat_per_vb)).psbt
        processed = await self._wallet.walletprocesspsbt(psbt)
        if not processed.complete or processed.raw is None:
            raise RpcError.from_code(-4, "wallet could not sign the funding PSBT",
                                     method="walletprocesspsbt")
        tx = CTransaction.deserialize(processed.raw)
        vout = next(i for i, out in enumerate(tx.vout)
                    if bytes(out.scriptPubKey) == script_pubkey and out.nValue == amount_sat)
        return FundingTransaction(raw_tx=processed.raw, txid=bytes(tx.GetTxid()), vout=vout)

    async def _seeded_psbt(self, address: str, amount_sat: int, feerate_sat_per_vb: int) -> str:
        """A funding PSBT without bitcoind's random choices (a seeded run repeats exactly):
        the largest confirmed coin first, change at output 1, nLockTime 0."""
        listed = await self._wallet.call("listunspent", 1)
        coins = [c for c in listed if isinstance(c, dict)] if isinstance(listed, list) else []
        if not coins:
            raise RpcError.from_code(-6, "no confirmed coins to fund the channel with",
                                     method="listunspent")
        best = max(coins, key=lambda c: (btc_to_sat(str(c["amount"])), str(c["txid"]),
                                         str(c["vout"])))
        inputs: list[JSON] = [{"txid": best["txid"], "vout": best["vout"]}]
        outputs: list[JSON] = [{address: sat_to_btc(amount_sat)}]
        options: dict[str, JSON] = {"add_inputs": True, "changePosition": 1,
                                    "fee_rate": feerate_sat_per_vb, "lockUnspents": True}
        funded = await self._wallet.call("walletcreatefundedpsbt", inputs, outputs, 0, options)
        assert isinstance(funded, dict)
        return str(funded["psbt"])

    async def add_fee_inputs(self, raw_tx: bytes, *, external_input_weight: int,
                             feerate_sat_per_vb: int) -> bytes:
        base = CTransaction.deserialize(raw_tx)
        if len(base.vin) != 1:
            raise RpcError.from_code(-8, f"add_fee_inputs wants one external input, got "
                                     f"{len(base.vin)}", method="fundrawtransaction")
        prevout = base.vin[0].prevout
        # the wallet cannot size an input it has no script for: tell it the final weight
        options: dict[str, JSON] = {
            "add_inputs": True, "changePosition": len(base.vout),
            "fee_rate": feerate_sat_per_vb, "lockUnspents": False,
            "input_weights": [{"txid": prevout.hash[::-1].hex(), "vout": prevout.n,
                               "weight": external_input_weight}]}
        bare = CTransaction(base.vin, base.vout, base.nLockTime, base.nVersion)
        funded = await self._wallet.call("fundrawtransaction", bare.serialize().hex(), options)
        # input 0 stays unsigned, so ``complete`` is false: that is expected
        signed = await self._wallet.call("signrawtransactionwithwallet", _hex_field(funded))
        raw = bytes.fromhex(_hex_field(signed))
        tx = CTransaction.deserialize(raw)
        # bitcoind keeps preselected inputs first and places change where asked; check it,
        # since the countersignatory's signature is only valid over these fields
        if tx.vin[0].prevout != prevout or tx.vin[0].nSequence != base.vin[0].nSequence or \
                tx.vout[0] != base.vout[0] or tx.nLockTime != base.nLockTime or \
                tx.nVersion != base.nVersion:
            raise RpcError.from_code(-4, "fundrawtransaction moved input 0 / output 0 or "
                                     "changed nLockTime/nVersion", method="fundrawtransaction")
        return raw

    async def release_inputs(self, raw_tx: bytes) -> None:
        tx = CTransaction.deserialize(raw_tx)
        await self._wallet.lockunspent(True, [(i.prevout.hash[::-1].hex(), i.prevout.n)
                                              for i in tx.vin])

    async def new_script_pubkey(self) -> bytes:
        address = await self._wallet.getnewaddress(address_type="bech32")
        info = await self._wallet.getaddressinfo(address)
        return bytes.fromhex(str(info["scriptPubKey"]))

    async def wallet_balance_sat(self) -> int:
        balances = await self._wallet.getbalances()
        return balances.trusted_sat + balances.untrusted_pending_sat

    async def aclose(self) -> None:
        await self._rpc.aclose()
