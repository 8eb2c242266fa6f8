"""The control channel's owner side: the ROUTER every process of the swarm dials.

Messages are signed, addressed and sequenced (`bus.control`) and, unless turned off,
encrypted (`bus.curve`); a message from an identity that is not the one it names, or
that was seen before, is dropped before anything reads it. Used on the supervisor's
thread only (a ZeroMQ socket belongs to one thread).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from typing import Any

import zmq

from ..bus.child import CONTROLLER, Boot
from ..bus.control import ControlCodec
from ..bus.curve import BusKeys, Curve
from ..bus.wire import Signer, traceback_token
from ..model.protocol import Msg

__all__ = ["ControlChannel"]


class ControlChannel:
    """One swarm's keys and control socket."""

    def __init__(
        self,
        ctx: zmq.Context[zmq.Socket[bytes]],
        bind_host: str,
        *,
        key: bytes | None = None,
        bus_keys: BusKeys | None = None,
        port: int | None = None,
    ) -> None:
        """A swarm's own channel (fresh keys, a free port), or a stack controller's
        (`key`, `bus_keys` and `port` given: the stack's)."""
        controller = key is not None
        self.key = key if key is not None else secrets.token_bytes(32)
        self.bus_keys = bus_keys if controller else BusKeys.make(local=True)
        # named afresh: nothing addressed to an earlier supervisor is taken by this one,
        # and a restarted controller's sequence numbers start anew under its own name
        fresh = secrets.token_hex(8)
        signer = Signer(self.key)
        if controller:
            self._codec = ControlCodec(signer, CONTROLLER, f"{CONTROLLER}:{fresh}")
        else:
            self._codec = ControlCodec(signer, f"supervisor:{fresh}")
        self._curve = Curve(ctx, self.bus_keys)
        self.router = ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # a task that dials again (its controller restarted) takes its identity back
        self.router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self._curve.server(self.router)
        if port is not None:
            self.router.bind(f"tcp://{bind_host}:{port}")
        else:
            port = self.router.bind_to_random_port(f"tcp://{bind_host}")
        self.address = f"tcp://{bind_host}:{port}"

    def boot(self, identity: str, control: str) -> Boot:
        """What a process launched with `identity` is told first (it dials `control`)."""
        return Boot(self.key, control, identity, self.bus_keys, supervisor=self._codec.me)

    @property
    def traceback_token(self) -> str:
        """What `swarm.request` shows the gateways to get bees' tracebacks (see `gateway.http`)."""
        return traceback_token(self.key).decode()

    def send(self, identity: str, kind: Msg, body: Any = None) -> None:
        frames = self._codec.pack(kind, body, dst=identity)
        # not connected yet, or gone: it says hello again, or its death is noticed
        with contextlib.suppress(zmq.ZMQError):
            self.router.send_multipart([identity.encode(), *frames])

    def receive(self) -> Iterator[tuple[str, Msg, Any]]:
        """(identity, kind, body) of each verified message waiting; the rest is dropped."""
        while True:
            try:
                frames = self.router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            identity = frames[0].decode(errors="replace")
            msg = self._codec.unpack(frames[1:], peer=identity)
            if msg is not None:
                yield identity, *msg

    def close(self) -> None:
        self.router.close(linger=0)
        self._curve.close()
