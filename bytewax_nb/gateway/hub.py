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
import json
import signal
import time
from collections.abc import Sequence
from typing import Any, cast

from aiohttp import web

from ..bus.child import Child
from ..bus.producer import Parcel, Producer, died_answer
from ..bus.sockio import readable
from ..bus.wire import (
    STREAM_CREDIT,
    Enc,
    Flag,
    Header,
    Kind,
    Message,
    ReplayGuard,
    dump_json,
    traceback_token,
)
from ..model.protocol import (
    Beat,
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
from ..model.terms import Contract
from ..model.tracing import TraceContext
from .http import GatewayApp
from .journal import Journal
from .metrics import HubMetrics
from .otel import otlp_exporter
from .streams import Chunked
from .submits import Submits
from .traces import Traces
from .view import SwarmView
from .waiting import Reply, Waiting

__all__ = ["Hub"]

_FLUSH_AT = 8  # requests that leave at once, so the bees start while more arrive
_TICK = 0.5  # seconds between looks at requests whose callers stopped waiting


class Hub:
    """Owns the gateways of one swarm and their link socket, inside one asyncio loop."""

    def __init__(self, child: Child, config: HubConfig) -> None:
        self.child = child
        self.loop = asyncio.get_running_loop()
        router, self.address = child.link_router(config["bus_host"])
        me = child.boot.identity
        self.guard = ReplayGuard(me)
        self.flushing = False  # a flush is scheduled
        self.queued = 0  # requests waiting for it
        self.producer = Producer(
            router,
            me,
            child.signer,
            self.guard,
            on_done=self._taken,
            answers=self._answer_frame,
            queued=self._schedule_flush,
        )
        self.dispatcher = self.producer.dispatcher  # the producer's bookkeeping, read often here
        self.dispatcher.set_routes(routes_from(config["routes"]))
        self.submits = Submits(Journal(config["journal"]))
        specs: list[GatewaySpec] = config["gateways"]
        self.metrics = HubMetrics()
        self.guard.dropped = self.metrics.dropped  # one count of dropped frames, by reason
        self.gateways: dict[str, GatewayApp] = {}
        self.servers: list[tuple[web.ServerRunner, web.TCPSite]] = []
        self.ports: dict[str, int] = dict(config["ports"])
        self.waiting = Waiting()
        self.view = SwarmView()
        self.accepting = True
        self.stop_event = asyncio.Event()
        self.drain_s = max((s.timeout for s in specs), default=5.0)
        self.specs = specs
        self.traceback_token = traceback_token(child.boot.key)
        self.otlp = otlp_exporter()
        self.traces = Traces(self.otlp.put if self.otlp else None)
        self.hops: dict[str, str] = {}  # request id -> its answer's trace, until `_traced` reads it
        self._last_stats: HubStats | None = None
        self.contracts: dict[str, Contract] = dict(config.get("contracts", {}))
        self.model_servers: dict[int, Any] = {}  # gRPC port -> its ModelServer (grpcserver)

    # -- requests --------------------------------------------------------------------

    def in_flight(self, gateway: str) -> int:
        return self.waiting.in_flight(gateway)

    def refusal(self, gw: GatewayApp) -> tuple[int, str] | None:
        """Why a new request to `gw` must be refused at once (status, message), if it must.

        A bee whose replicas are restarting is no reason: the request waits for one
        (bounded by the gateway's timeout). One that keeps dying, or whose every replica
        is stuck, is."""
        if not self.accepting:
            return 503, "the swarm is stopping"
        if not self.dispatcher.consumers(gw.name):
            return 503, f"not ready: no bee listens to gateway {gw.name!r}"
        failing = self.view.failing.get(gw.name)
        if failing:
            return 503, f"not ready: {self.view.why_not_ready(failing)}"
        if self.in_flight(gw.name) >= gw.spec.max_in_flight:
            return 503, f"too busy: {gw.spec.max_in_flight} requests in flight; retry shortly"
        return None

    def submit(self, gw: GatewayApp, rid: str, body: bytes) -> None:
        """Journal, then publish without a waiter: kept until every bee that listens has
        handled it (no deadline: promised work waits for a replica, however long)."""
        t0 = time.time()
        self.submits.journal.add(rid, gw.name, body, t0)
        self._resubmit(rid, gw.name, body, t0)

    def _resubmit(self, rid: str, gateway: str, body: bytes, t0: float) -> None:
        self.waiting.track(rid, gateway, None)
        header = Header(Kind.DATA, rid, gateway, gateway, t0, 0.0, Enc.JSON)
        self.submits.add(rid, len(self.dispatcher.consumers(gateway)))
        self._publish(gateway, header, body)

    def _taken(self, parcel: Parcel) -> None:
        """A replica handled one of our messages: a submit is done once every bee has."""
        rid = parcel.header.request_id
        if self.submits.taken(rid) and self.waiting.is_submit(rid):
            self.waiting.forget(rid)

    async def request(
        self,
        gw: GatewayApp,
        rid: str,
        body: bytes,
        tensors: Sequence[Any] | None = None,
        trace: TraceContext | None = None,
        asked: bool = False,
    ) -> Reply | Chunked:
        """Publish and wait for the first response (TimeoutError after the timeout): a
        plain answer, or the stream its chunks come in (the caller ends it: `finish`).
        `tensors`: an inference call, `body` describing the raw tensors given here.
        `trace`: its bees record their times, kept here (`asked`: by id, for the owner)."""
        fut: asyncio.Future[Reply | Chunked] = self.loop.create_future()
        self.waiting.track(rid, gw.name, fut, gw.spec.timeout)
        now = time.time()
        enc = Enc.JSON if tensors is None else Enc.TENSORS
        header = Header(Kind.DATA, rid, gw.name, gw.name, now, now + gw.spec.timeout, enc)
        if tensors is not None:
            header.flags = Flag.TENSOR
        if trace is None and gw.spec.tracing:  # an inference call (v2, gRPC) through a tracing gateway
            trace = TraceContext.new(rid)
        if trace is not None:
            header.trace = trace.wire()
        self._publish(gw.name, header, body, tensors or ())
        answer: Reply | Chunked | None = None
        try:
            answer = await fut
            return answer
        finally:
            if trace is not None:
                self._traced(gw.name, rid, trace, now, answer, asked)
            if not isinstance(answer, Chunked):
                self.waiting.forget(rid)

    def _traced(
        self,
        gateway: str,
        rid: str,
        trace: TraceContext,
        t0: float,
        answer: Reply | Chunked | None,
        asked: bool,
    ) -> None:
        """A traced request is over (or its stream began): its hops, as its answer brought them."""
        status, error = 200, ""
        if answer is None:
            status, error = 504, "no answer within the gateway's timeout"
        elif not isinstance(answer, Chunked) and answer[0] == Kind.ERROR:
            err = json.loads(answer[1])
            status, error = err.get("status", 500), f"{err.get('type', 'Error')}: {err.get('message', '')}"
        hops = self.hops.pop(rid, trace.wire())
        self.traces.add(hops, trace.parent_id, rid, gateway, t0, time.time(), status, error, asked)

    def took(self, rid: str, stream: Chunked) -> None:
        """The caller took chunks: its producer may make as many more."""
        if stream.taken - stream.granted >= STREAM_CREDIT // 2:
            n, stream.granted = stream.taken - stream.granted, stream.taken
            self.producer.tell(stream.source, Kind.MORE, rid, n)
            self._flush()

    def finish(self, rid: str, stream: Chunked) -> None:
        """A stream's caller is done with it; one that went away before the end closes
        the bee's generator."""
        self.waiting.forget(rid)
        if not stream.done:
            self.producer.tell(stream.source, Kind.CANCEL, rid, 0)
            self._flush()

    def _publish(self, topic: str, header: Header, body: bytes, buffers: Sequence[Any] = ()) -> None:
        self.producer.publish(topic, header, body, list(buffers))
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

    # -- sockets ---------------------------------------------------------------------

    def _drain_router(self) -> None:
        if self.producer.read(time.time()):  # a stream began: its first chunk is written first
            self.loop.call_soon(self._drain_router)

    def _answer_frame(self, msg: Message) -> None:
        """A bee's answer (or error, or a stream's chunk) to a request: its caller's,
        unless it came too late (a stream nobody reads any more is told to stop)."""
        header = msg.header
        if header.kind == Kind.CHUNK:
            if self.waiting.chunk(header.request_id, header.src, header.chunk, header.flags, msg.payload):
                if header.trace and header.chunk == 0:  # a stream's trace: to its first chunk
                    self.hops[header.request_id] = header.trace
                return
            if not header.flags & Flag.END:
                self.producer.tell(header.src, Kind.CANCEL, header.request_id, 0)
            answered = False
        else:
            reply = (header.kind, msg.payload, header.sender, msg.buffers)
            answered = self.waiting.answer(header.request_id, reply)
            if answered and header.trace:  # read by `_traced` once its caller has it
                self.hops[header.request_id] = header.trace
        if not answered:
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
        # a stream under way is not started again: its caller has chunks it would get twice
        for parcel in self.dispatcher.lost(
            identity, final=lambda p: self.waiting.streaming(p.header.request_id)
        ):
            rid = parcel.header.request_id
            message = died_answer(body["message"], parcel)
            if rid in self.submits:  # promised, and cannot be kept: say so
                self.metrics.drop("submit failed")
                print(f"bytewax-nb: submitted request {rid}: {message}", flush=True)
                self._taken(parcel)
            err = bee_error(parcel.bee, "ReplicaDied", message, text, rid)
            self.waiting.answer(rid, (Kind.ERROR, dump_json(err), parcel.bee, []))

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
                self.view.swarm_status = cast(SwarmStatus, body)
            elif kind == Msg.CONTRACTS:
                self.contracts = cast("dict[str, Contract]", body)
                for name, gw in self.gateways.items():
                    gw.promise(self.contracts.get(name))
            elif kind == Msg.GATEWAYS:
                self.loop.create_task(self._serve_all(cast("list[GatewaySpec]", body)))
            elif kind == Msg.STOP:
                order = cast("StopOrder | None", body) or StopOrder()
                self.drain_s = min(self.drain_s, order.get("drain", self.drain_s))
                self.stop_event.set()
        if self.producer.bursts:
            self._flush()

    def _status(self, status: Status) -> None:
        self.view.apply(status, self.gateways)
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
            outstanding=self.dispatcher.outstanding(),
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
        last = self.view.swarm_status
        if last is not None:
            body["tally"] = Tally(
                hub_restarts=last["hub"]["restarts"],
                deaths={bee: view["deaths"] for bee, view in last["bees"].items()},
            )
        self._send(Msg.BEAT, body)
        self.loop.call_later(every, self._beat, every)

    def _on_stdin(self) -> None:
        if self.child.owner_gone() and self.child.stdin_fd is not None:
            self.loop.remove_reader(self.child.stdin_fd)
            self.accepting = False
            self.waiting.clear()
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
        gw.promise(self.contracts.get(spec.name))
        runner = web.ServerRunner(gw.server(), handle_signals=False)
        await runner.setup()
        port = self.ports.get(spec.name, spec.port)  # a restarted hub keeps its URLs
        site = web.TCPSite(runner, spec.host, port, shutdown_timeout=1.0)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        self.ports[spec.name] = sockets[0].getsockname()[1] if sockets else port
        self.gateways[spec.name] = gw
        self.servers.append((runner, site))
        if spec.grpc_port is not None:
            await self._serve_grpc(gw)
        self.drain_s = max(self.drain_s, spec.timeout)

    async def _serve_grpc(self, gw: GatewayApp) -> None:
        """Serve `gw` as a model on its gRPC port too (one server per port)."""
        from .grpcserver import ModelServer  # the grpc extra: only a gateway that asks pays for it

        spec = gw.spec
        port = cast(int, spec.grpc_port)
        server = self.model_servers.get(port)
        if server is None:
            server = ModelServer(spec.host, port, lambda: self.view.healthy, spec.max_body)
            await server.start()
            self.model_servers[port] = server
        server.models[spec.name] = gw

    async def _serve_all(self, specs: list[GatewaySpec]) -> None:
        """Serve every gateway not served yet, then tell the supervisor where."""
        for spec in specs:
            if spec.name not in self.gateways:
                await self._serve(spec)
        self._send(Msg.UP, Up(ports=self.ports, address=self.address))

    async def run(self) -> None:
        loop = self.loop
        fds = (self.producer.router.fileno(), self.child.control.fileno())
        loop.add_reader(fds[0], self._drain_router)
        loop.add_reader(fds[1], self._drain_control)
        if self.child.stdin_fd is not None:
            loop.add_reader(self.child.stdin_fd, self._on_stdin)
        if self.child.boot.stack:  # the engine stops the task with SIGTERM: drain as on STOP
            loop.add_signal_handler(signal.SIGTERM, self.stop_event.set)
        await self._serve_all(self.specs)
        if self.child.boot.stack:
            self._beat(float(HEARTBEAT.get()))
        for rid, gateway, body, t0 in self.submits.journal.pending():  # accepted by a hub before this one
            if gateway in self.gateways:
                self._resubmit(rid, gateway, body, t0)
        self._drain_router()
        self._drain_control()
        self._tick()
        await self.stop_event.wait()
        # drain: refuse new work, give what is in flight its time, then close
        self.accepting = False
        for _, site in self.servers:
            await site.stop()
        if len(self.waiting):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.waiting.idle.wait(), self.drain_s)
        for runner, _ in self.servers:
            await runner.cleanup()
        for server in self.model_servers.values():
            await server.stop(1.0)
        if self.otlp is not None:  # the traces of the last requests, out
            await asyncio.to_thread(self.otlp.close)
        for fd in fds:
            loop.remove_reader(fd)
        if self.child.stdin_fd is not None:
            loop.remove_reader(self.child.stdin_fd)  # a no-op for one already removed
        self._flush()
        left = len(self.submits.journal)
        self.child.send(Msg.BYE, Bye(unanswered=len(self.waiting), journal=left))
        self.producer.close()
        self.submits.journal.close()
