"""The hub process: all of a swarm's HTTP gateways, and the producer of their requests.

Every bee replica dials the hub's link socket (a ROUTER): the bees that listen to a
gateway get its requests there, whenever they have room in their window (see
`links`), and every bee sends its answers back on it. The hub keeps the pending
requests, gives each caller the first answer for its id, and drains on stop: it
stops listening, waits for what is in flight, then closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from typing import Any, cast

from aiohttp import web

from ..bus.child import Child
from ..bus.producer import Parcel, Producer, died_answer
from ..bus.sockio import readable
from ..bus.wire import Enc, Header, Kind, Message, ReplayGuard, dump_json, traceback_token
from ..model.protocol import (
    Beat,
    BeeFigures,
    BeeState,
    Bye,
    HubConfig,
    HubStats,
    Lost,
    Msg,
    RoutesBody,
    Status,
    StatusOk,
    StopOrder,
    SwarmStatus,
    Tally,
    Up,
    bee_error,
    routes_from,
    routes_to,
)
from ..model.settings import HEARTBEAT
from ..model.spec import GatewaySpec
from .http import GatewayApp, Reply
from .journal import Journal
from .metrics import HubMetrics, downstream

__all__ = ["Hub"]

_FLUSH_AT = 8  # requests that leave at once, so the bees start while more arrive
_TICK = 0.5  # seconds between looks at requests whose callers stopped waiting


class Hub:
    """Owns the gateways of one swarm and their link socket, inside one asyncio loop."""

    def __init__(self, child: Child, config: HubConfig) -> None:
        self.child = child
        self.signer = child.signer
        self.me = child.boot.identity
        self.loop = asyncio.get_running_loop()
        self.router, self.address = child.link_router(config["bus_host"])
        self.guard = ReplayGuard(self.me)
        self.flushing = False  # a flush is scheduled
        self.queued = 0  # requests waiting for it
        self.producer = Producer(
            self.router,
            self.me,
            self.signer,
            self.guard,
            on_done=self._taken,
            answers=self._answer_frame,
            queued=self._schedule_flush,
        )
        self.dispatcher = self.producer.dispatcher
        self.journal = Journal(config["journal"])
        self.submits: dict[str, int] = {}  # accepted submit -> bees that have yet to handle it
        self.dispatcher.set_routes(routes_from(config["routes"]))
        specs: list[GatewaySpec] = config["gateways"]
        self.metrics = HubMetrics()
        self.guard.dropped = self.metrics.dropped  # one count of dropped frames, by reason
        self.gateways: dict[str, GatewayApp] = {}
        self.runners: list[web.ServerRunner] = []
        self.sites: list[web.TCPSite] = []
        self.ports: dict[str, int] = dict(config["ports"])
        self.pending: dict[str, tuple[str, asyncio.Future[Reply] | None]] = {}
        self.open: dict[str, int] = {}  # per gateway: how many of `pending` are its
        self.healthy = False  # every wanted replica is ready
        self.serving = False  # every bee has a ready replica
        self.not_ready: list[str] = []
        self.bees: dict[str, BeeFigures] = {}  # the supervisor's last figures per bee
        self.failing: dict[str, str | None] = {}  # per gateway: a bee it reaches that keeps failing
        self.accepting = True
        self.stop_event = asyncio.Event()
        self.drain_s = max((s.timeout for s in specs), default=5.0)
        self.specs = specs
        self.idle = asyncio.Event()  # set whenever nothing is pending: what a drain waits for
        self.idle.set()
        self.traceback_token = traceback_token(child.boot.key)
        self._last_stats: HubStats | None = None
        self.swarm_status: SwarmStatus | None = None  # a stack's: its controller's last word

    # -- requests --------------------------------------------------------------------

    def in_flight(self, gateway: str) -> int:
        return self.open.get(gateway, 0)

    def _track(self, rid: str, gateway: str, fut: asyncio.Future[Reply] | None) -> None:
        self.pending[rid] = (gateway, fut)
        self.open[gateway] = self.open.get(gateway, 0) + 1
        self.idle.clear()

    def refusal(self, gw: GatewayApp) -> tuple[int, str] | None:
        """Why a new request to `gw` must be refused at once (status, message), if it must.

        A bee whose replicas are restarting is no reason: the request waits for one
        (bounded by the gateway's timeout). One that keeps dying is."""
        if not self.accepting:
            return 503, "the swarm is stopping"
        if not self.dispatcher.consumers(gw.name):
            return 503, f"not ready: no bee listens to gateway {gw.name!r}"
        failing = self.failing.get(gw.name)
        if failing:
            return 503, f"not ready: {self.why_not_ready(failing)}"
        if self.in_flight(gw.name) >= gw.spec.max_in_flight:
            return 503, f"too busy: {gw.spec.max_in_flight} requests in flight; retry shortly"
        return None

    def why_not_ready(self, bee: str) -> str:
        """Why a bee takes no work, in words (a 503's message, `/healthz`)."""
        figures = self.bees.get(bee)
        if figures is None:
            return f"bee {bee!r} has no ready replica"
        stuck = figures.get("stuck") or []
        if figures["state"] == BeeState.STUCK and stuck:
            call = max(stuck, key=lambda c: c["seconds"])
            return (
                f"bee {bee!r} takes no work: every replica is stuck in a call (request "
                f"{call['request_id']} has run {call['seconds']:g} s, at {call['where']})"
            )
        if figures["failing"]:
            err = figures["last_error"]
            return f"bee {bee!r} keeps failing ({err['message'] if err else 'no replica'})"
        return f"bee {bee!r} has {figures['ready']} of {figures['wanted']} replicas ready"

    def _header(self, gw: GatewayApp, rid: str) -> Header:
        now = time.time()
        return Header(Kind.DATA, rid, gw.name, gw.name, now, now + gw.spec.timeout, Enc.JSON)

    def submit(self, gw: GatewayApp, rid: str, body: bytes) -> None:
        """Journal, then publish without a waiter: kept until every bee that listens has
        handled it (no deadline: promised work waits for a replica, however long)."""
        t0 = time.time()
        self.journal.add(rid, gw.name, body, t0)
        self._resubmit(rid, gw.name, body, t0)

    def _resubmit(self, rid: str, gateway: str, body: bytes, t0: float) -> None:
        self._track(rid, gateway, None)
        header = Header(Kind.DATA, rid, gateway, gateway, t0, 0.0, Enc.JSON)
        self.submits[rid] = len(self.dispatcher.consumers(gateway))
        self._publish(gateway, header, body)

    def _taken(self, parcel: Parcel) -> None:
        """A replica handled one of our messages: a submit is done once every bee has."""
        rid = parcel.header.request_id
        left = self.submits.get(rid)
        if left is None:
            return
        if left > 1:
            self.submits[rid] = left - 1
            return
        del self.submits[rid]
        self.journal.taken(rid)
        if self.pending.get(rid, ("", 1))[1] is None:
            self._forget(rid)

    async def request(self, gw: GatewayApp, rid: str, body: bytes) -> Reply:
        """Publish and wait for the first response (TimeoutError after the timeout)."""
        fut: asyncio.Future[Reply] = self.loop.create_future()
        self._track(rid, gw.name, fut)
        timer = self.loop.call_later(gw.spec.timeout, self._expire, rid)
        self._publish(gw.name, self._header(gw, rid), body)
        try:
            return await fut
        finally:
            timer.cancel()
            self._forget(rid)

    def _publish(self, topic: str, header: Header, body: bytes) -> None:
        self.producer.publish(topic, header, body, [])
        self.queued += 1
        if self.queued >= _FLUSH_AT:
            self._flush()

    def _schedule_flush(self) -> None:
        # what one loop iteration sends a replica leaves in one burst: one wake of its socket
        if not self.flushing:
            self.flushing = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self.flushing = False
        self.queued = 0
        if self.producer.flush():  # a send can swallow the socket's read edge: look again soon
            self.loop.call_soon(self._drain_router)

    def _expire(self, rid: str) -> None:
        entry = self.pending.get(rid)
        self._forget(rid)
        if entry is not None and entry[1] is not None and not entry[1].done():
            entry[1].set_exception(TimeoutError())

    def _forget(self, rid: str) -> None:
        entry = self.pending.pop(rid, None)
        if entry is not None:
            self.open[entry[0]] -= 1
        if not self.pending:
            self.idle.set()

    def _answer(self, rid: str, reply: Reply) -> bool:
        """Give a caller its answer; False if nobody waits for it (late, or a second one)."""
        entry = self.pending.get(rid)
        if entry is None:
            return False
        self._forget(rid)
        fut = entry[1]
        if fut is not None and not fut.done():
            fut.set_result(reply)
        return True

    # -- sockets ---------------------------------------------------------------------

    def _drain_router(self) -> None:
        self.producer.read(time.time())

    def _answer_frame(self, msg: Message) -> None:
        """A bee's answer (or error) to a request: its caller's, unless it came too late."""
        header = msg.header
        if not self._answer(header.request_id, (header.kind, msg.payload, header.sender)):
            gw = self.gateways.get(header.origin)
            if gw is not None:
                gw.metrics.late.inc()

    def _lost(self, body: Lost) -> None:
        """A replica died: its requests go to another one, or their callers hear how it died."""
        identity = body["identity"]
        if body["clean"]:  # retired and drained: everything it held was done
            self.dispatcher.drop(identity)
            return
        text = "\n".join(body["tail"])
        for parcel in self.dispatcher.lost(identity):
            rid = parcel.header.request_id
            message = died_answer(body["message"], parcel)
            if rid in self.submits:  # promised, and cannot be kept: say so
                self.metrics.drop("submit failed")
                print(f"bytewax-nb: submitted request {rid}: {message}", flush=True)
                self._taken(parcel)
            err = bee_error(parcel.bee, "ReplicaDied", message, text, rid)
            self._answer(rid, (Kind.ERROR, dump_json(err), parcel.bee))

    def _drain_control(self) -> None:
        ctl = self.child.control
        while readable(ctl):
            msg = self.child.codec.unpack(ctl.recv_multipart())
            if msg is None:
                self.metrics.drop("signature")
                continue
            kind, body = msg
            if kind == Msg.STATUS:
                self._status(cast(Status, body))
            elif kind == Msg.ROUTES:
                self.dispatcher.set_routes(routes_from(cast(RoutesBody, body)))
            elif kind == Msg.LOST:
                self._lost(cast(Lost, body))
            elif kind == Msg.REPORT:
                self._send(Msg.STATS, self._stats())
            elif kind == Msg.SNAPSHOT:
                self.swarm_status = cast(SwarmStatus, body)
            elif kind == Msg.GATEWAYS:
                self.loop.create_task(self._serve_all(cast("list[GatewaySpec]", body)))
            elif kind == Msg.STOP:
                order = cast("StopOrder | None", body) or StopOrder()
                self.drain_s = min(self.drain_s, order.get("drain", self.drain_s))
                self.stop_event.set()
        if self.producer.bursts:
            self._flush()

    def _status(self, status: Status) -> None:
        self.serving = status["serving"]
        self.healthy = status["healthy"]
        self.not_ready = status["not_ready"]
        self.bees = status["bees"]
        # a bee that keeps dying, or whose every replica is stuck, takes no work: its
        # gateways refuse at once (503, Retry-After) instead of letting callers wait
        self.failing = {
            g: next((b for b in downstream(g, self.bees) if _takes_no_work(self.bees[b])), None)
            for g in self.gateways
        }
        self.metrics.snapshot = status
        self._send(Msg.STATUS_OK, StatusOk(version=status["version"]))

    def _stats(self) -> HubStats:
        dropped = dict(self.metrics.dropped)
        if self.dispatcher.expired:
            dropped["expired"] = dropped.get("expired", 0) + self.dispatcher.expired
        return HubStats(
            gateways=self.metrics.counts(),
            dropped_by=dropped,
            retried=dict(self.dispatcher.retried),
            waiting=sum(len(q) for q in self.dispatcher.waiting.values()),
        )

    def _send(self, kind: Msg, body: Any) -> None:
        self.child.send(kind, body)
        # a send can swallow the DEALER's read edge: look again soon
        self.loop.call_soon(self._drain_control)

    def _beat(self, every: float) -> None:
        """A stack's heartbeat (see `bytewax_nb.stack`): alive, and how it is wired."""
        body = Beat(
            address=self.address,
            routes=routes_to(self.dispatcher.routes),
            ports=self.ports,
            leaving=self.stop_event.is_set(),
            holding=self.dispatcher.unsettled(),
        )
        if self.swarm_status is not None:
            body["tally"] = Tally(
                hub_restarts=self.swarm_status["hub"]["restarts"],
                deaths={bee: view["deaths"] for bee, view in self.swarm_status["bees"].items()},
            )
        self._send(Msg.BEAT, body)
        self.loop.call_later(every, self._beat, every)

    def _on_stdin(self) -> None:
        if self.child.owner_gone() and self.child.stdin_fd is not None:
            self.loop.remove_reader(self.child.stdin_fd)
            self.accepting = False
            self.pending.clear()
            self.open.clear()
            self.idle.set()
            self.drain_s = 0
            self.stop_event.set()

    def _tick(self) -> None:
        self.dispatcher.expire(time.time())
        stats = self._stats()
        if stats != self._last_stats:  # the supervisor's figures follow without being asked
            self._last_stats = stats
            self._send(Msg.STATS, stats)
        self.loop.call_later(_TICK, self._tick)

    # -- lifecycle -------------------------------------------------------------------

    async def _serve(self, spec: GatewaySpec) -> None:
        gw = GatewayApp(self, spec)
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
        self._send(Msg.UP, Up(ports=self.ports, address=self.address))

    async def run(self) -> None:
        loop = self.loop
        fds = (self.router.fileno(), self.child.control.fileno())
        loop.add_reader(fds[0], self._drain_router)
        loop.add_reader(fds[1], self._drain_control)
        if self.child.stdin_fd is not None:
            loop.add_reader(self.child.stdin_fd, self._on_stdin)
        if self.child.boot.stack:  # the engine stops the task with SIGTERM: drain as on STOP
            loop.add_signal_handler(signal.SIGTERM, self.stop_event.set)
        await self._serve_all(self.specs)
        if self.child.boot.stack:
            self._beat(float(HEARTBEAT.get()))
        for rid, gateway, body, t0 in self.journal.pending():  # accepted by a hub before this one
            if gateway in self.gateways:
                self._resubmit(rid, gateway, body, t0)
        self._drain_router()
        self._drain_control()
        self._tick()
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
        for fd in fds:
            loop.remove_reader(fd)
        if self.child.stdin_fd is not None:
            loop.remove_reader(self.child.stdin_fd)  # a no-op for one already removed
        self._flush()
        left = len(self.journal)
        self.child.send(Msg.BYE, Bye(unanswered=len(self.pending), journal=left))
        self.router.close(linger=0)
        self.journal.close()


def _takes_no_work(figures: BeeFigures) -> bool:
    return figures["failing"] or figures["state"] == BeeState.STUCK
