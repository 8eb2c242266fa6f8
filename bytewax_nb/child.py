"""Start-up shared by every process the supervisor launches (bee replica, gateway).

The boot line arrives on stdin (so the key never appears in argv, the environment
or `docker inspect`); stdin then stays open and its end means the owner is gone, so
no process outlives the kernel or CLI that started it.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import zmq

from .control import ControlCodec, Msg
from .curve import BusKeys, Curve
from .wire import Signer

__all__ = ["Boot", "Child", "read_boot"]


@dataclass
class Boot:
    """What a child needs before anything else: the swarm's secrets and where to report."""

    key: bytes
    control: str
    identity: str
    curve: BusKeys | None = field(default=None, repr=False)

    def line(self) -> bytes:
        body = {
            "key": self.key.hex(),
            "control": self.control,
            "identity": self.identity,
            "curve": self.curve.to_boot() if self.curve is not None else None,
        }
        return json.dumps(body).encode() + b"\n"


def read_boot() -> Boot:
    line = sys.stdin.buffer.readline()
    if not line:
        raise SystemExit("bytewax-nb: no boot line on stdin (this is started by a Swarm)")
    body = json.loads(line)
    curve = BusKeys.from_boot(body.get("curve"))
    return Boot(bytes.fromhex(body["key"]), body["control"], body["identity"], curve)


class Child:
    """A launched process's sockets to the supervisor and the bus."""

    def __init__(self, boot: Boot) -> None:
        self.boot = boot
        self.signer = Signer(boot.key)
        self.codec = ControlCodec(self.signer)
        self.ctx = zmq.Context()
        self.curve = Curve(self.ctx, boot.curve)
        self.control = self.ctx.socket(zmq.DEALER)
        self.control.setsockopt(zmq.IDENTITY, boot.identity.encode())
        self.control.setsockopt(zmq.LINGER, 1000)
        self.curve.client(self.control)
        self.control.connect(boot.control)
        self.stdin_fd = sys.stdin.fileno()
        os.set_blocking(self.stdin_fd, False)

    def send(self, kind: Msg, body: Any = None) -> None:
        self.control.send_multipart(self.codec.pack(kind, body))

    def recv_config(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """Say hello and wait for the configuration, or exit if the owner vanishes."""
        self.send(Msg.HELLO, {"pid": os.getpid()})
        poller = zmq.Poller()
        poller.register(self.control, zmq.POLLIN)
        poller.register(self.stdin_fd, zmq.POLLIN)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            events = dict(poller.poll(250))
            if self.stdin_fd in events and self.owner_gone():
                raise SystemExit(0)
            if self.control in events:
                msg = self.codec.unpack(self.control.recv_multipart())
                if msg and msg[0] == Msg.CONFIG:
                    config: dict[str, Any] = msg[1]
                    return config
        raise SystemExit("bytewax-nb: no configuration from the supervisor")

    def owner_gone(self) -> bool:
        try:
            return os.read(self.stdin_fd, 4096) == b""
        except BlockingIOError:
            return False

    def link_router(self, host: str) -> tuple[zmq.Socket[bytes], str]:
        """The socket this process's consumers dial (bound here), and its address.

        No high-water mark: what waits on it is bounded by the consumers' windows (and,
        for the hub, by each gateway's requests in flight), so nothing is ever dropped
        for lack of room. A send to a consumer that is gone raises instead of vanishing.
        """
        sock = self.ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.SNDHWM, 0)
        sock.setsockopt(zmq.RCVHWM, 0)
        sock.setsockopt(zmq.LINGER, 1000)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a replica that dials again takes its identity back
        self.secure_server(sock)
        if host == "auto":  # a container on a bridge network: others dial its own address
            port = sock.bind_to_random_port("tcp://0.0.0.0")
            host = socket.gethostbyname(socket.gethostname())
        else:
            port = sock.bind_to_random_port(f"tcp://{host}")
        return sock, f"tcp://{host}:{port}"

    def secure_server(self, sock: zmq.Socket[bytes]) -> None:
        """Encrypt and authenticate what this socket accepts (the bus's CurveZMQ, when on)."""
        self.curve.server(sock)

    def secure_client(self, sock: zmq.Socket[bytes]) -> None:
        """Encrypt what this socket dials (the bus's CurveZMQ, when on)."""
        self.curve.client(sock)

    def close(self) -> None:
        self.curve.close()
        self.ctx.destroy(linger=1000)
