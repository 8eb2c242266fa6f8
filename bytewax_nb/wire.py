"""Bus frames: `[topic, signature+header, payload, *buffers]`, HMAC-signed.

Three frames for an ordinary message keep the per-hop socket cost low; large
buffers (numpy arrays) travel as extra frames without being copied into the pickle.
The signature covers every frame with its length, so nothing can be spliced, and it
is checked (constant-time) before anything is unpickled.
"""

from __future__ import annotations

import hmac
import json
import os
import pickle
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import sha256
from typing import Any

import zmq

__all__ = [
    "Header",
    "Kind",
    "Enc",
    "Signer",
    "topic_of",
    "response_topic",
    "new_request_id",
    "dump_json",
]

SIG_LEN = 32
_FIXED = struct.Struct("!BBHdd")  # kind, encoding, n_buffers, t0, deadline
_HEAD_LEN = SIG_LEN + _FIXED.size
_BIG = 1 << 16  # above this, hash frames incrementally instead of joining them


class Kind:
    """What a frame carries."""

    DATA = 0
    RESPONSE = 1
    ERROR = 2
    PROBE = 3


class Enc:
    """How the payload frame is encoded."""

    PICKLE = 0
    JSON = 1


def topic_of(name: str) -> bytes:
    """Topic frame for a producer; the NUL stops "hello" matching "hello-world"."""
    return name.encode() + b"\0"


def response_topic(gateway: str) -> bytes:
    """Where bees send responses for a gateway; '!' cannot start a user name."""
    return b"!r." + gateway.encode() + b"\0"


def new_request_id() -> str:
    return os.urandom(16).hex()


def _default(obj: Any) -> Any:
    # numpy arrays and scalars (and anything shaped like them) become plain JSON.
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        return tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def dump_json(obj: Any) -> bytes:
    """JSON for responses; numpy values are converted, anything else raises TypeError."""
    return json.dumps(obj, default=_default, separators=(",", ":")).encode()


@dataclass(slots=True)
class Header:
    """Per-message metadata: who asked, who sent it, and when it stops mattering."""

    kind: int
    request_id: str
    origin: str  # the gateway the request came through (or the prober's identity)
    sender: str  # the producer's name
    t0: float = 0.0  # gateway receive time, epoch seconds
    deadline: float = 0.0  # epoch seconds after which nobody waits; 0 = none
    enc: int = Enc.PICKLE
    n_buffers: int = 0

    def pack(self) -> bytes:
        fixed = _FIXED.pack(self.kind, self.enc, self.n_buffers, self.t0, self.deadline)
        names = "\0".join((self.request_id, self.origin, self.sender)).encode()
        return fixed + names


def _unpack(head: bytes) -> Header:
    kind, enc, n_buffers, t0, deadline = _FIXED.unpack_from(head, SIG_LEN)
    rid, origin, sender = head[_HEAD_LEN:].decode().split("\0")
    return Header(kind, rid, origin, sender, t0, deadline, enc, n_buffers)


def peek_request_id(head: bytes) -> bytes:
    """The request id's bytes, read without verifying: only for shard filtering."""
    end = head.find(b"\0", _HEAD_LEN)
    return head[_HEAD_LEN:end]


def peek_kind(head: bytes) -> int:
    return head[SIG_LEN] if len(head) > SIG_LEN else -1


class Signer:
    """Signs and verifies frame lists under one swarm's key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the bus key must have at least 16 bytes")
        self._key = key

    def mac(self, parts: Sequence[bytes | memoryview]) -> bytes:
        lengths = struct.pack(f"!{len(parts)}Q", *(memoryview(p).nbytes for p in parts))
        if sum(memoryview(p).nbytes for p in parts) < _BIG:
            return hmac.digest(self._key, lengths + b"".join(parts), sha256)
        h = hmac.new(self._key, lengths, sha256)
        for p in parts:
            h.update(p)
        return h.digest()

    def verify(self, sig: bytes | memoryview, parts: Sequence[bytes | memoryview]) -> bool:
        return hmac.compare_digest(bytes(sig), self.mac(parts))

    # -- bus frames ---------------------------------------------------------------

    def frames(self, topic: bytes, header: Header, payload: bytes, buffers: Sequence[Any] = ()) -> list[Any]:
        """The frame list for one message, signed."""
        header.n_buffers = len(buffers)
        head = header.pack()
        raws = [memoryview(b).cast("B") for b in buffers]
        sig = self.mac([topic, head, payload, *raws])
        return [topic, sig + head, payload, *raws]

    def encode(self, topic: bytes, header: Header, obj: Any) -> list[Any]:
        """Pickle `obj` (protocol 5, large buffers out of band) into signed frames."""
        buffers: list[pickle.PickleBuffer] = []
        payload = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
        header.enc = Enc.PICKLE
        return self.frames(topic, header, payload, [b.raw() for b in buffers])

    def open(self, frames: Sequence[Any]) -> Header | None:
        """Verify a received frame list; the header if the signature holds, else None."""
        if len(frames) < 3:
            return None
        head = _bytes(frames[1])
        if len(head) < _HEAD_LEN:
            return None
        parts = [_bytes(frames[0]), head[SIG_LEN:], _bytes(frames[2])]
        parts.extend(_view(f) for f in frames[3:])
        if not self.verify(head[:SIG_LEN], parts):
            return None
        try:
            header = _unpack(head)
        except (ValueError, UnicodeDecodeError, struct.error):
            return None
        if header.n_buffers != len(frames) - 3:
            return None
        return header


def _bytes(frame: Any) -> bytes:
    return frame.bytes if isinstance(frame, zmq.Frame) else bytes(frame)


def _view(frame: Any) -> Any:
    # a zmq.Frame's buffer is writable, so arrays unpickled from it are too
    return frame.buffer if isinstance(frame, zmq.Frame) else frame


def load_payload(header: Header, frames: Sequence[Any]) -> Any:
    """Decode a verified message's payload; call only after `Signer.open` succeeded."""
    payload = _bytes(frames[2])
    if header.enc == Enc.JSON:
        return json.loads(payload)
    return pickle.loads(payload, buffers=[_view(f) for f in frames[3:]])
