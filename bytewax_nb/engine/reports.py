"""What a running swarm looks like from outside: status snapshots, URLs, start-up reports.

Pure functions over the supervisor's state, called on its thread.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from typing import cast

from ..model.protocol import (
    BeeView,
    GatewayCounts,
    GatewayView,
    HubView,
    ReplicaView,
    Role,
    SwarmStatus,
)
from ..model.spec import GatewaySpec, Topology
from .book import Book
from .wiring import Member, Wiring

__all__ = ["gateway_url", "last_lines", "not_ready_report", "record_fields", "snapshot"]

Logs = Mapping[str, deque[tuple[float, int, str]]]


def gateway_url(spec: GatewaySpec, port: int) -> str:
    """Where callers reach a gateway (a wildcard bind is reached on loopback)."""
    host = "127.0.0.1" if spec.host in ("0.0.0.0", "") else spec.host
    return f"http://{host}:{port}/gateways/{spec.name}"


def _pid(m: Member | None) -> int | None:
    return m.handle.pid if m is not None and m.handle is not None else None


def snapshot(book: Book, ready: bool, controller_since: float | None = None) -> SwarmStatus:
    """The status of `Swarm.status()`, `%swarm status` and `bytewax-nb status`
    (`controller_since`: a stack's, when its controller started)."""
    topology, wiring, ports, hub_stats = book.topology, book.wiring, book.ports, book.hub_stats
    hub = wiring.hub()
    counts: dict[str, GatewayCounts] = hub_stats["gateways"] if hub_stats else {}
    none = GatewayCounts(requests=0, errors=0, streams=0, chunks=0)
    gateways = {
        name: GatewayView(
            port=ports.get(name),
            host=g.host,
            timeout=g.timeout,
            pid=_pid(hub),
            url=gateway_url(g, ports[name]) if name in ports else None,
            requests=counts.get(name, none)["requests"],
            errors=counts.get(name, none)["errors"],
            streams=counts.get(name, none).get("streams", 0),
            chunks=counts.get(name, none).get("chunks", 0),
        )
        for name, g in topology.gateways.items()
    }
    members = sorted(wiring.members.values(), key=lambda m: m.replica)
    bees: dict[str, BeeView] = {}
    for name, st in wiring.bee_stats().items():
        replicas = [
            cast(ReplicaView, {"replica": m.replica, "pid": _pid(m), "state": m.state, **m.stats_of(name)})
            for m in members
            if m.role == Role.BEE and name in m.bees  # a group's processes run it too
        ]
        bees[name] = BeeView(**st, join=topology.bees[name].join, replicas=replicas)
    hub_view = HubView(
        pid=_pid(hub),
        restarts=book.hub_restarts,
        dropped_by=dict(hub_stats["dropped_by"]) if hub_stats else {},
        waiting=hub_stats["waiting"] if hub_stats else 0,
    )
    status = SwarmStatus(swarm=book.swarm, ready=ready, gateways=gateways, bees=bees, hub=hub_view)
    if controller_since is not None:
        status["controller_since"] = controller_since
    return status


def record_fields(
    topology: Topology, wiring: Wiring, ports: Mapping[str, int]
) -> tuple[dict[str, str], dict[str, list[str]], dict[str, int]]:
    """(gateway URLs, bee inputs, process ids) for the CLI's record of a swarm."""
    gateways = {g: gateway_url(topology.gateways[g], p) for g, p in ports.items() if g in topology.gateways}
    bees = {name: list(spec.inputs) for name, spec in topology.bees.items()}
    # by role, name and replica: an identity is a secret of the swarm's (see `Supervisor._launch`)
    pids = {f"{m.role}:{m.name}:{m.replica}:{pid}": pid for m in wiring.members.values() if (pid := _pid(m))}
    return gateways, bees, pids


def last_lines(logs: Logs, keys: Iterable[str], replica: int, count: int) -> list[str]:
    """A replica's last lines under `keys` (a fused group's: all its bees'), in the order
    they came."""
    said = [(t, text) for k in keys for t, r, text in list(logs.get(k, ())) if r == replica]
    return [text for _, text in sorted(said, key=lambda tl: tl[0])][-count:]


def not_ready_report(wiring: Wiring, logs: Logs) -> str:
    """Each wanted process's state and last lines: what a failed start shows."""
    lines = []
    for (role, name, replica), slot in sorted(wiring.slots.items()):
        here = [m for m in wiring.members.values() if m.slot_key == (role, name, replica)]
        state = here[0].state if here else f"exited (code {slot.last_exit})"
        lines.append(f"  {role} {name}/{replica}: {state}")
        keys = wiring.bees_of(name) if role == Role.BEE else ["hub"]
        lines += [f"    | {t}" for t in last_lines(logs, keys, replica, 15)]
    return "\n".join(lines)
