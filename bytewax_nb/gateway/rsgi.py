"""An experiment, for the bench only: a gateway's call route served by Granian's
embedded server (RSGI; its HTTP is Rust) instead of aiohttp, to measure which HTTP core
serves callers best on the same hub (`bench/bench_protocols.py`). Selected with
`BYTEWAX_NB_HTTP_CORE=granian`: `POST /gateways/<name>` with plain answers and the
usual errors; every other route answers 501. Granian calls itself experimental in this
mode; it is not how a swarm serves callers."""

from __future__ import annotations

import asyncio
import hmac
import json
from typing import Any

from ..bus.wire import Kind, new_request_id
from ..model.protocol import http_error_body
from .streams import Chunked

__all__ = ["GranianGateway"]

_JSON = [("content-type", "application/json")]


def _said(proto: Any, status: int, body: Any, rid: str | None = None) -> None:
    headers = [*_JSON, ("x-request-id", rid)] if rid else _JSON
    proto.response_bytes(status, headers, json.dumps(body).encode())


class GranianGateway:
    """One gateway's call route on a Granian server, in the hub's event loop."""

    def __init__(self, gw: Any) -> None:
        self.gw = gw
        self.route = f"/gateways/{gw.name}"
        self.server: Any = None
        self.task: asyncio.Task[None] | None = None

    async def app(self, scope: Any, proto: Any) -> None:
        gw = self.gw
        if scope.path != self.route or scope.method != "POST":
            _said(
                proto,
                501,
                {"error": "only POST /gateways/<name> is served by the granian core", "request_id": None},
            )
            return
        if gw.token is not None:
            given = (scope.headers.get("authorization") or "").encode()
            if not hmac.compare_digest(given, b"Bearer " + gw.token):
                _said(proto, 401, {"error": "missing or bad bearer token", "request_id": None})
                return
        body = await proto()
        if len(body) > gw.spec.max_body:
            _said(proto, 413, {"error": f"body larger than {gw.spec.max_body} bytes", "request_id": None})
            return
        try:
            json.loads(body)
        except (ValueError, RecursionError) as exc:
            _said(proto, 400, {"error": f"invalid JSON: {exc}", "request_id": None})
            return
        refused = gw.hub.refusal(gw)
        if refused is not None:
            _said(proto, refused[0], {"error": refused[1], "request_id": None})
            return
        rid = new_request_id()
        try:
            answer = await gw.hub.request(gw, rid, body)
        except TimeoutError:
            _said(proto, 504, {"error": f"no response within {gw.spec.timeout:g} s", "request_id": rid}, rid)
            return
        if isinstance(answer, Chunked):
            gw.hub.finish(rid, answer)
            _said(proto, 501, {"error": "streams are not served by the granian core", "request_id": rid}, rid)
            return
        kind, reply, _, _ = answer
        if kind == Kind.RESPONSE:
            proto.response_bytes(200, [*_JSON, ("x-request-id", rid)], reply)
            return
        err = json.loads(reply)
        _said(proto, int(err.get("status", 500)), http_error_body(err, rid, tracebacks=False), rid)

    async def start(self, host: str, port: int) -> None:
        from granian.constants import Interfaces
        from granian.server.embed import Server

        self.server = Server(self.app, address=host, port=port, interface=Interfaces.RSGI, log_enabled=False)
        self.task = asyncio.get_running_loop().create_task(self.server.serve())

    async def stop(self) -> None:
        if self.server is not None and self.task is not None:
            self.server.stop()
            await asyncio.wait([self.task], timeout=2)
