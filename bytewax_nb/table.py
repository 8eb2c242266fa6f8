"""`%swarm status` as text: gateways with their URL, bees with their numbers."""

from __future__ import annotations

from typing import Any

from .swarm import Swarm

__all__ = ["status_table"]


def _grid(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]


def status_table(swarm: Swarm) -> str:
    st: dict[str, Any] = swarm.status()
    state = ("ready" if st.get("ready") else "starting") if st.get("running") else "stopped"
    lines = [f"swarm {swarm.name!r} ({swarm.runtime}): {state}"]
    gateways = [["gateway", "url"]]
    for name in swarm.topology.gateways:
        gateways.append([name, swarm.url(name) if st.get("running") else "-"])
    lines += _grid(gateways)
    bees = [["bee", "input", "replicas", "handled", "errors", "p50 ms"]]
    for name, spec in swarm.topology.bees.items():
        b = st.get("bees", {}).get(name, {})
        inputs = ("join " if spec.join else "") + ", ".join(spec.inputs)
        bees.append(
            [
                name,
                inputs,
                f"{b.get('ready', 0)}/{spec.replicas}",
                str(b.get("handled", 0)),
                str(b.get("errors", 0)),
                f"{b.get('p50_ms', 0.0):.2f}",
            ]
        )
    if len(bees) > 1:
        lines += ["", *_grid(bees)]
    return "\n".join(lines)
