"""A request's path: W3C trace context in and out, and the spans its bees record.

A traced request's header carries its trace as one short string, grown by each bee it
passes (no separate channel, no clock to agree on but the gateway's receive time):

    <trace-id>-<parent-span-id>;<bee>,<replica>,<received>,<started>,<ended>;...

times in microseconds after the gateway received the request. The hub reads it back
when the answer comes and turns each hop into three spans: hand-off (from the previous
hop's end to this replica reading it), waiting (in the replica, for its turn) and
running (the bee's own code).
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass
from typing import TypedDict

__all__ = [
    "Hop",
    "SpanRecord",
    "TraceContext",
    "TraceRecord",
    "add_hop",
    "handed",
    "hops",
    "merge",
    "parse_trace_id",
    "parse_traceparent",
    "record",
]

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")
_TRACE_ID = re.compile(r"^[0-9a-f]{32}$")
_ZERO_TRACE, _ZERO_SPAN = "0" * 32, "0" * 16


_SPAN_BASE = int.from_bytes(os.urandom(8), "big")  # per process: span ids of two hubs differ
_SPANS = itertools.count(1)


def new_span_id() -> str:
    """16 hex digits, never all zeros (W3C), unique per process: a counter, not a syscall."""
    return f"{(_SPAN_BASE + next(_SPANS)) & 0xFFFFFFFFFFFFFFFF or 1:016x}"


class TraceContext:
    """Which trace a request belongs to, and the caller's span it continues ("" if none).
    A plain class: one is made per traced request, on the hub's loop."""

    __slots__ = ("parent_id", "sampled", "span_id", "trace_id")

    def __init__(self, trace_id: str, parent_id: str = "", sampled: bool = True, span_id: str = "") -> None:
        self.trace_id = trace_id
        self.parent_id = parent_id
        self.sampled = sampled
        self.span_id = span_id or new_span_id()  # the gateway's own span

    @classmethod
    def new(cls, request_id: str) -> TraceContext:
        """A trace of our own: the request id is already 32 random-prefixed hex digits."""
        return cls(request_id)

    def traceparent(self) -> str:
        """What the answer tells its caller: this trace, under the gateway's span."""
        return f"00-{self.trace_id}-{self.span_id}-{'01' if self.sampled else '00'}"

    def wire(self) -> str:
        """The start of the header's trace string (hops are appended to it)."""
        return f"{self.trace_id}-{self.span_id}"


def parse_trace_id(value: str | None) -> str | None:
    """A W3C trace id (32 lowercase hex digits, not all zeros), or None."""
    if value is None or _TRACE_ID.match(value) is None or value == _ZERO_TRACE:
        return None
    return value


def parse_traceparent(value: str | None) -> TraceContext | None:
    """A caller's W3C `traceparent`, or None when absent or malformed (then a trace of
    our own starts, as the spec says a receiver must)."""
    if not value:
        return None
    m = _TRACEPARENT.match(value.strip().lower())
    if m is None:
        return None
    version, trace_id, parent_id, flags, rest = m.groups()
    if version == "ff" or (version == "00" and rest) or trace_id == _ZERO_TRACE or parent_id == _ZERO_SPAN:
        return None
    return TraceContext(trace_id, parent_id, bool(int(flags, 16) & 1))


@dataclass(frozen=True, slots=True)
class Hop:
    """One bee's part of a request: times in seconds after the gateway received it."""

    bee: str
    replica: str
    received: float
    started: float
    ended: float


def add_hop(
    trace: str, bee: str, replica: str, t0: float, received: float, started: float, ended: float
) -> str:
    """The trace string with one more hop (epoch-second times made relative to `t0`)."""
    # to the nearest microsecond (int(), not round(): it is called three times per hop)
    r, s, e = int((received - t0) * 1e6 + 0.5), int((started - t0) * 1e6 + 0.5), int((ended - t0) * 1e6 + 0.5)
    return f"{trace};{bee},{replica},{r},{s},{e}"


def merge(a: str, b: str) -> str:
    """Two branches of one request joined: the shared start once, every hop once."""
    if not a:
        return b
    head, *mine = a.split(";")
    theirs = b.split(";")[1:]
    seen = set(mine)
    return ";".join([head, *mine, *(h for h in theirs if h not in seen)])


def hops(trace: str) -> tuple[str, str, list[Hop]]:
    """(trace id, gateway span id, hops) of a header's trace string; malformed hops are
    skipped (the string was signed by a bee of the swarm, but a bee's name is all text)."""
    head, *rest = trace.split(";")
    trace_id, _, span_id = head.partition("-")
    out = []
    for part in rest:
        fields = part.rsplit(",", 3)
        if len(fields) != 4:
            continue
        who, r, s, e = fields
        bee, _, replica = who.rpartition(",")
        try:
            out.append(Hop(bee, replica, int(r) / 1e6, int(s) / 1e6, int(e) / 1e6))
        except ValueError:
            continue
    out.sort(key=lambda h: h.started)
    return trace_id, span_id, out


def handed(path: list[Hop], hop: Hop) -> float:
    """When a hop's message left: as the last hop that ended before it was read ended
    (its upstream, in a chain; 0, the gateway, for the first)."""
    return max((h.ended for h in path if h.ended <= hop.received), default=0.0)


class SpanRecord(TypedDict):
    """One span of a trace, as the widget draws it and `swarm.traces()` returns it."""

    name: str  # "gateway in", or the bee's name
    kind: str  # "request", "hand-off", "waiting", "running"
    bee: str
    replica: str
    start_ms: float  # after the gateway received the request
    duration_ms: float


class TraceRecord(TypedDict):
    """A request's trace: where its time went, and how it ended."""

    trace_id: str
    span_id: str  # the gateway's span
    parent_id: str  # the caller's span it continues ("" if it started here)
    request_id: str
    gateway: str
    status: int
    start: float  # epoch seconds
    duration_ms: float
    error: str  # what went wrong ("" if answered)
    spans: list[SpanRecord]


def record(
    trace: str,
    parent_id: str,
    request_id: str,
    gateway: str,
    t0: float,
    t1: float,
    status: int,
    error: str = "",
) -> TraceRecord:
    """The trace of a request answered (or failed) at `t1`: its gateway's span, and each
    hop's hand-off, waiting and running spans in the order they began."""
    trace_id, span_id, path = hops(trace)
    total = (t1 - t0) * 1e3
    spans = [
        SpanRecord(
            name=f"gateway {gateway}",
            kind="request",
            bee="",
            replica="",
            start_ms=0.0,
            duration_ms=round(total, 3),
        )
    ]
    for hop in path:
        start = handed(path, hop)
        spans.append(_span(hop, "hand-off", start, hop.received))
        spans.append(_span(hop, "waiting", hop.received, hop.started))
        spans.append(_span(hop, "running", hop.started, hop.ended))
    return TraceRecord(
        trace_id=trace_id,
        span_id=span_id,
        parent_id=parent_id,
        request_id=request_id,
        gateway=gateway,
        status=status,
        start=t0,
        duration_ms=total,
        error=error,
        spans=spans,
    )


def _span(hop: Hop, kind: str, start: float, end: float) -> SpanRecord:
    return SpanRecord(
        name=hop.bee,
        kind=kind,
        bee=hop.bee,
        replica=hop.replica,
        start_ms=round(start * 1e3, 3),
        duration_ms=round(max(end - start, 0.0) * 1e3, 3),
    )
