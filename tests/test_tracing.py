"""A request's path: W3C trace context continued or begun at the gateway, each bee's
hand-off, waiting and running recorded on real processes and sockets, the slowest and
failed kept (`GET /traces`), the owner's test call (`swarm.trace`), and spans exported
over OTLP/HTTP to a real receiver that decodes them with opentelemetry-proto."""

from __future__ import annotations

import importlib.util
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from conftest import hello_swarm, missing, wait_until

from bytewax_nb import RemoteError
from bytewax_nb.gateway.traces import Traces
from bytewax_nb.model.errors import GatewayError
from bytewax_nb.model.tracing import (
    TraceContext,
    add_hop,
    hops,
    merge,
    parse_trace_id,
    parse_traceparent,
    record,
)

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def _http(
    url: str, payload: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, dict(r.headers), json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())


# -- the pure parts ------------------------------------------------------------------


def test_a_callers_traceparent_is_read_as_w3c_says_and_a_bad_one_starts_a_new_trace() -> None:
    ctx = parse_traceparent(f"00-{CALLER_TRACE}-{CALLER_SPAN}-01")
    assert ctx is not None
    assert (ctx.trace_id, ctx.parent_id, ctx.sampled) == (CALLER_TRACE, CALLER_SPAN, True)
    assert ctx.span_id != CALLER_SPAN and len(ctx.span_id) == 16
    assert ctx.traceparent() == f"00-{CALLER_TRACE}-{ctx.span_id}-01"
    assert parse_traceparent(f"00-{CALLER_TRACE}-{CALLER_SPAN}-00").sampled is False  # type: ignore[union-attr]
    # a later version may add fields; version 00 may not; ff is forbidden; zeros are invalid
    assert parse_traceparent(f"01-{CALLER_TRACE}-{CALLER_SPAN}-01-extra") is not None
    for bad in (
        f"00-{CALLER_TRACE}-{CALLER_SPAN}-01-extra",
        f"ff-{CALLER_TRACE}-{CALLER_SPAN}-01",
        f"00-{'0' * 32}-{CALLER_SPAN}-01",
        f"00-{CALLER_TRACE}-{'0' * 16}-01",
        f"00-{CALLER_TRACE[:-1]}-{CALLER_SPAN}-01",
        f"00-{CALLER_TRACE[:-1]}g-{CALLER_SPAN}-01",
        "",
        None,
    ):
        assert parse_traceparent(bad) is None, bad
    assert parse_trace_id(CALLER_TRACE) == CALLER_TRACE  # the owner's asked-for id
    for bad in ("0" * 32, CALLER_TRACE.upper(), CALLER_TRACE[:-1], CALLER_TRACE + "0", "1", "", None):
        assert parse_trace_id(bad) is None, bad
    own = TraceContext.new("ab" * 16)
    assert own.trace_id == "ab" * 16 and own.parent_id == ""


def test_hops_recorded_along_a_path_become_hand_off_waiting_and_running_spans() -> None:
    t0 = 1000.0
    trace = TraceContext(CALLER_TRACE, CALLER_SPAN, span_id="1" * 16).wire()
    trace = add_hop(trace, "a", "0", t0, t0 + 0.001, t0 + 0.002, t0 + 0.005)
    left = add_hop(trace, "left", "1", t0, t0 + 0.006, t0 + 0.006, t0 + 0.010)
    right = add_hop(trace, "right", "0", t0, t0 + 0.007, t0 + 0.008, t0 + 0.009)
    joined = merge(merge("", left), right)
    assert joined.count(";a,") == 1  # the shared upstream once
    joined = add_hop(joined, "join", "0", t0, t0 + 0.011, t0 + 0.012, t0 + 0.013)
    trace_id, span_id, path = hops(joined)
    assert (trace_id, span_id) == (CALLER_TRACE, "1" * 16)
    assert [h.bee for h in path] == ["a", "left", "right", "join"]
    rec = record(joined, CALLER_SPAN, "rid", "in", t0, t0 + 0.014, 200)
    assert rec["duration_ms"] == pytest.approx(14.0)
    spans = {(s["bee"], s["kind"]): s for s in rec["spans"]}
    assert spans[("", "request")]["duration_ms"] == pytest.approx(14.0)
    assert spans[("a", "hand-off")]["start_ms"] == 0 and spans[("a", "hand-off")][
        "duration_ms"
    ] == pytest.approx(1)
    assert spans[("a", "running")]["duration_ms"] == pytest.approx(3)
    # each branch was handed off when a ended; the join when the later branch ended
    assert spans[("right", "hand-off")]["start_ms"] == pytest.approx(5)
    assert spans[("join", "hand-off")]["start_ms"] == pytest.approx(10)
    assert spans[("join", "waiting")]["duration_ms"] == pytest.approx(1)


def test_the_keeper_holds_the_slowest_and_the_failed_and_each_gateway_sees_its_own() -> None:
    kept = Traces(keep=3)
    for i in range(10):
        kept.add(f"{i:032x}-{'1' * 16}", "", f"r{i}", "in", 0.0, i / 1000, 200)
    kept.add(f"{99:032x}-{'1' * 16}", "", "bad", "in", 0.0, 0.001, 500, "ValueError: no")
    kept.add(f"{98:032x}-{'1' * 16}", "", "other", "admin", 0.0, 0.5, 200)
    listing = kept.listing("in")
    assert [r["request_id"] for r in listing["slow"]] == ["r9", "r8", "r7"]
    assert [r["request_id"] for r in listing["failed"]] == ["bad"]
    assert listing["failed"][0]["error"] == "ValueError: no"
    assert kept.find(f"{9:032x}", "in") is not None
    assert kept.find(f"{98:032x}", "in") is None  # another gateway's
    assert kept.find(f"{1:032x}", "in") is None  # not slow enough to be kept


# -- real processes and sockets ------------------------------------------------------


def _chain(make_swarm: Any, name: str = "traced", **gateway: Any) -> Any:
    swarm = make_swarm(name)
    swarm.gateway("in", **gateway)

    @swarm.bee(input="in")
    def parse(p: dict[str, Any]) -> dict[str, Any]:
        if p.get("fail"):
            raise ValueError("asked to fail")
        return p

    @swarm.bee(input="parse", replicas=2)  # two replicas: a hop of its own (not fused)
    def slow(p: dict[str, Any]) -> dict[str, Any]:
        time.sleep(p.get("sleep", 0.0))
        return {**p, "slept": True}

    swarm.start()
    return swarm


def test_a_tracing_gateway_continues_the_callers_trace_and_keeps_each_hops_times(make_swarm: Any) -> None:
    swarm = _chain(make_swarm, tracing=True)
    url = swarm.url("in")
    base = url.rsplit("/gateways/", 1)[0]
    parent = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    status, headers, body = _http(url, {"sleep": 0.05}, parent)
    assert status == 200 and body["slept"] is True
    version, trace_id, span_id, flags = headers["traceresponse"].split("-")
    assert (version, trace_id, flags) == ("00", CALLER_TRACE, "01") and span_id != CALLER_SPAN

    status, _, rec = _http(f"{base}/traces/{CALLER_TRACE}")
    assert status == 200, rec
    assert (rec["trace_id"], rec["span_id"], rec["parent_id"]) == (CALLER_TRACE, span_id, CALLER_SPAN)
    assert rec["status"] == 200 and rec["request_id"] == headers["X-Request-Id"]
    kinds = [(s["bee"], s["kind"]) for s in rec["spans"]]
    assert kinds == [
        ("", "request"),
        ("parse", "hand-off"),
        ("parse", "waiting"),
        ("parse", "running"),
        ("slow", "hand-off"),
        ("slow", "waiting"),
        ("slow", "running"),
    ]
    spans = {k: s for k, s in zip(kinds, rec["spans"], strict=True)}
    assert spans[("slow", "running")]["duration_ms"] >= 50  # the sleep is where the time went
    assert spans[("slow", "running")]["replica"] in ("0", "1")
    total = spans[("", "request")]["duration_ms"]
    for s in rec["spans"]:  # every span lies inside the request's
        assert s["start_ms"] >= 0 and s["start_ms"] + s["duration_ms"] <= total + 0.01, s
    ends = [s["start_ms"] + s["duration_ms"] for s in rec["spans"][1:]]
    assert ends == sorted(ends)  # a chain: one after the other

    # without a traceparent a trace of its own begins (the request id: nothing to tell a
    # caller who sent none); a failure is kept with its error
    status, headers, body = _http(url, {"fail": True})
    assert status == 500 and "traceresponse" not in headers
    failed = swarm.traces()["failed"]
    assert [r["trace_id"] for r in failed] == [body["request_id"]] != [CALLER_TRACE]
    assert failed[0]["status"] == 500 and failed[0]["parent_id"] == ""
    assert failed[0]["error"] == "ValueError: asked to fail"
    assert [s["kind"] for s in failed[0]["spans"]] == ["request", "hand-off", "waiting", "running"]
    assert CALLER_TRACE in [r["trace_id"] for r in swarm.traces()["slow"]]


def test_tracing_off_records_nothing_but_the_owners_test_call(make_swarm: Any) -> None:
    swarm = _chain(make_swarm, "untraced", token="s3cret")
    url, auth = swarm.url("in"), {"Authorization": "Bearer s3cret"}
    base = url.rsplit("/gateways/", 1)[0]
    # a caller's traceparent, or the owner's header without the owner's token: not traced
    asks = {**auth, "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01", "X-Bytewax-Trace": CALLER_TRACE}
    status, headers, _ = _http(url, {"sleep": 0.01}, asks)
    assert status == 200 and "traceresponse" not in headers
    assert _http(f"{base}/traces/{CALLER_TRACE}", headers=auth)[0] == 404
    assert _http(f"{base}/traces")[0] == 401  # the gateway's token guards its traces
    assert swarm.traces() == {"slow": [], "failed": []}

    t = swarm.trace("in", {"sleep": 0.02})
    assert t.error is None and t.answer["slept"] is True
    assert (
        t.trace["status"] == 200 and [s["bee"] for s in t.trace["spans"]][1:] == ["parse"] * 3 + ["slow"] * 3
    )
    assert "slow[" in str(t) and "running" in str(t)
    failed = swarm.trace("in", {"fail": True})
    assert isinstance(failed.error, RemoteError) and failed.answer is None
    assert failed.trace is not None
    assert failed.trace["status"] == 500 and "asked to fail" in failed.trace["error"]
    # refused by the gateway before any bee (not what parse's hint declares): the
    # caller's error, and no trace to show
    refused = swarm.trace("in", [1, 2])
    assert isinstance(refused.error, GatewayError) and refused.error.status == 422
    assert refused.trace is None and "no trace: the gateway refused" in str(refused)


def test_a_bee_that_answers_with_ctx_respond_is_traced_up_to_its_answer(make_swarm: Any) -> None:
    swarm = hello_swarm(make_swarm, "hello-traced")
    swarm.start()
    for _ in range(3):  # the same replicas again: nothing of a call stays for the next
        t = swarm.trace("hello-world", {"name": "Bee"})
        assert t.answer == "goodbye Bee"
        assert [s["bee"] for s in t.trace["spans"] if s["kind"] == "running"] == ["hello", "goodbye"]


def test_a_joined_requests_trace_holds_both_branches(make_swarm: Any) -> None:
    swarm = make_swarm("joined")
    swarm.gateway("in", tracing=True)
    swarm.bee(lambda p: p + 1, input="in", name="left")
    swarm.bee(lambda p: p * 2, input="in", name="right")
    swarm.bee(lambda parts: parts, input=["left", "right"], join=True, name="join")
    swarm.start()
    t = swarm.trace("in", 3)
    assert t.answer == {"left": 4, "right": 6}
    running = [s["bee"] for s in t.trace["spans"] if s["kind"] == "running"]
    assert sorted(running[:2]) == ["left", "right"] and running[2] == "join"


def test_a_streamed_answer_is_traced_to_its_first_chunk(make_swarm: Any) -> None:
    swarm = make_swarm("streamtrace")
    swarm.gateway("in", tracing=True)

    @swarm.bee(input="in")
    def words(text: str) -> Iterator[str]:
        yield from text.split()

    swarm.start()
    assert list(swarm.stream("in", "a b c")) == ["a", "b", "c"]
    (rec,) = swarm.traces()["slow"]
    assert rec["status"] == 200 and [s["bee"] for s in rec["spans"]][1:] == ["words"] * 3


# -- OpenTelemetry, over OTLP/HTTP, to a real receiver --------------------------------


class _Receiver:
    """An OTLP/HTTP trace receiver: POST /v1/traces, protobuf bodies decoded with
    opentelemetry-proto, every span kept."""

    def __init__(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

        self.spans: list[Any] = []
        self.resources: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.arrived = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                decoded = ExportTraceServiceRequest.FromString(body)
                receiver.paths.append(self.path)
                for rs in decoded.resource_spans:
                    receiver.resources.append({a.key: a.value.string_value for a in rs.resource.attributes})
                    for ss in rs.scope_spans:
                        receiver.spans.extend(ss.spans)
                receiver.arrived.set()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver(monkeypatch: pytest.MonkeyPatch) -> Iterator[_Receiver]:
    if importlib.util.find_spec("opentelemetry.sdk") is None:
        missing("the otel extra is not installed", "pip install -e '.[otel]' (the test extra has it)")
    r = _Receiver()
    # the standard settings, as a user sets them (the hub inherits the owner's environment)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", r.url)
    monkeypatch.setenv("OTEL_SERVICE_NAME", "traced-swarm")
    monkeypatch.setenv("OTEL_BSP_SCHEDULE_DELAY", "50")
    yield r
    r.close()


def test_spans_are_exported_over_otlp_http_under_the_callers_trace(
    make_swarm: Any, receiver: _Receiver
) -> None:
    swarm = _chain(make_swarm, "exported", tracing=True)
    status, headers, _ = _http(
        swarm.url("in"), {"sleep": 0.02}, {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"}
    )
    assert status == 200
    gateway_span = headers["traceresponse"].split("-")[2]
    wait_until(lambda: len(receiver.spans) >= 9, timeout=30, what="9 spans at the OTLP receiver")
    assert receiver.paths[0] == "/v1/traces"
    assert receiver.resources[0]["service.name"] == "traced-swarm"
    by_id = {s.span_id.hex(): s for s in receiver.spans}
    assert all(s.trace_id.hex() == CALLER_TRACE for s in receiver.spans)
    root = by_id[gateway_span]
    assert root.parent_span_id.hex() == CALLER_SPAN and root.name == "POST /gateways/in"
    hops_ = [s for s in receiver.spans if s.parent_span_id == root.span_id]
    assert sorted(s.name for s in hops_) == ["parse", "slow"]
    for hop in hops_:
        inner = sorted(
            (s for s in receiver.spans if s.parent_span_id == hop.span_id),
            key=lambda s: s.start_time_unix_nano,
        )
        assert [s.name for s in inner] == ["hand-off", "waiting", "running"]
        assert (
            root.start_time_unix_nano
            <= hop.start_time_unix_nano
            <= hop.end_time_unix_nano
            <= root.end_time_unix_nano
        )
    slow_running = next(
        s for s in receiver.spans if s.name == "running" and by_id[s.parent_span_id.hex()].name == "slow"
    )
    assert slow_running.end_time_unix_nano - slow_running.start_time_unix_nano >= 20_000_000
    attrs = {a.key: a.value for a in root.attributes}
    assert attrs["http.response.status_code"].int_value == 200
    assert attrs["bytewax.request_id"].string_value == headers["X-Request-Id"]
