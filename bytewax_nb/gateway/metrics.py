"""Prometheus exposition for the hub: each gateway's counters plus the swarm's bee stats.

Bee numbers come from the supervisor's status snapshots, so `/metrics` shows the same
figures as `%swarm status` and the widget. Each gateway serves its own registry: its
own counters and the bees its requests reach, never another gateway's (an open
gateway must not show what a token-protected one serves).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ..model.protocol import GatewayCounts, Status

__all__ = ["GatewayMetrics", "HubMetrics", "downstream"]

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


def downstream(gateway: str, bees: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The bees a gateway's requests can reach (through any chain of inputs)."""
    reached: set[str] = set()
    frontier = {gateway}
    while frontier:
        frontier = {n for n, st in bees.items() if n not in reached and frontier & set(st.get("input", ()))}
        reached |= frontier
    return sorted(reached)


class _SwarmCollector(Collector):
    """The bees one gateway reaches, and the hub's own counters."""

    def __init__(self, owner: HubMetrics, gateway: str) -> None:
        self._owner = owner
        self._gateway = gateway

    def collect(self) -> Iterator[Metric]:
        snapshot = self._owner.snapshot
        bees: Mapping[str, Mapping[str, Any]] = snapshot["bees"] if snapshot else {}
        names = downstream(self._gateway, bees)
        handled = CounterMetricFamily("bytewax_nb_bee_handled", "Messages a bee handled", labels=["bee"])
        errors = CounterMetricFamily("bytewax_nb_bee_errors", "Exceptions a bee raised", labels=["bee"])
        deaths = CounterMetricFamily(
            "bytewax_nb_bee_replica_deaths", "Replicas of a bee that exited unasked", labels=["bee"]
        )
        retried = CounterMetricFamily(
            "bytewax_nb_bee_retried", "Messages sent again after their replica died", labels=["bee"]
        )
        ready = GaugeMetricFamily("bytewax_nb_bee_replicas_ready", "Ready replicas", labels=["bee"])
        wanted = GaugeMetricFamily("bytewax_nb_bee_replicas_wanted", "Wanted replicas", labels=["bee"])
        p50 = GaugeMetricFamily("bytewax_nb_bee_latency_p50_seconds", "Median call time", labels=["bee"])
        p99 = GaugeMetricFamily("bytewax_nb_bee_latency_p99_seconds", "p99 call time", labels=["bee"])
        desired = GaugeMetricFamily(
            "bytewax_nb_bee_replicas_desired", "Replicas an autoscaled bee's autoscaler wants", labels=["bee"]
        )
        in_flight = GaugeMetricFamily(
            "bytewax_nb_bee_in_flight", "Requests an autoscaled bee has to do now", labels=["bee"]
        )
        decision = GaugeMetricFamily(
            "bytewax_nb_bee_autoscale_decision_timestamp_seconds",
            "When an autoscaled bee's autoscaler last changed its replicas, and why",
            labels=["bee", "min", "max", "reason"],
        )
        dropped = CounterMetricFamily(
            "bytewax_nb_dropped_frames",
            "Bus frames dropped: bad signature, replayed, past their deadline, or no room",
            labels=["process", "reason"],
        )
        for name in names:
            st = bees[name]
            handled.add_metric([name], st.get("handled", 0))
            errors.add_metric([name], st.get("errors", 0))
            deaths.add_metric([name], st.get("deaths", 0))
            retried.add_metric([name], st.get("retried", 0))
            ready.add_metric([name], st.get("ready", 0))
            wanted.add_metric([name], st.get("wanted", 0))
            p50.add_metric([name], st.get("p50_ms", 0.0) / 1000)
            p99.add_metric([name], st.get("p99_ms", 0.0) / 1000)
            scale = st.get("autoscale")
            if scale:
                desired.add_metric([name], scale["desired"])
                in_flight.add_metric([name], scale["in_flight"])
                if scale.get("decided") is not None:
                    labels = [name, str(scale["min"]), str(scale["max"]), scale["reason"]]
                    decision.add_metric(labels, scale["decided"])
            for reason, count in sorted((st.get("dropped_by") or {}).items()):
                dropped.add_metric([f"bee:{name}", reason], count)
        for reason, count in sorted(self._owner.dropped.items()):
            dropped.add_metric(["hub", reason], count)
        restarts = CounterMetricFamily(
            "bytewax_nb_hub_restarts", "Times the hub (bus and gateways) was restarted after dying"
        )
        restarts.add_metric([], snapshot["hub_restarts"] if snapshot else 0)
        yield from (handled, errors, deaths, retried, ready, wanted, p50, p99, dropped, restarts)
        yield from (desired, in_flight, decision)


class GatewayMetrics:
    """One gateway's instruments and registry (what its `/metrics` serves)."""

    def __init__(self, hub: HubMetrics, gateway: str, in_flight: Callable[[], float]) -> None:
        self.gateway = gateway
        self.registry = registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "bytewax_nb_gateway_requests",
            "HTTP requests answered, by status code",
            ["gateway", "code"],
            registry=registry,
        )
        self._errors = Counter(
            "bytewax_nb_gateway_errors",
            "HTTP requests answered with an error status",
            ["gateway", "code"],
            registry=registry,
        )
        self.latency = Histogram(
            "bytewax_nb_gateway_request_seconds",
            "Time from request to response",
            ["gateway"],
            buckets=_BUCKETS,
            registry=registry,
        ).labels(gateway)
        self.late = Counter(
            "bytewax_nb_gateway_late_responses",
            "Responses that arrived after the first one or after the deadline",
            ["gateway"],
            registry=registry,
        ).labels(gateway)
        Gauge(
            "bytewax_nb_gateway_in_flight",
            "Requests accepted and not yet answered (submitted ones included)",
            ["gateway"],
            registry=registry,
        ).labels(gateway).set_function(in_flight)
        self.chunks = Counter(
            "bytewax_nb_gateway_stream_chunks",
            "Chunks of streamed answers written to callers",
            ["gateway"],
            registry=registry,
        ).labels(gateway)
        self.streams = Gauge(
            "bytewax_nb_gateway_streams_open",
            "Streamed answers being written to their callers now",
            ["gateway"],
            registry=registry,
        ).labels(gateway)
        self.closed = Counter(
            "bytewax_nb_gateway_streams_closed_early",
            "Streams whose caller went away before the end (the bee's generator was closed)",
            ["gateway"],
            registry=registry,
        ).labels(gateway)
        registry.register(_SwarmCollector(hub, gateway))
        self._by_code: dict[int, Any] = {}
        self.requests = 0
        self.errors = 0
        self.chunks_sent = 0  # (prometheus counters cannot be read back cheaply)
        self.streams_open = 0
        hub.gateways[gateway] = self

    def count(self, code: int, seconds: float | None = None) -> None:
        counter = self._by_code.get(code)
        if counter is None:
            counter = self._by_code[code] = self._requests.labels(self.gateway, str(code))
        counter.inc()
        self.requests += 1
        if code >= 400:
            self.errors += 1
            self._errors.labels(self.gateway, str(code)).inc()
        if seconds is not None:
            self.latency.observe(seconds)


class HubMetrics:
    """What the hub knows beyond its gateways: the supervisor's snapshot, dropped frames."""

    def __init__(self) -> None:
        self.snapshot: Status | None = None
        self.dropped: dict[str, int] = {}  # reason -> frames
        self.gateways: dict[str, GatewayMetrics] = {}

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] = self.dropped.get(reason, 0) + n

    def counts(self) -> dict[str, GatewayCounts]:
        """Requests and error answers per gateway, for the supervisor's status."""
        return {
            n: GatewayCounts(
                requests=g.requests, errors=g.errors, streams=g.streams_open, chunks=g.chunks_sent
            )
            for n, g in self.gateways.items()
        }
