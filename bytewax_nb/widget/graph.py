"""What the Swarm widget shows, as plain JSON: nodes with their figures, and edges.

Pure functions over a topology and a status snapshot (the figures `/metrics` serves,
gateway counters included),
so what the front-end receives is tested without a kernel or a browser. Only the
names, states and numbers listed here leave the kernel: never a bee's `env` or a
gateway's token.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..model.spec import Topology
from .state import BeeDetail, BeeNode, GatewayNode, LastError, SwarmEdge

__all__ = ["Rates", "bee_detail", "describe_edit", "graph"]

Node = GatewayNode | BeeNode
_LOG_TAIL = 40


class Rates:
    """Per-second rates from counters read at successive moments."""

    def __init__(self) -> None:
        self._last: dict[tuple[str, str], tuple[float, float]] = {}

    def rate(self, key: tuple[str, str], count: float, now: float) -> float:
        prev = self._last.get(key)
        self._last[key] = (now, count)
        if prev is None or now <= prev[0] or count < prev[1]:  # first look, or a counter reset
            return 0.0
        return round((count - prev[1]) / (now - prev[0]), 1)


def graph(
    topology: Topology, status: Mapping[str, Any], rates: Rates, now: float
) -> tuple[list[Node], list[SwarmEdge]]:
    """Nodes (gateways, then bees) and edges (producer -> consumer) with live figures."""
    running = bool(status.get("running"))
    gateways = dict(topology.gateways)  # copies: the supervisor thread may replace entries
    bees = dict(topology.bees)
    nodes: list[Node] = []
    for name in gateways:
        g = status.get("gateways", {}).get(name, {}) if running else {}
        url = g.get("url")
        nodes.append(
            GatewayNode(
                id=name,
                kind="gateway",
                status=("ready" if url else "starting") if running else "stopped",
                url=url,
                rps=rates.rate(("gateway", name), float(g.get("requests", 0)), now),
                errors=int(g.get("errors", 0)),
                streams=int(g.get("streams", 0)),
                chunk_rate=rates.rate(("chunks", name), float(g.get("chunks", 0)), now),
            )
        )
    for name, spec in bees.items():
        st = status.get("bees", {}).get(name, {}) if running else {}
        nodes.append(
            BeeNode(
                id=name,
                kind="bee",
                status=st.get("state", "starting") if running else "stopped",
                ready=int(st.get("ready", 0)),
                wanted=spec.replicas,
                rate=rates.rate(("bee", name), float(st.get("handled", 0)), now),
                p50_ms=round(float(st.get("p50_ms", 0.0)), 3),
                p99_ms=round(float(st.get("p99_ms", 0.0)), 3),
                errors=int(st.get("errors", 0)),
                deaths=int(st.get("deaths", 0)),
                dropped=int(st.get("dropped", 0)),
                batch=round(float(st.get("batch", 1.0)), 2),
                join=spec.join,
                group=[str(b) for b in st.get("group", [])],  # the bees sharing its processes
            )
        )
    edges = [
        SwarmEdge(source=src, target=name, join=spec.join)
        for name, spec in bees.items()
        for src in spec.inputs
    ]
    return nodes, edges


def bee_detail(bee: str, status: Mapping[str, Any], lines: list[str]) -> BeeDetail:
    """What a click on a bee opens: its recent log lines and its last error."""
    st = status.get("bees", {}).get(bee, {})
    err = st.get("last_error")
    last = None
    if isinstance(err, Mapping):
        last = LastError(
            type=str(err.get("type", "")),
            message=str(err.get("message", "")),
            traceback=str(err.get("traceback", "")),
            request_id=str(err.get("request_id", "")),
        )
    return BeeDetail(bee=bee, lines=lines[-_LOG_TAIL:], last_error=last)


def describe_edit(content: Mapping[str, Any]) -> str:
    """An edit message from the front-end, in words (for 'applying: ...' and errors)."""
    kind = content.get("type")
    if kind == "connect":
        return f"connect {content.get('source')} -> {content.get('target')}"
    if kind == "disconnect":
        return f"disconnect {content.get('source')} -> {content.get('target')}"
    if kind == "remove":
        return f"remove bee {content.get('bee')}"
    if kind == "replicas":
        return f"{content.get('bee')}: {content.get('replicas')} replicas"
    return f"unknown edit {kind!r}"
