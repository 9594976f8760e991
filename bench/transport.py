"""I/O: benchmark of the BOLT 8 transport over loopback: handshakes/s and messages/s.

Run from the repository root: ``python -m bench.transport`` (``--quick`` for a short run).

A responder runs in a separate process (``python -m bench.transport --serve``), so the two
ends do not share one interpreter's CPU, exactly as two chanlab nodes would not. The
dialer measures, each with ``time.perf_counter``:

1. handshakes/s: sequential ``connect()`` calls (TCP connect + acts one, two, three), each
   complete when the responder's first encrypted message arrives (so both sides have
   finished), then ``close()``;
2. one-way messages/s: ``send()`` (one write + drain each) of N messages back to back,
   timed until the responder, having decrypted all N, answers a final "report" message
   with its count;
3. round trips/s: lock-step ``ping``/``pong`` (BOLT 1 messages, encoded and decoded);
4. for scale, the same encryption + decryption in memory, without sockets.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path

import coincurve

from channel.messages import decode_message, encode_message
from channel.noise import InitiatorHandshake, NoiseSession, ResponderHandshake
from channel.transport import Transport, connect, serve
from channel.wire import Ping, Pong, UnknownMessage, pong_for

SERVER_SECRET = b"\x21" * 32
CLIENT_SECRET = b"\x11" * 32
SERVER_PUB = coincurve.PrivateKey(SERVER_SECRET).public_key.format(compressed=True)
HOST = "127.0.0.1"
BULK_TYPE = 0xFFF1  # odd custom types: a real node would ignore them
REPORT_TYPE = 0xFFF3
GREETING = encode_message(UnknownMessage(type=0xFFF5, payload=b"ready"))


async def _responder() -> None:
    async def on_connection(transport: Transport) -> None:
        await transport.send(GREETING)
        received = 0
        while True:
            try:
                data = await transport.recv()
            except EOFError:
                return
            msg_type = int.from_bytes(data[:2], "big")
            if msg_type == BULK_TYPE:
                received += 1
            elif msg_type == Ping.TYPE:
                ping = decode_message(data)
                pong = pong_for(ping) if isinstance(ping, Ping) else None
                if pong is not None:
                    await transport.send(encode_message(pong))
            elif msg_type == REPORT_TYPE:
                await transport.send(encode_message(
                    UnknownMessage(type=REPORT_TYPE, payload=received.to_bytes(8, "big"))))
                received = 0

    server = await serve(HOST, 0, local_static=SERVER_SECRET, on_connection=on_connection)
    print(server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()


async def _dial(port: int) -> Transport:
    transport = await connect(HOST, port, local_static=CLIENT_SECRET,
                              remote_static_pubkey=SERVER_PUB)
    if await transport.recv() != GREETING:
        raise RuntimeError("unexpected greeting")
    return transport


async def bench_handshakes(port: int, count: int) -> float:
    started = time.perf_counter()
    for _ in range(count):
        transport = await _dial(port)
        await transport.close()
    return count / (time.perf_counter() - started)


async def bench_one_way(port: int, count: int, size: int) -> float:
    transport = await _dial(port)
    message = encode_message(UnknownMessage(type=BULK_TYPE, payload=bytes(size - 2)))
    report = encode_message(UnknownMessage(type=REPORT_TYPE, payload=b""))
    started = time.perf_counter()
    for _ in range(count):
        await transport.send(message)
    await transport.send(report)
    reply = await transport.recv()
    elapsed = time.perf_counter() - started
    await transport.close()
    if int.from_bytes(reply[2:], "big") != count:
        raise RuntimeError(f"responder counted {reply[2:].hex()}, sent {count}")
    return count / elapsed


async def bench_round_trips(port: int, count: int) -> float:
    transport = await _dial(port)
    ping = encode_message(Ping(num_pong_bytes=16))
    started = time.perf_counter()
    for _ in range(count):
        await transport.send(ping)
        if decode_message(await transport.recv()) != Pong(ignored=bytes(16)):
            raise RuntimeError("bad pong")
    elapsed = time.perf_counter() - started
    await transport.close()
    return count / elapsed


def bench_in_memory(count: int, size: int) -> tuple[float, float]:
    """(handshakes/s, messages/s) of the pure noise code, both roles in this process."""
    started = time.perf_counter()
    for _ in range(count // 10):
        initiator = InitiatorHandshake(local_static=CLIENT_SECRET, remote_static=SERVER_PUB,
                                       ephemeral=os.urandom(32))
        responder = ResponderHandshake(local_static=SERVER_SECRET, ephemeral=os.urandom(32))
        act_three, sender = initiator.read_act_two(responder.read_act_one(
            initiator.write_act_one()))
        receiver = responder.read_act_three(act_three)
    handshakes = (count // 10) / (time.perf_counter() - started)
    message = bytes(size)
    started = time.perf_counter()
    encrypt: NoiseSession = sender
    for _ in range(count):
        receiver.decrypt_message(encrypt.encrypt_message(message))
    return handshakes, count / (time.perf_counter() - started)


async def run(quick: bool) -> None:
    scale = 10 if quick else 1
    repo = Path(__file__).resolve().parents[1]
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.transport", "--serve",
        cwd=repo, stdout=asyncio.subprocess.PIPE,
    )
    if child.stdout is None:
        raise RuntimeError("responder process has no stdout pipe")
    try:
        port = int((await child.stdout.readline()).decode())
        handshakes = 300 // scale
        print(f"handshakes/s (loopback): {await bench_handshakes(port, handshakes):8.0f}"
              f"   {handshakes} sequential connect() + acts 1-3, each until the responder's"
              " first message arrives, then close()")
        for count, size in ((100_000 // scale, 100), (30_000 // scale, 1452)):
            rate = await bench_one_way(port, count, size)
            print(f"messages/s one way, {size:4d} B: {rate:8.0f}   {count} send() calls"
                  f" (one write + drain each), until the responder reports all decrypted"
                  f" ({rate * (size + 34) / 1e6:.1f} MB/s on the wire)")
        trips = 5_000 // scale
        print(f"ping/pong round trips/s:    {await bench_round_trips(port, trips):8.0f}"
              f"   {trips} lock-step ping -> pong, encoded, encrypted, decrypted, decoded")
    finally:
        child.terminate()
        await child.wait()
    memory_handshakes, memory_messages = bench_in_memory(100_000 // scale, 100)
    print(f"in memory, no sockets:      {memory_handshakes:8.0f} handshakes/s (both roles),"
          f" {memory_messages:.0f} messages/s of 100 B (encrypt + decrypt)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the iterations")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_responder())
        return
    print(f"BOLT 8 transport benchmark (python {sys.version.split()[0]},"
          f" {os.cpu_count()} CPUs, responder in a separate process)")
    asyncio.run(run(args.quick))


if __name__ == "__main__":
    main()
