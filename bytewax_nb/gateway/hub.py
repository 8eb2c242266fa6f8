"""The hub process: the swarm's bus proxy and all of its HTTP gateways.

Gateways reach the proxy over `inproc`, which spares every request two thread
hand-offs and a TCP round on loopback; bees connect over TCP. The hub keeps the
pending requests, routes each response to the caller waiting for its id (the first
one wins), and drains on stop: it stops listening, waits for what is in flight,
then closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import zmq
from aiohttp import web

from ..bus import BusProxy
from ..child import Child
from ..control import Msg
from ..sockio import readable, recv_burst, send_frames
from ..spec import GatewaySpec
from ..wire import Enc, Header, Kind, pack, response_topic, traceback_token
from .http import GatewayApp
from .metrics import HubMetrics

__all__ = ["Hub"]

Reply = tuple[int, bytes, str]  # kind, JSON body, sender
_FLUSH_AT = 8  # requests that leave at once, so the bees start while more arrive


class Hub:
    """Owns the bus and the gateways of one swarm, inside one asyncio loop."""

    def __init__(self, child: Child, config: dict[str, Any]) -> None:
        self.child = child
        self.signer = child.signer
        self.loop = asyncio.get_running_loop()
        self.bus = BusProxy(
            child.ctx, host=config.get("bus_host", "127.0.0.1"), ports=config.get("bus_ports")
        )
        self.pub, self.sub = child.bus_sockets(self.bus.local)
        specs: list[GatewaySpec] = config["gateways"]
        self.metrics = HubMetrics()
        self.gateways: dict[str, GatewayApp] = {}
        self.runners: list[web.ServerRunner] = []
        self.sites: list[web.TCPSite] = []
        self.ports: dict[str, int] = dict(config.get("ports", {}))
        self.pending: dict[str, tuple[str, asyncio.Future[Reply] | None]] = {}
        self.outbox: list[list[Any]] = []
        self.serving = False  # every bee has a ready replica
        self.healthy = False  # every wanted replica is ready
        self.not_ready: list[str] = []
        self.listened: set[str] = set()  # gateways some ready bee listens to
        self.accepting = True
        self.stop_event = asyncio.Event()
        self.drain_s = max((s.timeout for s in specs), default=5.0)
        self.specs = specs
        self.idle = asyncio.Event()  # set whenever nothing is pending: what a drain waits for
        self.idle.set()
        self.traceback_token = traceback_token(child.boot.key)

    # -- requests --------------------------------------------------------------------

    def in_flight(self, gateway: str) -> int:
        return sum(1 for g, _ in self.pending.values() if g == gateway)

    def refusal(self, gw: GatewayApp) -> tuple[int, str] | None:
        """Why a new request to `gw` must be refused at once (status, message), if it must."""
        if not self.accepting:
            return 503, "the swarm is stopping"
        if not self.serving:
            return 503, f"not ready: no ready replica of {', '.join(self.not_ready) or 'the swarm'}"
        if gw.name not in self.listened:
            return 503, f"not ready: no bee listens to gateway {gw.name!r} yet"
        if self.in_flight(gw.name) >= gw.spec.max_in_flight:
            return 503, f"too busy: {gw.spec.max_in_flight} requests in flight; retry shortly"
        return None

    def _frames(self, gw: GatewayApp, rid: str, body: bytes) -> list[Any]:
        now = time.time()
        header = Header(Kind.DATA, rid, gw.name, gw.name, now, now + gw.spec.timeout, Enc.JSON)
        return self.signer.frames(gw.topic, header, body)

    def submit(self, gw: GatewayApp, rid: str, body: bytes) -> None:
        """Publish without a waiter; tracked until answered or timed out, for the drain."""
        self.pending[rid] = (gw.name, None)
        self.loop.call_later(gw.spec.timeout, self._forget, rid)
        self._publish(self._frames(gw, rid, body))

    async def request(self, gw: GatewayApp, rid: str, body: bytes) -> Reply:
        """Publish and wait for the first response (TimeoutError after the timeout)."""
        fut: asyncio.Future[Reply] = self.loop.create_future()
        self.pending[rid] = (gw.name, fut)
        timer = self.loop.call_later(gw.spec.timeout, self._expire, rid)
        self._publish(self._frames(gw, rid, body))
        try:
            return await fut
        finally:
            timer.cancel()
            self._forget(rid)

    def _publish(self, frames: list[Any]) -> None:
        # requests handled in one loop iteration leave in one burst: one wake of the proxy
        if not self.outbox:
            self.loop.call_soon(self._flush)
        self.outbox.append(frames)
        if len(self.outbox) >= _FLUSH_AT:
            self._flush()

    def _flush(self) -> None:
        out, self.outbox = self.outbox, []
        for frames in pack(out).values():
            send_frames(self.pub, frames)

    def _expire(self, rid: str) -> None:
        entry = self.pending.get(rid)
        self._forget(rid)
        if entry is not None and entry[1] is not None and not entry[1].done():
            entry[1].set_exception(TimeoutError())

    def _forget(self, rid: str) -> None:
        self.pending.pop(rid, None)
        if not self.pending:
            self.idle.set()

    # -- sockets ---------------------------------------------------------------------

    def _drain_bus(self) -> None:
        # ZeroMQ's FD is edge-triggered: read while EVENTS says so, or the edge is lost
        sub = self.sub
        while readable(sub):
            for frames in recv_burst(sub):
                self._on_frames(frames)

    def _on_frames(self, frames: list[Any]) -> None:
        msg = self.signer.open(frames)
        if msg is None:
            self.metrics.drop("signature")
            return
        header = msg.header
        if header.kind == Kind.PROBE:
            self.child.saw(frames[0], header)
            self.loop.call_soon(self._drain_control)  # the send may have taken the read edge
            return
        entry = self.pending.get(header.request_id)
        if header.kind not in (Kind.RESPONSE, Kind.ERROR) or entry is None:
            gw = self.gateways.get(header.origin)
            if gw is not None:
                gw.metrics.late.inc()
            return
        self._forget(header.request_id)
        fut = entry[1]
        if fut is not None and not fut.done():
            fut.set_result((header.kind, msg.payload, header.sender))

    def _drain_control(self) -> None:
        ctl = self.child.control
        while readable(ctl):
            msg = self.child.codec.unpack(ctl.recv_multipart())
            if msg is None:
                self.metrics.drop("signature")
                continue
            kind, body = msg
            if kind == Msg.STATUS:
                self.serving = bool(body["serving"])
                self.healthy = bool(body["healthy"])
                self.not_ready = list(body["not_ready"])
                bees = body["bees"].values()
                self.listened = {src for b in bees if b["ready"] > 0 for src in b["input"]}
                self.metrics.snapshot = body
                self._send(Msg.STATUS_OK, {"version": body["version"]})
            elif kind == Msg.PROBE:
                self._flush()  # a probe follows every request taken before it (fences rely on it)
                self.child.probe(self.pub, body, "hub")
            elif kind == Msg.REPORT:
                self._send(Msg.STATS, {"gateways": self.metrics.counts(), "dropped": self.metrics.dropped})
            elif kind == Msg.GATEWAYS:
                self.loop.create_task(self._serve_all(body))
            elif kind == Msg.STOP:
                self.drain_s = min(self.drain_s, float((body or {}).get("drain", self.drain_s)))
                self.stop_event.set()

    def _send(self, kind: str, body: Any) -> None:
        self.child.send(kind, body)
        # a send can swallow the DEALER's read edge: look again soon
        self.loop.call_soon(self._drain_control)

    def _on_stdin(self) -> None:
        if self.child.owner_gone():
            self.loop.remove_reader(self.child.stdin_fd)
            self.accepting = False
            self.pending.clear()
            self.idle.set()
            self.drain_s = 0
            self.stop_event.set()

    # -- lifecycle -------------------------------------------------------------------

    async def _serve(self, spec: GatewaySpec) -> None:
        gw = GatewayApp(self, spec)
        self.sub.setsockopt(zmq.SUBSCRIBE, response_topic(spec.name))
        runner = web.ServerRunner(gw.server(), handle_signals=False)
        await runner.setup()
        port = self.ports.get(spec.name, spec.port)  # a restarted hub keeps its URLs
        site = web.TCPSite(runner, spec.host, port, shutdown_timeout=1.0)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.ports[spec.name] = sockets[0].getsockname()[1] if sockets else port
        self.gateways[spec.name] = gw
        self.runners.append(runner)
        self.sites.append(site)
        self.drain_s = max(self.drain_s, spec.timeout)

    async def _serve_all(self, specs: list[GatewaySpec]) -> None:
        """Serve every gateway not served yet, then tell the supervisor where."""
        for spec in specs:
            if spec.name not in self.gateways:
                await self._serve(spec)
        self._send(Msg.UP, {"ports": self.ports, "bus": self.bus.addresses, "bus_ports": self.bus.ports})

    async def run(self) -> None:
        loop = self.loop
        fds = (self.sub.fileno(), self.child.control.fileno())
        loop.add_reader(fds[0], self._drain_bus)
        loop.add_reader(fds[1], self._drain_control)
        loop.add_reader(self.child.stdin_fd, self._on_stdin)
        await self._serve_all(self.specs)
        self._drain_bus()
        self._drain_control()
        await self.stop_event.wait()
        # drain: refuse new work, give what is in flight its time, then close
        self.accepting = False
        for site in self.sites:
            await site.stop()
        if self.pending:
            self.idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.idle.wait(), self.drain_s)
        for runner in self.runners:
            await runner.cleanup()
        for fd in (*fds, self.child.stdin_fd):
            loop.remove_reader(fd)  # a no-op for one already removed
        self.child.send(Msg.BYE, {"unanswered": len(self.pending)})
        self.bus.close()
