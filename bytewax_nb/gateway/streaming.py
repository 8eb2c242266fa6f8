"""Writing a streamed answer to its caller, in the form the caller asked for:
Server-Sent Events (`Accept: text/event-stream`: one event per chunk, then an `end`
event, or an `error` event with the usual error body), NDJSON (`Accept:
application/x-ndjson`: `{"chunk": value}` per line, then `{"end": true, "chunks": n}`,
or the error body), or, for a caller that asked for neither, every chunk in one JSON
list (an error then is an ordinary error answer)."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from enum import StrEnum
from typing import Any

from aiohttp import web

from ..model.protocol import BeeError, http_error_body
from .streams import Chunked, StreamError

__all__ = ["Form", "form_of", "write"]


class Form(StrEnum):
    SSE = "text/event-stream"
    NDJSON = "application/x-ndjson"
    LIST = "application/json"


def form_of(accept: str) -> Form:
    """What the caller asked for (the first streaming type its Accept names)."""
    for form in (Form.SSE, Form.NDJSON):
        if form.value in accept:
            return form
    return Form.LIST


def _error_body(raw: bytes, rid: str, tracebacks: bool) -> tuple[int, dict[str, Any]]:
    err: BeeError = json.loads(raw)
    status = int(err.get("status", 500))
    return (status if 400 <= status < 600 else 500), http_error_body(err, rid, tracebacks=tracebacks)


async def write(
    request: web.BaseRequest,
    stream: Chunked,
    rid: str,
    *,
    tracebacks: bool,
    took: Callable[[], None],
    headers: Mapping[str, str] = {},
) -> web.StreamResponse:
    """Write `stream` to the caller as it comes; `took` is told after each chunk;
    `headers`: the gateway's own (CORS), on the response before it is sent."""
    form = form_of(request.headers.get("Accept", ""))
    if form == Form.LIST:
        chunks: list[bytes] = []
        try:
            async for body in stream.chunks():
                chunks.append(body)
                took()
        except StreamError as exc:
            status, answer = _error_body(exc.body, rid, tracebacks)
            return web.json_response(answer, status=status, headers={"X-Request-Id": rid})
        body = b"[" + b",".join(chunks) + b"]"
        return web.Response(body=body, content_type="application/json", headers={"X-Request-Id": rid})
    response = web.StreamResponse(
        headers={"Content-Type": form.value, "Cache-Control": "no-cache", "X-Request-Id": rid, **headers}
    )
    await response.prepare(request)
    count = 0
    try:
        async for body in stream.chunks():
            if form == Form.SSE:
                await response.write(b"id: %d\ndata: %s\n\n" % (count, body))
            else:
                await response.write(b'{"chunk":%s}\n' % body)
            count += 1
            took()
        end = {"end": True, "chunks": count}
        if form == Form.SSE:
            await response.write(b"event: end\ndata: %s\n\n" % json.dumps(end).encode())
        else:
            await response.write(json.dumps(end).encode() + b"\n")
    except StreamError as exc:
        _, answer = _error_body(exc.body, rid, tracebacks)
        text = json.dumps(answer).encode()
        await response.write(b"event: error\ndata: %s\n\n" % text if form == Form.SSE else text + b"\n")
    await response.write_eof()
    return response
