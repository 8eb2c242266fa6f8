"""The control channel: supervisor (ROUTER) <-> each process (DEALER).

Reliable and point to point, unlike the bus, so it carries what must not be lost:
configuration (the pickled bee), links and routes, deaths, stats and stop orders. Every
message is signed with the swarm key; only the configuration is a pickle, and it is
verified before it is loaded.
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Sequence
from typing import Any

import cloudpickle

from .protocol import Msg
from .wire import Signer

__all__ = ["ControlCodec", "Msg"]

_JSON = b"j"
_PICKLE = b"p"


class ControlCodec:
    """Signs and opens control messages; unsigned ones are refused (None)."""

    def __init__(self, signer: Signer) -> None:
        self._signer = signer

    def pack(self, kind: Msg, body: Any = None, *, pickled: bool = False) -> list[bytes]:
        """Frames of one message; `body` is the TypedDict its kind names (see `protocol`)."""
        k = kind.encode()
        if pickled:
            enc, data = _PICKLE, cloudpickle.dumps(body, protocol=5)
        else:
            enc, data = _JSON, json.dumps(body, separators=(",", ":")).encode()
        return [k, self._signer.mac(k + b"\0" + enc + data), enc, data]

    def unpack(self, frames: Sequence[bytes]) -> tuple[Msg, Any] | None:
        """(kind, body) of a verified message; None if unsigned, forged or unknown."""
        if len(frames) != 4:
            return None
        k, sig, enc, data = frames
        if not self._signer.verify(sig, k + b"\0" + enc + data):
            return None
        try:
            kind = Msg(k.decode())
        except ValueError:  # signed by our key, yet unknown: a newer sender; ignored
            return None
        body = pickle.loads(data) if enc == _PICKLE else json.loads(data)
        return kind, body
