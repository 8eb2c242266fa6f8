"""Bus frames: one frame per ordinary message, HMAC-signed, buffers out of band.

Frame 0 is `topic NUL | fixed header | names | payload | signature`. ZeroMQ matches
subscriptions on its prefix, so the topic leads; the NUL stops "hello" from matching
"hello-world". Large buffers (numpy arrays) follow as extra frames, never copied into
the pickle. One frame per message is the cheapest thing a ZeroMQ socket can send.

Under load a sender packs the messages it has for one topic into one ZeroMQ message
(`pack`), each still signed on its own; `sockio.recv_burst` splits them again. A socket then
wakes its I/O thread once per burst instead of once per message.

The signature covers frame 0 and every buffer with its length, so nothing can be
spliced, and it is checked (constant-time) before anything is unpickled.
"""

from __future__ import annotations

import hmac
import itertools
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
    "TRACEBACK_HEADER",
    "Enc",
    "Header",
    "Kind",
    "Message",
    "Signer",
    "dump_json",
    "error_frames",
    "n_buffers",
    "new_request_id",
    "pack",
    "peek",
    "received_at",
    "response_topic",
    "topic_of",
    "topic_prefix",
    "traceback_token",
]

SIG_LEN = 32
_FIXED = struct.Struct("!BBHddH")  # kind, encoding, n_buffers, t0, deadline, len(names)
_LEN = struct.Struct("!Q")


class Kind:
    """What a message carries."""

    DATA = 0
    RESPONSE = 1
    ERROR = 2
    PROBE = 3


class Enc:
    """How the payload is encoded."""

    PICKLE = 0
    JSON = 1


def topic_of(name: str) -> bytes:
    """Topic prefix for a producer's messages."""
    return name.encode() + b"\0"


def response_topic(gateway: str) -> bytes:
    """Where bees send responses for a gateway; '!' cannot start a user's name."""
    return b"!r." + gateway.encode() + b"\0"


_ID_PREFIX = os.urandom(8).hex()  # per process: ids of a restarted hub never repeat
_ID_COUNTER = itertools.count()


def new_request_id() -> str:
    """32 hex digits, unique per swarm; a counter, not a syscall, per request."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER) & 0xFFFFFFFFFFFFFFFF:016x}"


def _default(obj: Any) -> Any:
    # numpy arrays and scalars (and anything shaped like them) become plain JSON
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        return tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serializable")


def dump_json(obj: Any) -> bytes:
    """Strict JSON for responses: numpy values are converted; anything else raises
    TypeError, and NaN or Infinity (which JSON has no form for) ValueError."""
    return json.dumps(obj, default=_default, separators=(",", ":"), allow_nan=False).encode()


TRACEBACK_HEADER = "X-Bytewax-Traceback"  # where the owner shows a gateway its traceback token


def traceback_token(key: bytes) -> bytes:
    """What the owner shows a gateway to get bees' tracebacks: derived from the swarm key,
    so only a holder of the key (the owner, never an HTTP caller) has it."""
    return hmac.new(key, b"bytewax-nb traceback", sha256).hexdigest().encode()


@dataclass(slots=True)
class Header:
    """Per-message metadata: who asked, who sent it, and when it stops mattering."""

    kind: int
    request_id: str
    origin: str  # the gateway the request came through (the prober's identity for probes)
    sender: str  # the producer's name
    t0: float = 0.0  # gateway receive time, epoch seconds
    deadline: float = 0.0  # epoch seconds after which nobody waits; 0 = none
    enc: int = Enc.PICKLE
    n_buffers: int = 0


@dataclass(slots=True)
class Message:
    """A verified message: its header, payload bytes and out-of-band buffers."""

    header: Header
    payload: bytes
    buffers: list[Any]

    def load(self) -> Any:
        """Decode the payload (only ever called on a verified message)."""
        if self.header.enc == Enc.JSON:
            return json.loads(self.payload)
        return pickle.loads(self.payload, buffers=self.buffers)


def topic_prefix(frame0: bytes) -> bytes:
    """The topic a message was published on (its first frame up to the NUL, included)."""
    return frame0[: frame0.find(b"\0") + 1]


def peek(frame0: bytes) -> tuple[int, bytes]:
    """(kind, request id) read without verifying: only to skip what is not ours."""
    start = frame0.find(b"\0") + 1
    if start == 0 or len(frame0) < start + _FIXED.size + SIG_LEN:
        return -1, b""
    names = start + _FIXED.size
    end = frame0.find(b"\0", names)
    return frame0[start], frame0[names:end]


def _unverified(frame0: bytes, field: int) -> Any:
    """One field of the fixed header, read before verification (0 if there is none)."""
    start = frame0.find(b"\0") + 1
    if start == 0 or len(frame0) < start + _FIXED.size:
        return 0
    return _FIXED.unpack_from(frame0, start)[field]


def received_at(frame0: bytes) -> float:
    """The gateway receive time (t0), unverified: only to pick a shard."""
    return float(_unverified(frame0, 3))


def n_buffers(frame0: bytes) -> int:
    """How many buffer frames follow this first frame (unverified: only to split bursts)."""
    return int(_unverified(frame0, 2))


def pack(messages: Sequence[list[Any]]) -> dict[bytes, list[Any]]:
    """Group messages (frame lists) by topic into one frame list per topic, in order."""
    out: dict[bytes, list[Any]] = {}
    for frames in messages:
        first = frames[0]
        out.setdefault(topic_prefix(first), []).extend(frames)
    return out


def _view(frame: Any) -> Any:
    # a zmq.Frame's buffer is writable, so arrays unpickled from it are too
    return frame.buffer if isinstance(frame, zmq.Frame) else frame


class Signer:
    """Signs and verifies messages under one swarm's key."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 16:
            raise ValueError("the bus key must have at least 16 bytes")
        # the key's inner and outer pads hashed once; each message copies that state,
        # which halves the cost of a one-shot HMAC on the short frames of the bus.
        # CPython keeps the OpenSSL object in `_hmac`: copying it directly skips a
        # Python wrapper per call (the wrapper stands in where it is missing).
        keyed = hmac.new(key, digestmod=sha256)
        self._keyed: Any = getattr(keyed, "_hmac", None) or keyed

    def mac(self, body: bytes | memoryview, buffers: Sequence[Any] = ()) -> bytes:
        h = self._keyed.copy()
        h.update(body)
        for buf in buffers:
            view = memoryview(buf)
            h.update(_LEN.pack(view.nbytes))
            h.update(view)
        digest: bytes = h.digest()
        return digest

    def verify(self, sig: bytes, body: bytes, buffers: Sequence[Any] = ()) -> bool:
        return hmac.compare_digest(sig, self.mac(body, buffers))

    def frames(self, topic: bytes, header: Header, payload: bytes, buffers: Sequence[Any] = ()) -> list[Any]:
        """The frame list for one message, signed."""
        names = f"{header.request_id}\0{header.origin}\0{header.sender}".encode()
        fixed = _FIXED.pack(header.kind, header.enc, len(buffers), header.t0, header.deadline, len(names))
        body = b"".join((topic, fixed, names, payload))
        raws = [memoryview(b).cast("B") for b in buffers]
        return [body + self.mac(body, raws), *raws]

    def encode(self, topic: bytes, header: Header, obj: Any) -> list[Any]:
        """Pickle `obj` (protocol 5, large buffers out of band) into signed frames."""
        buffers: list[pickle.PickleBuffer] = []
        payload = pickle.dumps(obj, protocol=5, buffer_callback=buffers.append)
        header.enc = Enc.PICKLE
        return self.frames(topic, header, payload, [b.raw() for b in buffers])

    def open(self, frames: Sequence[Any]) -> Message | None:
        """Verify a received message; None if its signature or shape is wrong."""
        if not frames:
            return None
        f0 = frames[0] if isinstance(frames[0], bytes) else bytes(frames[0])
        start = f0.find(b"\0") + 1
        if start == 0 or len(f0) < start + _FIXED.size + SIG_LEN:
            return None
        body = memoryview(f0)[:-SIG_LEN]
        buffers = [_view(f) for f in frames[1:]] if len(frames) > 1 else []
        if not hmac.compare_digest(f0[-SIG_LEN:], self.mac(body, buffers)):
            return None
        try:
            kind, enc, n_buf, t0, deadline, n_names = _FIXED.unpack_from(f0, start)
            names_at = start + _FIXED.size
            rid, origin, sender = f0[names_at : names_at + n_names].decode().split("\0")
        except (ValueError, UnicodeDecodeError, struct.error):
            return None
        if n_buf != len(buffers):
            return None
        header = Header(kind, rid, origin, sender, t0, deadline, enc, n_buf)
        return Message(header, f0[names_at + n_names : -SIG_LEN], buffers)


def error_frames(
    signer: Signer, header: Header, bee: str, ename: str, message: str, text: str, status: int = 500
) -> list[Any]:
    """The signed answer that tells the caller of `header`'s request that `bee` failed."""
    body = dump_json(
        {
            "error": message,
            "type": ename,
            "bee": bee,
            "traceback": text,
            "request_id": header.request_id,
            "status": status,
        }
    )
    out = Header(Kind.ERROR, header.request_id, header.origin, bee, header.t0, enc=Enc.JSON)
    return signer.frames(response_topic(header.origin), out, body)
