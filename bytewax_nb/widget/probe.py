"""A test payload from the widget: parsed as the user typed it, sent traced through a
gateway, and its outcome as the front-end shows it (the answer as JSON, or the error,
and the trace). A typing mistake is an answer too, never an exception in the kernel."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Protocol

from ..model import strictjson
from ..model.errors import BytewaxNBError
from .state import Probe

if TYPE_CHECKING:
    from ..client import Traced

__all__ = ["send_probe", "sent"]

_SHOWN = 20_000  # characters of an answer the widget shows


class Tracing(Protocol):
    def trace(self, gateway: str | None, payload: Any, *, timeout: float | None = None) -> Traced: ...


def sent(gateway: str, text: str, seq: int) -> Probe:
    return Probe(gateway=gateway, state="running", payload=text, answer="", error="", trace=None, seq=seq)


def send_probe(swarm: Tracing, gateway: str, text: str, seq: int) -> Probe:
    """Send `text` (JSON) through `gateway` with its path traced."""
    out = sent(gateway, text, seq)
    out["state"] = "error"
    try:
        payload = strictjson.loads(text)
    except ValueError as exc:
        out["error"] = f"the payload is not JSON: {exc}"
        return out
    try:
        traced = swarm.trace(gateway, payload)
    except BytewaxNBError as exc:  # no trace at all (the gateway is gone, say)
        out["error"] = f"{type(exc).__name__}: {exc}"
        return out
    out["trace"] = traced.trace
    if traced.error is not None:
        first = str(traced.error).splitlines()[0] if str(traced.error) else ""
        out["error"] = f"{type(traced.error).__name__}: {first}"
        return out
    answer = json.dumps(traced.answer, indent=2)
    if len(answer) > _SHOWN:
        answer = answer[:_SHOWN] + f"\n... ({len(answer) - _SHOWN} more characters)"
    out["state"], out["answer"] = "done", answer
    return out
