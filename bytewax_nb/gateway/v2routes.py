"""The Open Inference Protocol's HTTP routes on a gateway (each gateway is a model of
that name, version "1"): health, server and model metadata, readiness, and infer with
JSON tensors or the binary-data extension. Errors are the protocol's `{"error": ...}`:
400 for a bad tensor, 404 for an unknown model, 401 without the token, 503 and 504 as
for any request."""

from __future__ import annotations

import time
from typing import Any, Protocol

from aiohttp import web

from ..bus.wire import dump_json
from ..model.spec import GatewaySpec
from ..model.terms import Contract
from .checks import RequestCheck
from .inference import HEADER_LENGTH, InferError, metadata, parse, render, server_metadata
from .metrics import GatewayMetrics
from .modelcall import infer, model_io

__all__ = ["V2Routes"]


class Model(Protocol):
    """What the routes need of their gateway."""

    name: str
    spec: GatewaySpec
    contract: Contract
    check: RequestCheck | None
    metrics: GatewayMetrics
    hub: Any

    def authorized(self, request: web.BaseRequest) -> bool: ...

    async def read(self, request: web.BaseRequest) -> bytes | web.Response: ...


def _say(status: int, body: Any, **headers: str) -> web.Response:
    return web.Response(status=status, body=dump_json(body), content_type="application/json", headers=headers)


def _error(status: int, message: str) -> web.Response:
    return _say(status, {"error": message})


_GET = ("GET", "HEAD")


def _allowed(parts: list[str]) -> tuple[str, ...] | None:
    """The methods a /v2 path takes; None: no such route."""
    if parts == ["v2"] or (parts[:2] == ["v2", "health"] and parts[2:] in (["live"], ["ready"])):
        return _GET
    if parts[:2] != ["v2", "models"] or len(parts) < 3:
        return None
    rest = parts[3:]
    if rest[:1] == ["versions"]:
        if len(rest) < 2:
            return None
        rest = rest[2:]
    return {(): _GET, ("ready",): _GET, ("infer",): ("POST",)}.get(tuple(rest))


class V2Routes:
    """`/v2...` of one gateway."""

    def __init__(self, gw: Model) -> None:
        self.gw = gw

    async def dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        parts = request.path.strip("/").split("/")  # v2, ...
        allow = _allowed(parts)
        if allow is None:
            return _error(404, f"no route {request.method} {request.path}")
        if request.method not in allow:
            response = _error(405, f"method {request.method} not allowed on {request.path}")
            response.headers["Allow"] = ", ".join(allow)
            return response
        if parts == ["v2"]:
            return _say(200, server_metadata())
        if parts[1] == "health":
            if parts[2] == "live":
                return _say(200, {"live": True})
            ready = self.gw.hub.view.healthy
            return _say(200 if ready else 503, {"ready": ready})
        return await self._model(request, parts[2], parts[3:])

    async def _model(self, request: web.BaseRequest, name: str, rest: list[str]) -> web.StreamResponse:
        gw = self.gw
        if rest[:1] == ["versions"]:
            if rest[1] != "1":
                return _error(404, f"model {name!r} has one version, 1")
            rest = rest[2:]
        if rest == ["ready"]:
            ready = name == gw.name and gw.hub.view.healthy
            return _say(200 if ready else 503, {"name": name, "ready": ready})
        if not gw.authorized(request):
            return _error(401, "missing or bad bearer token")
        if name != gw.name:
            return _error(404, f"unknown model {name!r}; this gateway serves {gw.name!r}")
        if rest == []:
            return _say(200, metadata(name, *model_io(gw.contract)))
        t = time.perf_counter()
        response = await self._infer(request)
        gw.metrics.count(response.status, time.perf_counter() - t)
        return response

    async def _infer(self, request: web.BaseRequest) -> web.Response:
        gw = self.gw
        body = await gw.read(request)
        if isinstance(body, web.Response):  # 408 or 413: its body has the protocol's "error"
            return body
        try:
            call = parse(body, request.headers.get(HEADER_LENGTH), model_io(gw.contract)[0])
            outputs, buffers = await infer(gw, call)
            data, headers = render(gw.name, call, outputs, buffers)
        except InferError as exc:
            retry = {"Retry-After": "1"} if exc.status == 503 else {}
            return _say(exc.status, {"error": str(exc)}, **retry)
        return web.Response(status=200, body=data, headers=headers)
