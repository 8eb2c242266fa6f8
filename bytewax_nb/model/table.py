"""`%swarm status` and `bytewax-nb status` as text: gateways and bees with their numbers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["status_table"]


def _grid(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def status_table(st: Mapping[str, Any], runtime: str) -> str:
    """Render a status snapshot (`Swarm.status()`, or one the CLI fetched)."""
    running = st.get("running", True)
    state = ("ready" if st.get("ready") else "starting") if running else "stopped"
    lines = [f"swarm {st.get('swarm')!r} ({runtime}): {state}"]
    gateways = [["gateway", "url"]]
    for name, g in st.get("gateways", {}).items():
        gateways.append([name, g.get("url") or "-"])
    if len(gateways) > 1:
        lines += _grid(gateways)
    bees = [["bee", "input", "replicas", "handled", "errors", "deaths", "retried", "dropped", "p50 ms"]]
    for name, b in st.get("bees", {}).items():
        inputs = ("join " if b.get("join") else "") + ", ".join(b.get("input", []))
        bees.append(
            [
                name,
                inputs,
                f"{b.get('ready', 0)}/{b.get('wanted', 0)}",
                str(b.get("handled", 0)),
                str(b.get("errors", 0)),
                str(b.get("deaths", 0)),
                str(b.get("retried", 0)),
                str(b.get("dropped", 0)),
                f"{b.get('p50_ms', 0.0):.2f}",
            ]
        )
    if len(bees) > 1:
        lines += ["", *_grid(bees)]
    groups = {tuple(b["group"]) for b in st.get("bees", {}).values() if b.get("group")}
    if groups:
        lines.append("")
        lines += [f"fused (one process per replica): {' -> '.join(g)}" for g in sorted(groups)]
    scaled = [(name, b["autoscale"]) for name, b in st.get("bees", {}).items() if b.get("autoscale")]
    if scaled:
        lines.append("")
    for name, a in scaled:
        said = f"; last: {a['reason']}" if a.get("reason") else ""
        cold = f"; cold start {a['cold_start_s']:g} s" if a.get("cold_start_s") is not None else ""
        lines.append(
            f"autoscaled {name}: {a['min']}..{a['max']} replicas, wants {a['desired']}, "
            f"{a['in_flight']} in flight (target {a['target']:g} per replica){said}{cold}"
        )
    hub = st.get("hub") or {}
    if hub.get("restarts") or hub.get("dropped_by"):
        dropped = ", ".join(f"{k} {v}" for k, v in sorted(hub.get("dropped_by", {}).items())) or "none"
        lines += ["", f"hub: {hub.get('restarts', 0)} restarts; frames dropped: {dropped}"]
    for name, b in st.get("bees", {}).items():
        for call in b.get("stuck") or []:
            lines.append(
                f"stuck: {name}/{call['replica']} in request {call['request_id']} for "
                f"{call['seconds']:g} s, at {call['where']}"
            )
    for name, b in st.get("bees", {}).items():
        err = b.get("last_error")
        if err:
            lines.append(f"last error of {name}: {err.get('type')}: {err.get('message')}")
    return "\n".join(lines)
