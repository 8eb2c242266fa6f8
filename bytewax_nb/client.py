"""A small HTTP client for gateways: what `swarm.request`, `submit` and the CLI use."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .bus.wire import dump_json
from .model.errors import GatewayError, NotReady, RemoteError, RequestTimeout

__all__ = ["Answer", "call", "post", "raise_for", "request", "stream", "submit"]


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
