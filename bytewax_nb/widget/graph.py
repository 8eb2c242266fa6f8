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
from .state import Autoscaled, BeeDetail, BeeNode, GatewayNode, LastError, NodeHistory, ReplicaInfo, SwarmEdge

__all__ = ["Errors", "Rates", "bee_detail", "describe_edit", "graph"]

Node = GatewayNode | BeeNode
_LOG_TAIL = 40
_KEEP_ERRORS = 10


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
        bee = BeeNode(
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
        scale = st.get("autoscale")
        if scale:
            bee["autoscale"] = Autoscaled(
                min=int(scale["min"]),
                max=int(scale["max"]),
                desired=int(scale["desired"]),
                in_flight=int(scale["in_flight"]),
                target=float(scale["target"]),
                reason=str(scale.get("reason", "")),
                cold_start_s=scale.get("cold_start_s"),
            )
        nodes.append(bee)
    edges = [
        SwarmEdge(source=src, target=name, join=spec.join, rate=0.0)
        for name, spec in bees.items()
        for src in spec.inputs
    ]
    _edge_rates(nodes, edges)
    return nodes, edges


def _out_rate(n: Node) -> float:
    return n["rps"] if n["kind"] == "gateway" else n["rate"]


def _edge_rates(nodes: list[Node], edges: list[SwarmEdge]) -> None:
    """Messages a second along each edge. A bee with one input handles exactly what that
    edge carries; for one with several, its producer's output rate is the best figure
    there is (a producer sends each output to every bee that reads it)."""
    by_id = {n["id"]: n for n in nodes}
    inputs: dict[str, int] = {}
    for e in edges:
        inputs[e["target"]] = inputs.get(e["target"], 0) + 1
    for e in edges:
        target, source = by_id.get(e["target"]), by_id.get(e["source"])
        if target is not None and target["kind"] == "bee" and inputs[e["target"]] == 1:
            e["rate"] = target["rate"]
        elif source is not None:
            e["rate"] = _out_rate(source)


def _last_error(err: Mapping[str, Any]) -> LastError:
    return LastError(
        type=str(err.get("type", "")),
        message=str(err.get("message", "")),
        traceback=str(err.get("traceback", "")),
        request_id=str(err.get("request_id", "")),
        time=float(err.get("time", 0.0)),
    )


class Errors:
    """Each bee's recent errors, newest first, a few each: the status holds only the
    last one, so this keeps the last error seen at each refresh (errors between two
    refreshes show as the newest of them)."""

    def __init__(self, keep: int = _KEEP_ERRORS) -> None:
        self._keep = keep
        self._seen: dict[str, list[LastError]] = {}

    def note(self, status: Mapping[str, Any]) -> None:
        """Keep each bee's last error if it is newer than what is kept (a replica that
        died takes its newer error with it: an older one shows as last again)."""
        bees = status.get("bees", {})
        if status.get("running"):
            for gone in set(self._seen) - set(bees):  # a bee added again starts afresh
                del self._seen[gone]
        for bee, st in bees.items():
            err = st.get("last_error")
            if not isinstance(err, Mapping):
                continue
            last = _last_error(err)
            known = self._seen.setdefault(bee, [])
            if not known or last["time"] > known[0]["time"]:
                known.insert(0, last)
                del known[self._keep :]

    def of(self, bee: str) -> list[LastError]:
        return list(self._seen.get(bee, []))


def bee_detail(
    bee: str,
    status: Mapping[str, Any],
    lines: list[str],
    errors: list[LastError],
    history: NodeHistory | None = None,
) -> BeeDetail:
    """What a click on a bee opens: its recent log lines, its recent errors, its replicas
    and its last minutes."""
    st = status.get("bees", {}).get(bee, {})
    err = st.get("last_error")
    replicas = [
        ReplicaInfo(
            replica=int(r.get("replica", 0)),
            pid=r.get("pid"),
            state=str(r.get("state", "")),
            handled=int(r.get("handled", 0)),
            queued=int(r.get("queued", 0)),
        )
        for r in st.get("replicas", [])
    ]
    return BeeDetail(
        bee=bee,
        lines=lines[-_LOG_TAIL:],
        last_error=_last_error(err) if isinstance(err, Mapping) else None,
        errors=errors,
        replicas=replicas,
        history=history,
    )


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
