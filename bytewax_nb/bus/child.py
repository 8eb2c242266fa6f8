"""Start-up shared by every process the supervisor launches (bee replica, gateway).

The boot line arrives on stdin (so the key never appears in argv, the environment
or `docker inspect`); stdin then stays open and its end means the owner is gone, so
no process outlives the kernel or CLI that started it.

A service of a deployed stack (see `bytewax_nb.stack`) has no owner: it reads the same
boot from the stack's Docker secret, names itself after its task, outlives any
controller, and proves it is alive with heartbeats on the control channel instead.
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

from ..model.settings import STACK, TASK
from .control import ControlCodec, Msg
from .curve import BusKeys, Curve
from .wire import Signer

__all__ = [
    "BOOT_SECRET",
    "CONTROLLER",
    "CONTROLLER_PORT",
    "LINK_PORT",
    "REDIAL_S",
    "Boot",
    "Child",
    "read_boot",
    "watch_peer",
]

BOOT_SECRET = "/run/secrets/bytewax-nb-boot"  # where a stack's services find their boot
CONTROLLER_PORT = 7600  # a stack's controller: its control socket, on the stack's network
LINK_PORT = 7601  # a stack's task: the link socket its consumers dial (one task per address)
CONTROLLER = "controller"  # what a stack's tasks address their control messages to


@dataclass
class Boot:
    """What a child needs before anything else: the swarm's secrets and where to report."""

    key: bytes
    control: str
    identity: str
    curve: BusKeys | None = field(default=None, repr=False)
    stack: str = ""  # a service of this deployed stack: no owner, heartbeats
    # what its control messages are addressed to: the supervisor's name, made afresh by
    # each supervisor; a stack's tasks address whichever controller runs
    supervisor: str = CONTROLLER

    def line(self) -> bytes:
        return json.dumps(self.secrets()).encode() + b"\n"

    def secrets(self) -> dict[str, Any]:
        """What a boot line (or a stack's boot secret) holds."""
        return {
            "key": self.key.hex(),
            "control": self.control,
            "identity": self.identity,
            "curve": self.curve.to_boot() if self.curve is not None else None,
            "supervisor": self.supervisor,
        }


def read_boot() -> Boot:
    """The boot line on stdin, or, in a stack's service, the stack's secret."""
    stack = STACK.get()
    if stack:
        with open(BOOT_SECRET, "rb") as f:
            body = json.loads(f.read())
        identity = TASK.get()
        control = f"tcp://controller:{CONTROLLER_PORT}"
    else:
        line = sys.stdin.buffer.readline()
        if not line:
            raise SystemExit("bytewax-nb: no boot line on stdin (this is started by a Swarm)")
        body = json.loads(line)
        identity, control = body["identity"], body["control"]
    curve = BusKeys.from_boot(body.get("curve"))
    supervisor = str(body.get("supervisor") or CONTROLLER)
    return Boot(bytes.fromhex(body["key"]), control, identity, curve, stack, supervisor)


_SILENT_MS = 3000
_CONNECT_MS = 2000
# how long a task may take to reach its controller's next task after the last one
# vanished without a word: its connection seen dead, then one dial that times out (the
# name may still give the old address for a moment), then the dial that answers
REDIAL_S = (_SILENT_MS + _CONNECT_MS) / 1000 + 1.0


def watch_peer(sock: zmq.Socket[bytes]) -> None:
    """Drop a connection whose peer went silent, then dial again (looking its name up
    anew). A stack's controller can vanish without a FIN or RST reaching its tasks (its
    node gone, its namespace torn down first); their connections to it would look alive
    for many minutes, and the controller that replaces it would never hear from them."""
    sock.setsockopt(zmq.HEARTBEAT_IVL, 1000)  # a ZMTP PING each second
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, _SILENT_MS)  # no traffic: closed, dialled again
    sock.setsockopt(zmq.HEARTBEAT_TTL, _SILENT_MS)
    sock.setsockopt(zmq.CONNECT_TIMEOUT, _CONNECT_MS)  # a SYN to an address no one holds now


class Child:
    """A launched process's sockets to the supervisor and the bus."""

    def __init__(self, boot: Boot) -> None:
        self.boot = boot
        self.signer = Signer(boot.key)
        self.codec = ControlCodec(self.signer, boot.identity)
        self.ctx = zmq.Context()
        self.curve = Curve(self.ctx, boot.curve)
        self.control = self.ctx.socket(zmq.DEALER)
        self.control.setsockopt(zmq.IDENTITY, boot.identity.encode())
        self.control.setsockopt(zmq.LINGER, 1000)
        if boot.stack:
            watch_peer(self.control)
        self.curve.client(self.control)
        self.control.connect(boot.control)
        # a stack's service has no owner to watch: stdin is /dev/null there
        self.stdin_fd: int | None = None
        if not boot.stack:
            self.stdin_fd = sys.stdin.fileno()
            os.set_blocking(self.stdin_fd, False)

    def send(self, kind: Msg, body: Any = None) -> None:
        self.control.send_multipart(self.codec.pack(kind, body, dst=self.boot.supervisor))

    def recv_config(self, timeout_s: float = 60.0) -> dict[str, Any]:
        """Say hello and wait for the configuration, or exit if the owner vanishes."""
        self.send(Msg.HELLO, {"pid": os.getpid()})
        poller = zmq.Poller()
        poller.register(self.control, zmq.POLLIN)
        if self.stdin_fd is not None:
            poller.register(self.stdin_fd, zmq.POLLIN)
        deadline = time.monotonic() + timeout_s
        asked = time.monotonic()
        while time.monotonic() < deadline or self.boot.stack:  # a stack's controller may come later
            events = dict(poller.poll(250))
            if self.stdin_fd in events and self.owner_gone():
                raise SystemExit(0)
            if self.control in events:
                msg = self.codec.unpack(self.control.recv_multipart())
                if msg and msg[0] == Msg.CONFIG:
                    config: dict[str, Any] = msg[1]
                    return config
            elif self.boot.stack and time.monotonic() - asked > 2:
                # a controller restarted meanwhile has never heard of us: say it again
                asked = time.monotonic()
                self.send(Msg.HELLO, {"pid": os.getpid()})
        raise SystemExit("bytewax-nb: no configuration from the supervisor")

    def owner_gone(self) -> bool:
        if self.stdin_fd is None:
            return False
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
        if self.boot.stack:  # a stack's task: its own address on the stack's network, a known port
            sock.bind(f"tcp://0.0.0.0:{LINK_PORT}")
            return sock, f"tcp://{self._own_address()}:{LINK_PORT}"
        if host == "auto":  # a container on a bridge network: others dial its own address
            port = sock.bind_to_random_port("tcp://0.0.0.0")
            host = socket.gethostbyname(socket.gethostname())
        else:
            port = sock.bind_to_random_port(f"tcp://{host}")
        return sock, f"tcp://{host}:{port}"

    @staticmethod
    def _own_address() -> str:
        """This task's address on the stack's network: the one its route to the controller
        leaves from (a task has one per network it is on; only that one is reachable)."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((socket.gethostbyname("controller"), CONTROLLER_PORT))  # no packet is sent
            return str(probe.getsockname()[0])

    def secure_server(self, sock: zmq.Socket[bytes]) -> None:
        """Encrypt and authenticate what this socket accepts (the bus's CurveZMQ, when on)."""
        self.curve.server(sock)

    def secure_client(self, sock: zmq.Socket[bytes]) -> None:
        """Encrypt what this socket dials (the bus's CurveZMQ, when on)."""
        self.curve.client(sock)

    def close(self) -> None:
        self.curve.close()
        self.ctx.destroy(linger=1000)
