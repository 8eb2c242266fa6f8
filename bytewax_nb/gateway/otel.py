"""Traces out to OpenTelemetry (the `otel` extra), set up the standard way: spans go
where `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (or `OTEL_EXPORTER_OTLP_ENDPOINT`) says,
over OTLP/HTTP, sampled as `OTEL_TRACES_SAMPLER` says (by default, as the caller's
`traceparent` was, else every one), named by `OTEL_SERVICE_NAME` (else "bytewax-nb").

The SDK makes and batches the spans in its own thread; the hub's loop only puts a
finished request on a bounded queue (full: the request is counted and not exported).
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from typing import Any

from ..model.tracing import handed, hops
from .traces import Kept

__all__ = ["OtlpExporter", "otlp_exporter"]

_QUEUE = 4096  # finished requests waiting for the exporter's thread


def otlp_exporter() -> OtlpExporter | None:
    """What the hub hands each traced request to, or None: no endpoint set, or the
    SDK not installed (then nothing is exported and nothing is paid for it)."""
    if not (
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    ):
        return None
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return None
    try:
        return OtlpExporter()
    except ImportError:
        return None


class OtlpExporter:
    """The SDK's tracer provider, fed from a queue by its own thread."""

    def __init__(self) -> None:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        self.ids = _ids()
        attrs = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: "bytewax-nb"}
        self.provider = TracerProvider(resource=Resource.create(attrs), id_generator=self.ids)
        self.provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        self.tracer = self.provider.get_tracer("bytewax_nb")
        self.queue: queue.Queue[Kept | None] = queue.Queue(_QUEUE)
        self.dropped = 0
        self.thread = threading.Thread(target=self._run, name="bytewax-nb-otlp", daemon=True)
        self.thread.start()

    def put(self, kept: Kept) -> None:
        try:
            self.queue.put_nowait(kept)
        except queue.Full:
            self.dropped += 1

    def close(self, timeout: float = 5.0) -> None:
        """What is queued, exported (the hub is stopping)."""
        with contextlib.suppress(queue.Full):
            self.queue.put(None, timeout=timeout)
        self.thread.join(timeout)
        self.provider.shutdown()

    def _run(self) -> None:
        while True:
            kept = self.queue.get()
            if kept is None:
                break
            try:
                self._export(kept)
            except Exception:  # noqa: BLE001 - a span that cannot be made is not the request's problem
                self.dropped += 1

    def _export(self, kept: Kept) -> None:
        """One request as spans: the gateway's (the id its caller was told), and under it
        each hop with its hand-off, waiting and running."""
        from opentelemetry import trace
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        trace_id, span_id, path = hops(kept.trace)
        t0 = int(kept.t0 * 1e9)
        parent: Any = None
        if kept.parent_id:  # the caller's span, continued
            remote = SpanContext(
                int(trace_id, 16), int(kept.parent_id, 16), True, TraceFlags(TraceFlags.SAMPLED)
            )
            parent = trace.set_span_in_context(trace.NonRecordingSpan(remote))
        self.ids.trace_id, self.ids.span_id = int(trace_id, 16), int(span_id, 16)
        attrs = {"bytewax.gateway": kept.gateway, "bytewax.request_id": kept.request_id}
        root = self.tracer.start_span(
            f"POST /gateways/{kept.gateway}", parent, SpanKind.SERVER, attrs, start_time=t0
        )
        self.ids.trace_id = self.ids.span_id = 0
        root.set_attribute("http.response.status_code", kept.status)
        if kept.status >= 500 or kept.error:
            root.set_status(Status(StatusCode.ERROR, kept.error or None))
        under = trace.set_span_in_context(root)
        for h in path:
            sent = handed(path, h)
            attrs = {"bytewax.bee": h.bee, "bytewax.replica": h.replica}
            hop = self.tracer.start_span(
                h.bee, under, SpanKind.INTERNAL, attrs, start_time=t0 + int(sent * 1e9)
            )
            inner = trace.set_span_in_context(hop)
            for name, a, b in (
                ("hand-off", sent, h.received),
                ("waiting", h.received, h.started),
                ("running", h.started, h.ended),
            ):
                span = self.tracer.start_span(name, inner, start_time=t0 + int(a * 1e9))
                span.end(t0 + int(b * 1e9))
            hop.end(t0 + int(h.ended * 1e9))
        root.end(t0 + int(kept.duration * 1e9))


def _ids() -> Any:
    """The SDK's ids, except the gateway's span: the trace and span id its caller was
    told (set just before that span starts)."""
    from opentelemetry.sdk.trace.id_generator import IdGenerator, RandomIdGenerator

    class Ids(IdGenerator):
        def __init__(self) -> None:
            self.random = RandomIdGenerator()
            self.trace_id = 0
            self.span_id = 0

        def generate_trace_id(self) -> int:
            return self.trace_id or self.random.generate_trace_id()

        def generate_span_id(self) -> int:
            return self.span_id or self.random.generate_span_id()

    return Ids()
