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
from dataclasses import dataclass
from typing import Any

import zmq

from .control import ControlCodec, Msg
from .wire import Header, Kind, Signer, topic_prefix

__all__ = ["HWM", "Boot", "Child", "read_boot"]

HWM = 100_000  # messages a socket may queue before ZeroMQ drops; ample for bursts


@dataclass
class Boot:
    key: bytes
    control: str
    identity: str

    def line(self) -> bytes:
        body = {"key": self.key.hex(), "control": self.control, "identity": self.identity}
        return json.dumps(body).encode() + b"\n"


def read_boot() -> Boot:
    line = sys.stdin.buffer.readline()
    if not line:
        raise SystemExit("bytewax-nb: no boot line on stdin (this is started by a Swarm)")
    body = json.loads(line)
    return Boot(bytes.fromhex(body["key"]), body["control"], body["identity"])


class Child:
    """A launched process's sockets to the supervisor and the bus."""

    def __init__(self, boot: Boot) -> None:
        self.boot = boot
        self.signer = Signer(boot.key)
        self.codec = ControlCodec(self.signer)
        self.ctx = zmq.Context()
        self.control = self.ctx.socket(zmq.DEALER)
        self.control.setsockopt(zmq.IDENTITY, boot.identity.encode())
        self.control.setsockopt(zmq.LINGER, 1000)
        self.control.connect(boot.control)
        self.stdin_fd = sys.stdin.fileno()
        os.set_blocking(self.stdin_fd, False)

    def send(self, kind: str, body: Any = None) -> None:
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

    def probe(self, pub: zmq.Socket[bytes], body: dict[str, Any], sender: str) -> None:
        """Publish one probe frame on each topic the supervisor asked for."""
        for topic in body["topics"]:
            head = Header(Kind.PROBE, body["token"], self.boot.identity, sender)
            pub.send_multipart(self.signer.frames(topic.encode("latin-1"), head, b""))

    def saw(self, frame0: bytes, header: Header) -> None:
        """Tell the supervisor a probe arrived: from whom, on which topic."""
        topic = topic_prefix(frame0).decode("latin-1")
        self.send(Msg.SAW, {"producer": header.origin, "topic": topic, "token": header.request_id})

    def owner_gone(self) -> bool:
        try:
            return os.read(self.stdin_fd, 4096) == b""
        except BlockingIOError:
            return False

    def peer_sockets(self, host: str) -> tuple[zmq.Socket[bytes], zmq.Socket[bytes], str]:
        """A bee's direct path: its own publisher (bound here) and a subscriber that the
        supervisor points at the publishers of its bee inputs. Returns (pub, sub, address)."""
        pub = self.ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.SNDHWM, HWM)
        pub.setsockopt(zmq.LINGER, 1000)
        if host == "auto":  # a container on a bridge network: others dial its own address
            port = pub.bind_to_random_port("tcp://0.0.0.0")
            host = socket.gethostbyname(socket.gethostname())
        else:
            port = pub.bind_to_random_port(f"tcp://{host}")
        sub = self.ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, HWM)
        sub.setsockopt(zmq.LINGER, 0)
        return pub, sub, f"tcp://{host}:{port}"

    def bus_sockets(self, bus: dict[str, str]) -> tuple[zmq.Socket[bytes], zmq.Socket[bytes]]:
        pub = self.ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.SNDHWM, HWM)
        pub.setsockopt(zmq.LINGER, 1000)
        pub.connect(bus["xsub"])
        sub = self.ctx.socket(zmq.SUB)
        sub.setsockopt(zmq.RCVHWM, HWM)
        sub.setsockopt(zmq.LINGER, 0)
        sub.connect(bus["xpub"])
        return pub, sub

    def close(self) -> None:
        self.ctx.destroy(linger=1000)
