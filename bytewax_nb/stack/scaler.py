"""A deployed stack's autoscaling: its controller scales the bees' services through the
engine, as `bytewax-nb scale` does from outside, and the tasks the engine starts
register as any do. The rule and its bookkeeping are the owner's (`engine.scaling`).

Only an autoscaled stack's controller is given the engine's API: the Docker socket of a
manager node, mounted into it (see `compose`). What a bee wants is then what the engine
runs of it, zero included (`Beats.engine_wanted`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ..engine.supervisor import Supervisor
from ..model.errors import StartError
from ..model.spec import BeeSpec
from .watch import NAMESPACE

__all__ = ["StackScaler", "cpus_cap"]

_WANTED_FOR = 1.0  # seconds the engine's replica counts are taken as they were read


def cpus_cap(nodes: Iterable[Mapping[str, Any]], cpus: float | None) -> int | None:
    """How many replicas reserving `cpus` each the cluster's ready, active nodes hold
    (None: no reservation, no cap but the bee's own)."""
    if not cpus:
        return None
    total = 0.0
    for node in nodes:
        if node.get("Status", {}).get("State") != "ready":
            continue
        if node.get("Spec", {}).get("Availability", "active") != "active":
            continue
        total += node.get("Description", {}).get("Resources", {}).get("NanoCPUs", 0) / 1e9
    return max(1, math.floor(total / cpus + 1e-9))


class StackScaler:
    """The engine side of a stack's autoscaling: its services' replicas, read and set."""

    def __init__(self, stack: str, supervisor: Supervisor, client: Any) -> None:
        self.stack = stack
        self.supervisor = supervisor
        self.client = client
        self._read_at = -math.inf
        self._wanted: dict[str, int] = {}

    def engine_wanted(self) -> dict[str, int]:
        """Each bee's replicas as its service says (read at most once a second)."""
        now = time.monotonic()
        if now - self._read_at >= _WANTED_FOR:
            services = self.client.services.list(filters={"label": f"{NAMESPACE}={self.stack}"})
            wanted = {}
            for service in services:
                mode = service.attrs["Spec"].get("Mode", {})
                if "Replicated" in mode:
                    wanted[service.name.removeprefix(f"{self.stack}_")] = int(mode["Replicated"]["Replicas"])
            self._wanted, self._read_at = wanted, now
        return self._wanted

    def cap(self, spec: BeeSpec) -> int | None:
        return cpus_cap((n.attrs for n in self.client.nodes.list()), spec.cpus)

    def resize(self, bee: str, replicas: int, why: str, timeout: float) -> None:
        """Scale the bee's service, then wait until that many of its tasks serve (none
        left, for zero)."""
        self.client.services.get(f"{self.stack}_{bee}").scale(replicas)
        self._read_at = -math.inf
        sup = self.supervisor
        if sup.adoption is not None:
            sup.mailbox.call(sup.adoption.resync)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            view = sup.status(fresh=0.0)["bees"].get(bee)
            if view is not None and view["ready"] == replicas and (replicas or not view["replicas"]):
                return
            time.sleep(0.25)  # the engine starts and stops tasks: nothing here to wait on
        raise StartError(f"stack {self.stack!r}: bee {bee!r} not at {replicas} replicas after {timeout:g} s")
