"""One HTTP gateway: `POST /gateways/<name>`, `/healthz`, `/metrics`, `/swarm`, its
contract (`/openapi.json`, `/docs`) and, for a model, the inference protocol's `/v2`
routes; clear JSON errors.

The body is validated as JSON (and against the declared schema, if any) and published
as those bytes (nothing from HTTP is ever unpickled); the handler then waits for the
first response with the request's id, or answers 504 when the gateway's timeout passes.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Sequence
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from ..bus.wire import TRACE_HEADER, TRACEBACK_HEADER, Kind, new_request_id
from ..model import strictjson
from ..model.contract import free
from ..model.protocol import BeeError, SwarmStatus, http_error_body
from ..model.spec import GatewaySpec
from ..model.terms import Contract
from ..model.tracing import TraceContext, parse_trace_id, parse_traceparent
from . import apidocs, streaming
from .checks import RequestCheck
from .metrics import GatewayMetrics, HubMetrics
from .openapi import document
from .streams import Chunked
from .traces import Traces
from .v2routes import V2Routes
from .view import SwarmView
from .waiting import Reply


class Serving(Protocol):
    """What a gateway needs of the process that serves it (the hub): whether to take a
    request, and where to send it. A view, not the whole hub."""

    view: SwarmView  # readiness and figures, as the supervisor last said them
    metrics: HubMetrics
    traceback_token: bytes

    def in_flight(self, gateway: str) -> int: ...

    def refusal(self, gw: GatewayApp) -> tuple[int, str] | None: ...

    def submit(self, gw: GatewayApp, rid: str, body: bytes) -> None: ...

    traces: Traces

    async def request(
        self,
        gw: GatewayApp,
        rid: str,
        body: bytes,
        tensors: Sequence[Any] | None = None,
        trace: TraceContext | None = None,
        asked: bool = False,
    ) -> Reply | Chunked: ...

    def took(self, rid: str, stream: Chunked) -> None: ...

    def finish(self, rid: str, stream: Chunked) -> None: ...


__all__ = ["GatewayApp", "Reply", "Serving"]

_JSON = "application/json"
_PREFIX = "/gateways/"
_DOCS = "/docs"
_GETS = ("/healthz", "/metrics", "/swarm", "/openapi.json")
_PREFLIGHT = {
    "Access-Control-Allow-Methods": "POST, GET",
    "Access-Control-Allow-Headers": "Content-Type, Authorization, Accept",
    "Access-Control-Max-Age": "600",
}
_RETRY_AFTER = "1"  # seconds a client told "too busy" should wait


def without_tracebacks(status: SwarmStatus) -> SwarmStatus:
    """The status with every bee's last error's traceback left out."""
    out: SwarmStatus = json.loads(json.dumps(status))
    for bee in out.get("bees", {}).values():
        errors: list[Any] = [bee.get("last_error"), *(r.get("last_error") for r in bee.get("replicas", []))]
        for err in errors:
            if err:
                err["traceback"] = ""
    return out


def _json(status: int, body: Any, request_id: str | None = None, **headers: str) -> web.Response:
    if request_id:
        headers["X-Request-Id"] = request_id
    return web.Response(status=status, body=json.dumps(body).encode(), content_type=_JSON, headers=headers)


def _error(status: int, message: str, request_id: str | None = None, **extra: Any) -> web.Response:
    return _json(status, {"error": message, "request_id": request_id, **extra}, request_id)


def _told(response: web.Response, trace: TraceContext | None) -> web.Response:
    """A traced request's answer tells its caller the trace (W3C `traceresponse`)."""
    if trace is not None:
        response.headers["traceresponse"] = trace.traceparent()
    return response


def _not_allowed(method: str, path: str, allow: str) -> web.Response:
    response = _error(405, f"method {method} not allowed on {path}; use {allow}")
    response.headers["Allow"] = allow
    return response


class GatewayApp:
    """The aiohttp application of one gateway, publishing through the hub."""

    def __init__(self, hub: Serving, spec: GatewaySpec) -> None:
        self.hub = hub
        self.spec = spec
        self.name = spec.name
        self.token = spec.token.encode() if spec.token else None
        self.metrics = GatewayMetrics(hub.metrics, spec.name, lambda: hub.in_flight(spec.name))
        # a browser page on `spec.cors` (an origin, or "*") may call it
        self.cors = {"Access-Control-Allow-Origin": spec.cors, "Vary": "Origin"} if spec.cors else {}
        self.contract: Contract = free()
        self.check: RequestCheck | None = None
        self.v2 = V2Routes(self)

    def promise(self, contract: Contract | None) -> None:
        """What this gateway's bees promise now (the supervisor says so on every change)."""
        contract = contract or free()
        if contract != self.contract:
            self.contract = contract
            self.check = RequestCheck(contract["request"]) if contract["request"] else None

    def server(self) -> web.Server:
        """aiohttp's low-level server: three routes need no router, and skipping the
        application layer spares each request a tenth of the hub's time."""
        loop = asyncio.get_running_loop()
        limit = self.spec.max_body

        def request(message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> web.BaseRequest:
            return web.BaseRequest(message, payload, protocol, writer, task, loop, client_max_size=limit)

        # aiohttp closes a connection that has not sent a whole request within its
        # keep-alive timeout (from connect, or from the last answer): that is the header
        # timeout, so a client trickling bytes cannot hold a socket for long
        return web.Server(
            self.dispatch,
            request_factory=request,
            access_log=None,
            keepalive_timeout=self.spec.read_timeout,
        )

    async def dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        response = await self._route(request)
        if self.cors and not response.prepared:  # a stream has them already
            response.headers.update(self.cors)
        return response

    async def _route(self, request: web.BaseRequest) -> web.StreamResponse:
        path, method = request.path, request.method
        if path.startswith(_PREFIX):
            if method == "POST" or (method == "GET" and "payload" in request.query):
                return await self.handle(request, path[len(_PREFIX) :])
            if method == "OPTIONS" and self.cors:  # a browser's preflight
                return web.Response(status=204, headers=_PREFLIGHT)
            response = _error(
                405, f"method {method} not allowed on {path}; use POST, or GET with ?payload=<JSON>"
            )
            response.headers["Allow"] = "POST, GET"
            return response
        if path.startswith("/v2"):
            return await self.v2.dispatch(request)
        if path == "/traces" or path.startswith("/traces/"):
            if method not in ("GET", "HEAD"):
                return _not_allowed(method, path, "GET, HEAD")
            return self.traces_view(request, path[len("/traces/") :])
        if path in _GETS or path.startswith(_DOCS):
            if method not in ("GET", "HEAD"):
                return _not_allowed(method, path, "GET, HEAD")
            if path == "/swarm":
                return self.swarm_view(request)
            if path == "/openapi.json":
                return _json(200, document(self.spec, self.contract))
            if path.startswith(_DOCS):
                return apidocs.page(self.name) if path == _DOCS else apidocs.asset(path[len(_DOCS) + 1 :])
            return self.healthz() if path == "/healthz" else self.metrics_view(request)
        return _error(404, f"no route {method} {path}")

    def authorized(self, request: web.BaseRequest) -> bool:
        if self.token is None:
            return True
        given = request.headers.get("Authorization", "").encode()
        return hmac.compare_digest(given, b"Bearer " + self.token)

    def _tracebacks(self, request: web.BaseRequest) -> bool:
        return self.spec.tracebacks or self._owner(request)

    def _owner(self, request: web.BaseRequest) -> bool:
        """The swarm's owner (the notebook) sent it: it showed the traceback token."""
        given = request.headers.get(TRACEBACK_HEADER)
        return given is not None and hmac.compare_digest(given.encode(), self.hub.traceback_token)

    async def handle(self, request: web.BaseRequest, name: str) -> web.StreamResponse:
        t = time.perf_counter()
        response = await self._handle(request, name)
        self.metrics.count(response.status, time.perf_counter() - t)
        return response

    async def read(self, request: web.BaseRequest) -> bytes | web.Response:
        """The body, or the error answer (413 too large, 408 too slow)."""
        limit = self.spec.max_body
        if request.content_length is not None and request.content_length > limit:
            return _error(413, f"body larger than {limit} bytes")
        try:
            if request.content.is_eof():  # all there already (the usual small body): no timer
                return await request.read()
            async with asyncio.timeout(self.spec.read_timeout):
                return await request.read()
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"body larger than {limit} bytes")
        except TimeoutError:
            return _error(408, f"the body did not arrive within {self.spec.read_timeout:g} s")

    async def _handle(self, request: web.BaseRequest, name: str) -> web.StreamResponse:
        # the token first: a caller without it learns nothing, not even the gateway's name
        if not self.authorized(request):
            return _error(401, "missing or bad bearer token")
        if name != self.name:
            return _error(404, f"unknown gateway {name!r}; this one is {self.name!r}")
        if request.method == "GET":  # EventSource cannot POST: the payload is in the query
            body: bytes | web.Response = request.query["payload"].encode()
        else:
            body = await self.read(request)
        if isinstance(body, web.Response):
            return body
        try:
            payload = strictjson.loads(body)
        except ValueError as exc:
            return _error(400, f"invalid JSON: {exc}")
        except RecursionError:
            return _error(400, "invalid JSON: nested too deeply")
        if self.check is not None:
            located = self.check.errors(payload)
            if located:
                why = "; ".join(f"{e['pointer'] or '/'}: {e['message']}" for e in located)
                return _error(422, f"the payload does not match the declared schema: {why}", errors=located)
        hub = self.hub
        refused = hub.refusal(self)
        if refused is not None:
            status, message = refused
            response = _error(status, message)
            if status == 503:
                response.headers["Retry-After"] = _RETRY_AFTER
            return response
        rid = new_request_id()
        trace, asked, tell = self._trace(request, rid)
        told = trace if tell else None
        mode = request.query.get("mode") if request.query_string else None
        if mode not in (None, "submit"):
            return _error(400, f"unknown mode {mode!r}: the one mode is submit")
        if mode == "submit":
            hub.submit(self, rid, body)
            return _json(202, {"request_id": rid}, rid)
        try:
            answer = await hub.request(self, rid, body, trace=trace, asked=asked)
        except TimeoutError:
            cold = hub.view.cold(self.spec.name)
            if cold is not None:  # scaled to zero and not started in time: come back soon
                why = f"bee {cold!r} had no replica (autoscaled to zero) and none served in time"
                response = _error(503, why, rid)
                response.headers["Retry-After"] = _RETRY_AFTER
                return _told(response, told)
            return _told(_error(504, f"no response within {self.spec.timeout:g} s", rid), told)
        if isinstance(answer, Chunked):
            return await self._stream(request, answer, rid)
        kind, reply, _, _ = answer
        if kind == Kind.RESPONSE:
            return _told(web.Response(body=reply, content_type=_JSON, headers={"X-Request-Id": rid}), told)
        err: BeeError = json.loads(reply)
        status = err.get("status", 500)
        said = http_error_body(err, rid, tracebacks=self._tracebacks(request))
        return _told(_json(status if 400 <= status < 600 else 500, said, rid), told)

    def _trace(self, request: web.BaseRequest, rid: str) -> tuple[TraceContext | None, bool, bool]:
        """Whether this request is traced (a tracing gateway, or the owner asking: kept
        by id), as which trace (its caller's `traceparent` continued, else its own), and
        whether its answer says which (to a caller that sent a `traceparent`, or asked)."""
        headers = request.headers
        given = headers.get(TRACE_HEADER)
        asked = given is not None and self._owner(request)
        if not (self.spec.tracing or asked):
            return None, False, False
        own = parse_trace_id(given) if asked else None
        if own is not None:  # the owner's test call: the id it will look up
            return TraceContext(own), True, True
        caller = parse_traceparent(headers.get("traceparent"))
        if caller is not None:
            return caller, asked, True
        return TraceContext.new(rid), asked, asked

    async def _stream(self, request: web.BaseRequest, stream: Chunked, rid: str) -> web.StreamResponse:
        """A streamed answer, as its caller asked for it (see `streaming`); a caller that
        goes away closes the bee's generator."""
        metrics, hub = self.metrics, self.hub
        metrics.streams_open += 1
        metrics.streams.inc()

        def took() -> None:
            metrics.chunks.inc()
            metrics.chunks_sent += 1
            hub.took(rid, stream)

        try:
            return await streaming.write(
                request, stream, rid, tracebacks=self._tracebacks(request), took=took, headers=self.cors
            )
        finally:
            metrics.streams_open -= 1
            metrics.streams.dec()
            if not stream.done:
                metrics.closed.inc()
            hub.finish(rid, stream)

    def healthz(self) -> web.Response:
        view = self.hub.view
        why = {bee: view.why_not_ready(bee) for bee in view.not_ready}
        body = {"ready": view.healthy, "serving": view.serving, "not_ready": view.not_ready, "why": why}
        return _json(200 if view.healthy else 503, body)

    def swarm_view(self, request: web.BaseRequest) -> web.Response:
        """A deployed stack's status, as its controller last sent it (what an attached
        notebook shows); bees' tracebacks only for who may see them."""
        if not self.authorized(request):
            return _error(401, "missing or bad bearer token")
        status = self.hub.view.swarm_status
        if status is None:
            return _error(404, "no swarm status here: only a deployed stack's gateways have one")
        if not self._tracebacks(request):
            status = without_tracebacks(status)
        return _json(200, status)

    def traces_view(self, request: web.BaseRequest, trace_id: str) -> web.Response:
        """This gateway's kept traces (not another's: its token may guard them), or one by id."""
        if not self.authorized(request):
            return _error(401, "missing or bad bearer token")
        traces = self.hub.traces
        if not trace_id:
            return _json(200, traces.listing(self.name))
        kept = traces.find(trace_id.lower(), self.name)
        if kept is None:
            return _error(
                404, f"no trace {trace_id!r} kept here (the slowest, the failed and the asked-for are)"
            )
        return _json(200, kept.record())

    def metrics_view(self, request: web.BaseRequest) -> web.Response:
        if not self.authorized(request):
            return _error(401, "missing or bad bearer token")
        data = generate_latest(self.metrics.registry)
        return web.Response(body=data, headers={"Content-Type": CONTENT_TYPE_LATEST})
