"""A swarm that is only declared: what `Swarm.start()` makes in a kernel that
`bytewax-nb deploy|export` runs to read a notebook (`BYTEWAX_NB_DECLARE=1`).

Nothing is launched and no port is bound: changes (a `%%bee` cell, a scale, a new
gateway) edit the declaration, so the stack gets the graph the notebook ends with, and
a gateway with a fixed port deploys on that port because nothing here holds it. What
would talk to the running swarm (a request, its URL) raises `NotRunningHere`; the
command reading the notebook skips such cells.
"""

from __future__ import annotations

import dataclasses

from ..model.errors import NotRunningHere
from ..model.protocol import SwarmStatus
from ..model.spec import BeeSpec, GatewaySpec, Topology

__all__ = ["Declared"]


class Declared:
    """Stands where a supervisor would, for a declared swarm; edits its topology."""

    unprocessed = 0
    traceback_token = ""

    def __init__(self, swarm: str, topology: Topology) -> None:
        self.swarm = swarm
        self.topology = topology
        self.stopped = False
        self.ports = {n: g.port for n, g in topology.gateways.items()}  # declared, not bound

    def not_here(self, what: str) -> NotRunningHere:
        return NotRunningHere(
            f"swarm {self.swarm!r} is only declared in this kernel ({what} needs it running): "
            "bytewax-nb deploy and export read a notebook without running its swarm"
        )

    def deploy(self, spec: BeeSpec, timeout: float) -> None:
        self.topology.add_bee(spec, replace=True)

    def scale(self, name: str, replicas: int, timeout: float) -> None:
        self.topology.bees[name] = dataclasses.replace(self.topology.bees[name], replicas=replicas)

    def remove(self, name: str, timeout: float) -> None:
        del self.topology.bees[name]

    def add_gateway(self, spec: GatewaySpec, timeout: float) -> None:
        self.topology.add_gateway(spec)
        self.ports[spec.name] = spec.port

    def status(self, fresh: float = 0.5) -> SwarmStatus:
        raise self.not_here("its status")

    def log_lines(self, name: str) -> list[str]:
        return []

    def stop(self, drain_timeout: float | None = None) -> None:
        self.stopped = True
