"""A small HTTP client for gateways: what `swarm.request`, `submit` and the CLI use."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .bus.wire import TRACE_HEADER, dump_json
from .model.errors import BytewaxNBError, GatewayError, NotReady, RemoteError, RequestTimeout
from .model.tracing import TraceRecord

__all__ = ["Answer", "Traced", "call", "get", "post", "raise_for", "request", "stream", "submit", "traced"]


def post(
    url: str,
    payload: Any,
    *,
    token: str | None = None,
    timeout: float = 35.0,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, str | None]:
    """POST `payload` as JSON; (status, decoded JSON body, request id). Never raises on status."""
    data = dump_json(payload)
    req = urllib.request.Request(url, data=data, method="POST", headers=headers or {})
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            status, raw, rid = resp.status, resp.read(), resp.headers.get("X-Request-Id")
    except urllib.error.HTTPError as err:
        status, raw, rid = err.code, err.read(), err.headers.get("X-Request-Id")
    except TimeoutError as exc:
        raise RequestTimeout(0, f"no HTTP answer from {url} within {timeout:g} s") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise RequestTimeout(0, f"no HTTP answer from {url} within {timeout:g} s") from exc
        raise GatewayError(0, f"cannot reach {url}: {exc.reason}") from exc
    try:
        body = json.loads(raw) if raw else None
    except ValueError:
        body = {"error": raw.decode(errors="replace")}
    return status, body, rid


def stream(
    url: str,
    payload: Any,
    *,
    token: str | None = None,
    timeout: float = 35.0,
    headers: dict[str, str] | None = None,
) -> Iterator[Any]:
    """POST `payload` asking for a stream (NDJSON); yield each chunk of the answer as it
    comes (a plain answer is one chunk). RemoteError if a bee raised, even mid-stream;
    `timeout` bounds the wait for each chunk."""
    req = urllib.request.Request(url, data=dump_json(payload), method="POST", headers=headers or {})
    req.add_header("Content-Type", "application/json")
    req.add_header("Accept", "application/x-ndjson")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        resp = urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as err:
        raw = err.read()
        body = json.loads(raw) if raw else None
        raise_for(err.code, body, err.headers.get("X-Request-Id"))
        return
    except (TimeoutError, urllib.error.URLError) as exc:
        raise GatewayError(0, f"cannot reach {url}: {exc}") from exc
    rid = resp.headers.get("X-Request-Id")
    with resp:
        if "ndjson" not in resp.headers.get("Content-Type", ""):  # a plain answer: one chunk
            yield json.loads(resp.read())
            return
        for line in resp:
            item = json.loads(line)
            if "chunk" in item:
                yield item["chunk"]
            elif item.get("end"):
                return
            elif item.get("type") == "Timeout":
                raise RequestTimeout(504, str(item.get("error")), rid)
            else:
                raise_for(500, item, rid)
        raise GatewayError(0, f"the stream from {url} ended without its end")


def raise_for(status: int, body: Any, rid: str | None) -> None:
    message = body.get("error", "") if isinstance(body, dict) else str(body)
    rid = rid or (body.get("request_id") if isinstance(body, dict) else None)
    if status in (400, 500) and isinstance(body, dict) and "bee" in body:
        raise RemoteError.from_body(body, status)
    if status == 504:
        raise RequestTimeout(status, message, rid)
    if status == 503:
        raise NotReady(status, message, rid)
    raise GatewayError(status, message, rid)


@dataclass(frozen=True)
class Answer:
    """The swarm's answer to one request, with what `%send` shows of it."""

    value: Any
    request_id: str | None
    seconds: float  # from sending the request to reading the answer


def call(
    url: str,
    payload: Any,
    *,
    token: str | None = None,
    timeout: float = 35.0,
    headers: dict[str, str] | None = None,
) -> Answer:
    """POST `payload`; the answer, or RemoteError, RequestTimeout, NotReady, GatewayError."""
    t = time.perf_counter()
    status, body, rid = post(url, payload, token=token, timeout=timeout, headers=headers)
    if status != 200:
        raise_for(status, body, rid)
    return Answer(body, rid, time.perf_counter() - t)


def request(
    url: str,
    payload: Any,
    *,
    token: str | None = None,
    timeout: float = 35.0,
    headers: dict[str, str] | None = None,
) -> Any:
    """The swarm's response to `payload`; raises RemoteError, RequestTimeout, ..."""
    status, body, rid = post(url, payload, token=token, timeout=timeout, headers=headers)
    if status != 200:
        raise_for(status, body, rid)
    return body


def submit(url: str, payload: Any, *, token: str | None = None, timeout: float = 35.0) -> str:
    """Fire and forget: the request id the gateway assigned."""
    status, body, rid = post(url + "?mode=submit", payload, token=token, timeout=timeout)
    if status != 202:
        raise_for(status, body, rid)
    return str(body["request_id"])


def get(url: str, *, token: str | None = None, timeout: float = 10.0) -> Any:
    """GET a JSON document from a gateway (GatewayError with its message otherwise)."""
    req = urllib.request.Request(url)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as err:
        raw = err.read()
        raise_for(err.code, json.loads(raw) if raw else None, None)
    except (TimeoutError, urllib.error.URLError) as exc:
        raise GatewayError(0, f"cannot reach {url}: {exc}") from exc


@dataclass(frozen=True)
class Traced:
    """A request sent with its path traced: its answer (or error) and where its time went."""

    answer: Any
    error: BytewaxNBError | None  # what the caller would have got instead of an answer
    # None: the gateway refused it before any bee saw it (bad JSON, the schema, a full
    # gateway); `error` says why
    trace: TraceRecord | None

    def waterfall(self, width: int = 48) -> str:
        """The trace as text: one line per span, a bar where it lies in the request."""
        if self.trace is None:
            return f"no trace: the gateway refused the request ({self.error})"
        total = self.trace["duration_ms"] or 1.0
        lines = [f"trace {self.trace['trace_id']}  status {self.trace['status']}  {total:.2f} ms"]
        for s in self.trace["spans"]:
            start = int(s["start_ms"] / total * width)
            length = max(1, int(s["duration_ms"] / total * width))
            who = s["name"] if s["kind"] == "request" else f"{s['bee']}[{s['replica']}] {s['kind']}"
            bar = " " * start + "#" * min(length, width - start)
            lines.append(f"{who[:28]:<28} |{bar:<{width}}| {s['duration_ms']:8.3f} ms")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.waterfall()


def kept(gateways: Iterable[tuple[str, str | None]]) -> dict[str, list[TraceRecord]]:
    """The traces kept by each gateway (its URL and token): the slowest first, then the
    last failed, newest first, all gateways together."""
    listing: dict[str, list[TraceRecord]] = {"slow": [], "failed": []}
    for url, token in gateways:  # each gateway shows its own
        base = url.rsplit("/gateways/", 1)[0]
        for kind, records in get(f"{base}/traces", token=token).items():
            listing[kind] += records
    listing["slow"].sort(key=lambda r: -r["duration_ms"])
    listing["failed"].sort(key=lambda r: -r["start"])
    return listing


def traced(
    url: str, base: str, payload: Any, *, token: str | None, timeout: float, headers: dict[str, str]
) -> Traced:
    """POST `payload` asking the gateway (as the owner: `headers`) to keep its trace,
    then read that trace back from `base`/traces."""
    trace_id = os.urandom(16).hex()
    answer: Any = None
    error: BytewaxNBError | None = None
    try:
        answer = call(
            url, payload, token=token, timeout=timeout, headers={**headers, TRACE_HEADER: trace_id}
        ).value
    except BytewaxNBError as exc:  # the trace says where it went wrong
        error = exc
    try:
        record: TraceRecord = get(f"{base}/traces/{trace_id}", token=token)
    except GatewayError as missing:
        if error is None or missing.status != 404:
            raise
        return Traced(answer, error, None)  # refused before it was traced
    return Traced(answer, error, record)
