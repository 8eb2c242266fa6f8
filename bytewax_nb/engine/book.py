"""What the supervisor knows of its swarm, shared by its parts: the user's graph, the
graph of processes that runs it, who runs where, and the hub's figures. No sockets."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..model import fusion
from ..model.protocol import HubStats
from ..model.spec import Topology
from .wiring import Wiring

__all__ = ["Book"]


@dataclass
class Book:
    """One swarm's bookkeeping (the supervisor's thread writes it; parts read it)."""

    swarm: str
    topology: Topology  # the user's graph (the Swarm's own object)
    fuse: bool
    units: Topology  # the graph of processes (`fusion.plan`)
    wiring: Wiring
    ports: dict[str, int] = field(default_factory=dict)  # gateway -> the port it listens on
    hub_stats: HubStats | None = None  # the gateways' counters, as the hub last reported them
    hub_restarts: int = 0
    unprocessed: int = 0  # accepted submits no bee had taken when the swarm stopped

    @classmethod
    def of(cls, swarm: str, topology: Topology, fuse: bool) -> Book:
        units = fusion.plan(topology, fuse)
        return cls(swarm, topology, fuse, units, Wiring(units, topology))
