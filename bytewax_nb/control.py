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

from .wire import Signer

__all__ = ["ControlCodec", "Msg"]

_JSON = b"j"
_PICKLE = b"p"


class Msg:
    """Control message kinds."""

    HELLO = "hello"  # child -> sup: I am alive, send my config
    CONFIG = "config"  # sup -> child: what to run (pickle)
    UP = "up"  # child -> sup: my link socket listens (its address)
    LINKS = "links"  # sup -> bee replica: the producers to read from, and the hub
    LINKED = "linked"  # bee replica -> sup: the producers that welcomed it
    ROUTES = "routes"  # sup -> producer: the bees that listen to each of its topics
    RETIRE = "retire"  # sup -> bee replica: replaced; ask for nothing more, drain, exit
    LOST = "lost"  # sup -> every process: that one died (how, its last lines)
    GATEWAYS = "gateways"  # sup -> hub: serve this list of gateways (pickle)
    STATUS = "status"  # sup -> gateway: readiness and bee stats
    STATUS_OK = "status_ok"  # gateway -> sup: applied that status version
    STATS = "stats"  # child -> sup: counters
    REPORT = "report"  # sup -> child: send your counters now
    STOP = "stop"  # sup -> child: drain and exit
    BYE = "bye"  # child -> sup: drained, exiting


class ControlCodec:
    """Signs and opens control messages; unsigned ones are refused (None)."""

    def __init__(self, signer: Signer) -> None:
        self._signer = signer

    def pack(self, kind: str, body: Any = None, *, pickled: bool = False) -> list[bytes]:
        k = kind.encode()
        if pickled:
            enc, data = _PICKLE, cloudpickle.dumps(body, protocol=5)
        else:
            enc, data = _JSON, json.dumps(body, separators=(",", ":")).encode()
        return [k, self._signer.mac(k + b"\0" + enc + data), enc, data]

    def unpack(self, frames: Sequence[bytes]) -> tuple[str, Any] | None:
        if len(frames) != 4:
            return None
        k, sig, enc, data = frames
        if not self._signer.verify(sig, k + b"\0" + enc + data):
            return None
        body = pickle.loads(data) if enc == _PICKLE else json.loads(data)
        return k.decode(), body
