"""The control channel: supervisor (ROUTER) <-> each process (DEALER).

Reliable and point to point, unlike the bus, so it carries what must not be lost:
configuration (the pickled bee), links and routes, deaths, stats and stop orders.

Every message is signed with the swarm key over its kind, its body and who sent it to
whom with which sequence number, as bus frames are (see `wire`). A receiver takes a
message only if it is addressed to it, comes from the peer it names (the supervisor
checks the socket's identity) and is newer than the last one from that sender: a
captured `hello` sent again, from anywhere, is refused, so it can never make the
supervisor send a bee's configuration (its code, its `env`) to whoever replays it.
Only the configuration is a pickle, and it is verified before it is loaded.
"""

from __future__ import annotations

import json
import pickle
import struct
from collections.abc import Sequence
from typing import Any

import cloudpickle

from ..model.protocol import PICKLED, Msg
from .wire import ReplayGuard, Signer, next_seq

__all__ = ["ControlCodec", "Msg"]

_JSON = b"j"
_PICKLE = b"p"
_SEQ = struct.Struct("!Q")


class ControlCodec:
    """Signs and opens one process's control messages; unsigned, misaddressed or replayed
    ones are refused (None) and counted in `dropped`.

    `me` is the name messages to this process are addressed to; `src` the name it signs
    its own with (the same, but for a stack's controller: tasks address "controller",
    and each controller process signs with a name of its own, so a restarted one starts
    a fresh sequence that no task takes for a replay).
    """

    def __init__(self, signer: Signer, me: str, src: str | None = None) -> None:
        self._signer = signer
        self.me = me
        self.src = src or me
        self._guard = ReplayGuard(me)
        self.dropped = self._guard.dropped

    def pack(self, kind: Msg, body: Any = None, *, dst: str) -> list[bytes]:
        """Frames of one message to `dst`; `body` is the TypedDict its kind names (see `protocol`)."""
        k = kind.encode()
        if kind in PICKLED:
            enc, data = _PICKLE, cloudpickle.dumps(body, protocol=5)
        else:
            enc, data = _JSON, json.dumps(body, separators=(",", ":")).encode()
        meta = _SEQ.pack(next_seq()) + f"{self.src}\0{dst}".encode()
        return [k, self._signer.mac(_signed(k, enc, meta, data)), enc, meta, data]

    def unpack(self, frames: Sequence[bytes], peer: str | None = None) -> tuple[Msg, Any] | None:
        """(kind, body) of a verified message; None if unsigned, forged, misaddressed,
        replayed, from another `peer` than it says, or of an unknown kind."""
        if len(frames) != 5:
            self._guard.drop("signature")
            return None
        k, sig, enc, meta, data = frames
        if not self._signer.verify(sig, _signed(k, enc, meta, data)):
            self._guard.drop("signature")
            return None
        try:
            (seq,) = _SEQ.unpack_from(meta)
            src, dst = meta[_SEQ.size :].decode().split("\0")
            kind = Msg(k.decode())
        except (ValueError, struct.error):  # signed by our key, yet unknown: a newer sender
            return None
        if peer is not None and src != peer:
            self._guard.drop("wrong sender")
            return None
        if dst != self.me:
            self._guard.drop("misaddressed")
            return None
        if not self._guard.fresh(src, seq):
            self._guard.drop("replayed")
            return None
        body = pickle.loads(data) if enc == _PICKLE else json.loads(data)
        return kind, body


def _signed(kind: bytes, enc: bytes, meta: bytes, data: bytes) -> bytes:
    """What the signature covers: every field, each length-prefixed where it could move."""
    return b"".join((kind, b"\0", enc, _SEQ.pack(len(meta)), meta, data))
