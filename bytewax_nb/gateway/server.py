"""The HTTP gateway: one aiohttp server per gateway, in its own process.

A request is published on the gateway's topic as raw JSON (nothing from HTTP is
ever unpickled) and parked on a future until the first response for its id arrives
on the gateway's response topic, or its timeout answers 504.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from typing import Any

import zmq
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..child import Child, readable
from ..control import Msg
from ..spec import GatewaySpec
from ..wire import Enc, Header, Kind, new_request_id, response_topic, topic_of
from .metrics import GatewayMetrics

__all__ = ["GatewayServer"]

_JSON = "application/json"
_Reply = tuple[int, bytes, str]  # kind, JSON body, sender


def _error(status: int, message: str, request_id: str | None = None, **extra: Any) -> web.Response:
    body = {"error": message, "request_id": request_id, **extra}
    headers = {"X-Request-Id": request_id} if request_id else None
    return web.Response(status=status, body=json.dumps(body).encode(), content_type=_JSON, headers=headers)


class GatewayServer:
    """Serves `POST /gateways/<name>`, `/healthz` and `/metrics` for one gateway."""

    def __init__(self, child: Child, config: dict[str, Any]) -> None:
        self.child = child
        self.spec: GatewaySpec = config["spec"]
        self.name = self.spec.name
        self.topic = topic_of(self.name)
        self.pub, self.sub = child.bus_sockets(config["bus"])
        self.sub.setsockopt(zmq.SUBSCRIBE, response_topic(self.name))
        self.token = self.spec.token.encode() if self.spec.token else None
        self.pending: dict[str, asyncio.Future[_Reply] | None] = {}
        self.metrics = GatewayMetrics(self.name)
        self.metrics.in_flight.set_function(lambda: len(self.pending))
        self.serving = False  # every bee has a ready replica
        self.healthy = False  # every wanted replica is ready
        self.not_ready: list[str] = []
        self.accepting = True
        self.stop_event = asyncio.Event()
        self.drain_s = self.spec.timeout
        self.idle = asyncio.Event()  # set whenever nothing is pending: what a drain waits for
        self.idle.set()
        self.outbox: list[list[Any]] = []
        self.loop = asyncio.get_running_loop()

    # -- HTTP ------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.spec.max_body)
        app.router.add_post("/gateways/{name}", self.handle)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics_view)
        app.router.add_route("*", "/{tail:.*}", self.not_found)
        return app

    def _authorized(self, request: web.Request) -> bool:
        if self.token is None:
            return True
        given = request.headers.get("Authorization", "").encode()
        return hmac.compare_digest(given, b"Bearer " + self.token)

    async def handle(self, request: web.Request) -> web.Response:
        t = time.perf_counter()
        response = await self._handle(request)
        self.metrics.count(response.status, time.perf_counter() - t)
        return response

    async def _handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name != self.name:
            return _error(404, f"unknown gateway {name!r}; this one is {self.name!r}")
        if not self._authorized(request):
            return _error(401, "missing or bad bearer token")
        if request.content_length is not None and request.content_length > self.spec.max_body:
            return _error(413, f"body larger than {self.spec.max_body} bytes")
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"body larger than {self.spec.max_body} bytes")
        try:
            json.loads(body)
        except ValueError as exc:
            return _error(400, f"invalid JSON: {exc}")
        if not self.accepting:
            return _error(503, "the swarm is stopping")
        if not self.serving:
            return _error(503, f"not ready: no ready replica of {', '.join(self.not_ready) or 'the swarm'}")
        rid = new_request_id()
        now = time.time()
        header = Header(Kind.DATA, rid, self.name, self.name, now, now + self.spec.timeout, Enc.JSON)
        frames = self.child.signer.frames(self.topic, header, body)
        if request.query.get("mode") == "submit":
            self.pending[rid] = None
            self.loop.call_later(self.spec.timeout, self._forget, rid)
            self._publish(frames)
            return web.Response(
                status=202,
                body=json.dumps({"request_id": rid}).encode(),
                content_type=_JSON,
                headers={"X-Request-Id": rid},
            )
        fut: asyncio.Future[_Reply] = self.loop.create_future()
        self.pending[rid] = fut
        timer = self.loop.call_later(self.spec.timeout, self._expire, rid)
        self._publish(frames)
        try:
            kind, reply, sender = await fut
        except TimeoutError:
            return _error(504, f"no response within {self.spec.timeout:g} s", rid)
        finally:
            timer.cancel()
            self._forget(rid)
        if kind == Kind.RESPONSE:
            return web.Response(body=reply, content_type=_JSON, headers={"X-Request-Id": rid})
        err = json.loads(reply)
        return _error(
            500,
            str(err.get("error", "")),
            rid,
            bee=err.get("bee", sender),
            type=err.get("type", "Exception"),
            traceback=err.get("traceback", ""),
        )

    def _publish(self, frames: list[Any]) -> None:
        # requests handled in one loop iteration leave in one burst: one I/O-thread wake
        if not self.outbox:
            self.loop.call_soon(self._flush)
        self.outbox.append(frames)

    def _flush(self) -> None:
        out, self.outbox = self.outbox, []
        for frames in out:
            self.pub.send_multipart(frames)

    def _expire(self, rid: str) -> None:
        fut = self.pending.get(rid)
        self._forget(rid)
        if fut is not None and not fut.done():
            fut.set_exception(TimeoutError())

    def _forget(self, rid: str) -> None:
        self.pending.pop(rid, None)
        if not self.pending:
            self.idle.set()

    async def healthz(self, request: web.Request) -> web.Response:
        body = {"ready": self.healthy, "serving": self.serving, "not_ready": self.not_ready}
        return web.Response(
            status=200 if self.healthy else 503, body=json.dumps(body).encode(), content_type=_JSON
        )

    async def metrics_view(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _error(401, "missing or bad bearer token")
        data = generate_latest(self.metrics.registry)
        return web.Response(body=data, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def not_found(self, request: web.Request) -> web.Response:
        return _error(404, f"no route {request.method} {request.path}")

    # -- sockets -------------------------------------------------------------------

    def _drain_bus(self) -> None:
        # ZeroMQ's FD is edge-triggered: read while EVENTS says so, or the edge is lost
        sub, signer, pending = self.sub, self.child.signer, self.pending
        while readable(sub):
            msg = signer.open(sub.recv_multipart())
            if msg is None:
                self.metrics.dropped += 1
                continue
            header = msg.header
            if header.kind == Kind.PROBE:
                self._send(Msg.SAW, {"producer": header.origin, "token": header.request_id})
                continue
            if header.kind not in (Kind.RESPONSE, Kind.ERROR) or header.request_id not in pending:
                self.metrics.late.inc()
                continue
            fut = pending[header.request_id]
            self._forget(header.request_id)
            if fut is not None and not fut.done():
                fut.set_result((header.kind, msg.payload, header.sender))

    def _drain_control(self) -> None:
        ctl = self.child.control
        while True:
            try:
                raw = ctl.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            msg = self.child.codec.unpack(raw)
            if msg is None:
                self.metrics.dropped += 1
                continue
            kind, body = msg
            if kind == Msg.STATUS:
                self.serving = bool(body["serving"])
                self.healthy = bool(body["healthy"])
                self.not_ready = list(body["not_ready"])
                self.metrics.snapshot = body
                self._send(Msg.STATUS_OK, {"version": body["version"]})
            elif kind == Msg.PROBE:
                for topic in body["topics"]:
                    head = Header(Kind.PROBE, body["token"], self.child.boot.identity, self.name)
                    self.pub.send_multipart(self.child.signer.frames(topic.encode("latin-1"), head, b""))
            elif kind == Msg.STOP:
                self.drain_s = min(self.spec.timeout, float((body or {}).get("drain", self.spec.timeout)))
                self.stop_event.set()

    def _send(self, kind: str, body: Any) -> None:
        self.child.send(kind, body)
        # a send can swallow the DEALER's read edge: look again soon
        self.loop.call_soon(self._drain_control)

    def _on_stdin(self) -> None:
        if self.child.owner_gone():
            self.loop.remove_reader(self.child.stdin_fd)
            self.stop_event.set()
            self.accepting = False
            self.pending.clear()
            self.idle.set()

    # -- lifecycle -------------------------------------------------------------------

    async def run(self) -> None:
        loop = self.loop
        loop.add_reader(self.sub.fileno(), self._drain_bus)
        loop.add_reader(self.child.control.fileno(), self._drain_control)
        loop.add_reader(self.child.stdin_fd, self._on_stdin)
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.spec.host, self.spec.port, shutdown_timeout=1.0)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        port = sockets[0].getsockname()[1] if sockets else self.spec.port
        self._send(Msg.UP, {"port": port, "host": self.spec.host})
        self._drain_bus()
        self._drain_control()
        await self.stop_event.wait()
        # drain: refuse new work, give what is in flight its time, then close
        self.accepting = False
        await site.stop()
        if self.pending:
            self.idle.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.idle.wait(), self.drain_s)
        await runner.cleanup()
        for fd in (self.sub.fileno(), self.child.control.fileno(), self.child.stdin_fd):
            loop.remove_reader(fd)  # a no-op for one already removed
        self.child.send(Msg.BYE, {"unanswered": len(self.pending)})
