"""A small HTTP client for gateways: what `swarm.request`, `submit` and the CLI use."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from .bus.wire import dump_json
from .model.errors import GatewayError, NotReady, RemoteError, RequestTimeout

__all__ = ["Answer", "call", "post", "raise_for", "request", "submit"]


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
