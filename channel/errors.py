"""The exception tree of the protocol layer, named by the reaction each error calls for.

Pure. Modelled on LDK's ``ChannelError``: the class of an exception tells its catcher what to do,
so a peer loop needs one ``except`` per reaction, not one per cause.

    ChanlabError
    ├── MalformedMessage      bytes that do not parse: send ``warning``, drop the connection
    │   └── PeerWarning        a message that may be an honest race (an ``update_fee`` the
    │                          opener can no longer afford, an update before
    │                          ``channel_reestablish``): ``warning``, reconnect, no force-close
    ├── InvalidInvoice        a BOLT 11 invoice that fails to decode or verify: refuse it, say why
    ├── HandshakeFailed       BOLT 8 act failed (bad version, bad MAC, bad key): drop the connection
    ├── UnknownEvenMessage    "it's OK to be odd" violated by the peer: fail the connection
    ├── RejectedUpdate        *our* request is invalid (amount over balance, too many HTLCs):
    │   │                     refuse it locally, the channel goes on
    │   └── InvalidStateTransition   a local call the channel's state does not allow (sign
    │                         before funding, channel_ready twice): answer the caller, change
    │                         nothing
    ├── InvalidOnion          an HTLC's onion does not peel (BOLT 4): fail that HTLC back
    ├── PeerProtocolError     the peer broke the protocol: send ``error``, fail the channel
    │   ├── InvalidSignature
    │   ├── InvalidRevocation
    │   ├── LostState          (ours is stale: error, but never broadcast our commitment)
    │   └── UnexpectedMessage  a peer message the channel's state does not allow
    ├── InvalidGossip         a BOLT 7 announcement fails a check: ignore it, fail no channel
    ├── ChainError            the chain backend refused or failed: report, retry at the next block
    ├── UnsafeOperation       refused on purpose (e.g. a cheat command outside regtest)
    └── StartRefused          a daemon cannot or must not start (already running, lost
                              database, port in use): one line saying what to do
"""

from __future__ import annotations


class ChanlabError(Exception):
    """Root of every error chanlab raises on purpose."""


class MalformedMessage(ChanlabError):
    """Input bytes that do not decode: warn the peer and disconnect."""


class PeerWarning(MalformedMessage):
    """The peer's message cannot be applied now, but honest peers can send it (a race or an
    eager reconnection): warn and disconnect, never fail the channel. The disconnection drops
    every unsigned update, and ``channel_reestablish`` resynchronises both sides."""


class HandshakeFailed(ChanlabError):
    """A BOLT 8 handshake act failed: close the connection, nothing else is at stake."""


class UnknownEvenMessage(MalformedMessage):
    """The peer sent an even message type (or TLV type) we do not understand: BOLT 1 says fail."""


class InvalidInvoice(ChanlabError):
    """Text from outside (a user, a wallet) is not a BOLT 11 invoice we may pay: refuse it.

    The message is one line saying which rule the invoice breaks; no channel or peer is at stake.
    """


class RejectedUpdate(ChanlabError):
    """Our own request cannot be honoured; refuse it, the channel stays as it was."""


class InvalidOnion(ChanlabError):
    """An HTLC's onion does not peel: fail that HTLC back with ``failure_code``; the channel lives.

    With the BADONION bit (0x8000) set the answer is ``update_fail_malformed_htlc`` (carrying
    the onion's SHA256); otherwise an ``update_fail_htlc``.
    """

    def __init__(self, message: str, *, failure_code: int) -> None:
        super().__init__(message)
        self.failure_code = failure_code


class PeerProtocolError(ChanlabError):
    """The peer broke the protocol: send ``error`` and fail the channel (force-close if funded)."""


class InvalidSignature(PeerProtocolError):
    """A signature from the peer does not verify."""


class InvalidRevocation(PeerProtocolError):
    """A revealed per-commitment secret does not match, or does not fit the shachain."""


class LostState(PeerProtocolError):
    """The peer proved (with a secret we revealed) that our state is older than its own.

    Reaction: send ``error`` but NEVER broadcast our commitment, which the peer can punish as
    revoked; wait for the peer's commitment on chain and sweep our to_remote from it.
    """


class InvalidStateTransition(RejectedUpdate):
    """A local call the channel's current state does not allow: the caller gets the error and
    the channel is unchanged (a local misuse must never fail a healthy channel)."""


class UnexpectedMessage(PeerProtocolError):
    """A message from the peer that the channel's current state does not allow."""


class ChainError(ChanlabError):
    """The chain backend refused or failed a request (a rejected broadcast, an unreachable
    bitcoind, a wallet that cannot fund): report it; chain work is retried at the next block."""


class UnsafeOperation(ChanlabError):
    """Refused on purpose: the operation is only allowed where it cannot cost real money."""


class InvalidGossip(ChanlabError):
    """A gossip message (BOLT 7) fails a check: ignore it (maybe warn); no channel is at stake."""


class StartRefused(ChanlabError):
    """A daemon cannot or must not start here (another process runs it, its database is gone or
    corrupt, its port is taken): say what to do in one line, start nothing."""
