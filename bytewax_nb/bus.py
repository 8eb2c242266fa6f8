"""The hub's side of the bus: an XSUB/XPUB proxy whose loop runs inside libzmq.

It carries gateway requests to bees and answers back; bees send each other their
results directly (see `Child.peer_sockets` and docs/decisions.md).

Producers connect PUB sockets to the XSUB side, consumers SUB sockets to the XPUB
side; subscriptions travel back through the proxy, so a producer only sends what
somebody listens to. The proxy thread holds no GIL while it forwards. It lives in the
hub process beside the gateways, which reach it over `inproc` (no I/O thread, no
TCP), while bee replicas connect over TCP on loopback.
"""

from __future__ import annotations

import threading

import zmq

from .child import HWM

__all__ = ["BusProxy"]


class BusProxy:
    """Binds both sides (given ports, or free ones) and forwards in a thread."""

    def __init__(
        self,
        ctx: zmq.Context[zmq.Socket[bytes]],
        host: str = "127.0.0.1",
        ports: dict[str, int] | None = None,
    ) -> None:
        self._xsub = ctx.socket(zmq.XSUB)
        self._xpub = ctx.socket(zmq.XPUB)
        self.addresses: dict[str, str] = {}
        self.local: dict[str, str] = {}
        for side, sock in (("xsub", self._xsub), ("xpub", self._xpub)):
            sock.setsockopt(zmq.SNDHWM, HWM)
            sock.setsockopt(zmq.RCVHWM, HWM)
            sock.setsockopt(zmq.LINGER, 0)
            port = (ports or {}).get(side)
            if port:  # a restarted hub takes its old ports, so bees reconnect by themselves
                sock.bind(f"tcp://{host}:{port}")
            else:
                port = sock.bind_to_random_port(f"tcp://{host}")
            self.addresses[side] = f"tcp://{host}:{port}"
            self.local[side] = f"inproc://bytewax-nb-{side}-{id(self)}"
            sock.bind(self.local[side])
        endpoint = f"inproc://bytewax-nb-bus-{id(self)}"
        self._ctrl = ctx.socket(zmq.PAIR)
        self._ctrl.bind(endpoint)
        self._ctrl_peer = ctx.socket(zmq.PAIR)
        self._ctrl_peer.connect(endpoint)
        self._thread = threading.Thread(target=self._run, name="bytewax-nb-bus", daemon=True)
        self._thread.start()

    @property
    def ports(self) -> dict[str, int]:
        return {side: int(addr.rsplit(":", 1)[1]) for side, addr in self.addresses.items()}

    def _run(self) -> None:
        try:
            zmq.proxy_steerable(self._xsub, self._xpub, None, self._ctrl_peer)
        except zmq.ContextTerminated:  # pragma: no cover - closed under us at exit
            pass
        finally:
            for sock in (self._xsub, self._xpub, self._ctrl_peer):
                sock.close(linger=0)

    def close(self) -> None:
        if self._thread.is_alive():
            self._ctrl.send(b"TERMINATE")
            self._thread.join(timeout=5)
        self._ctrl.close(linger=0)
