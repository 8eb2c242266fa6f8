"""Prometheus exposition for the hub: its gateways' counters plus the swarm's bee stats.

Bee numbers come from the supervisor's status snapshots, so `/metrics` shows the same
figures as `%swarm status` and the widget.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["GatewayMetrics", "HubMetrics"]

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)


class _SwarmCollector(Collector):
    def __init__(self, owner: HubMetrics) -> None:
        self._owner = owner

    def collect(self) -> Iterator[Metric]:
        bees: dict[str, dict[str, Any]] = self._owner.snapshot.get("bees", {})
        handled = CounterMetricFamily("bytewax_nb_bee_handled", "Messages a bee handled", labels=["bee"])
        errors = CounterMetricFamily("bytewax_nb_bee_errors", "Exceptions a bee raised", labels=["bee"])
        ready = GaugeMetricFamily("bytewax_nb_bee_replicas_ready", "Ready replicas", labels=["bee"])
        wanted = GaugeMetricFamily("bytewax_nb_bee_replicas_wanted", "Wanted replicas", labels=["bee"])
        p50 = GaugeMetricFamily("bytewax_nb_bee_latency_p50_seconds", "Median call time", labels=["bee"])
        p99 = GaugeMetricFamily("bytewax_nb_bee_latency_p99_seconds", "p99 call time", labels=["bee"])
        dropped = CounterMetricFamily(
            "bytewax_nb_dropped_frames", "Bus frames dropped for a bad signature", labels=["process"]
        )
        for name, st in sorted(bees.items()):
            handled.add_metric([name], st.get("handled", 0))
            errors.add_metric([name], st.get("errors", 0))
            ready.add_metric([name], st.get("ready", 0))
            wanted.add_metric([name], st.get("wanted", 0))
            p50.add_metric([name], st.get("p50_ms", 0.0) / 1000)
            p99.add_metric([name], st.get("p99_ms", 0.0) / 1000)
            dropped.add_metric([f"bee:{name}"], st.get("dropped", 0))
        dropped.add_metric(["hub"], self._owner.dropped)
        yield from (handled, errors, ready, wanted, p50, p99, dropped)


class GatewayMetrics:
    """One gateway's instruments, bound to its label."""

    def __init__(self, hub: HubMetrics, gateway: str, in_flight: Callable[[], float]) -> None:
        self.gateway = gateway
        self._hub = hub
        self.latency = hub.latency.labels(gateway)
        self.late = hub.late.labels(gateway)
        hub.in_flight.labels(gateway).set_function(in_flight)
        self._by_code: dict[int, Any] = {}

    def count(self, code: int, seconds: float | None = None) -> None:
        counter = self._by_code.get(code)
        if counter is None:
            counter = self._by_code[code] = self._hub.requests.labels(self.gateway, str(code))
        counter.inc()
        if code >= 400:
            self._hub.errors.labels(self.gateway, str(code)).inc()
        if seconds is not None:
            self.latency.observe(seconds)


class HubMetrics:
    """The hub's registry: every gateway's counters, dropped frames, bee stats."""

    def __init__(self) -> None:
        self.snapshot: dict[str, Any] = {}
        self.dropped = 0
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "bytewax_nb_gateway_requests",
            "HTTP requests answered, by status code",
            ["gateway", "code"],
            registry=self.registry,
        )
        self.errors = Counter(
            "bytewax_nb_gateway_errors",
            "HTTP requests answered with an error status",
            ["gateway", "code"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "bytewax_nb_gateway_request_seconds",
            "Time from request to response",
            ["gateway"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.late = Counter(
            "bytewax_nb_gateway_late_responses",
            "Responses that arrived after the first one or after the deadline",
            ["gateway"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "bytewax_nb_gateway_in_flight",
            "Requests accepted and not yet answered (submitted ones included)",
            ["gateway"],
            registry=self.registry,
        )
        self.registry.register(_SwarmCollector(self))
