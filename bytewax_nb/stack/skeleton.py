"""A swarm's graph without its code: what a stack's controller knows of it.

The controller wires the swarm and never runs a bee, so it gets the graph as JSON (a
Docker config a person can read), not the bees' pickles: it needs neither their
libraries nor their code. Each bee's code is in its own image (see `images`).
"""

from __future__ import annotations

import json
from typing import Any

from ..model.errors import BytewaxNBError
from ..model.promises import bee_contract
from ..model.spec import BeeSpec, GatewaySpec, Topology

__all__ = ["dump", "load", "remote"]

# what a bee's spec keeps in a stack's graph: how it is wired and how it fails
# (and what it promises its callers: its schemas and tensors)
_BEE_FIELDS = (
    "inputs",
    "join",
    "replicas",
    "min_replicas",
    "max_replicas",
    "target_in_flight",
    "idle_s",
    "batch_size",
    "batch_timeout_ms",
    "timeout",
    "retries",
    "contract",
)
# a gateway's, except its token (a Docker secret) and its host (all interfaces in a task)
_GATEWAY_FIELDS = (
    "port",
    "timeout",
    "max_body",
    "max_in_flight",
    "read_timeout",
    "tracebacks",
    "grpc_port",
    "cors",
)


def remote(*args: Any) -> Any:
    """A bee's function as the controller holds it: the code runs in the bee's tasks."""
    raise BytewaxNBError("this bee's code runs in its stack's tasks, not here")


def dump(topology: Topology, ports: dict[str, int]) -> str:
    """The graph as JSON; `ports`: where each gateway listens in the stack."""
    body = {
        "gateways": {
            name: {**{f: getattr(g, f) for f in _GATEWAY_FIELDS}, "port": ports[name], "token": bool(g.token)}
            for name, g in topology.gateways.items()
        },
        "bees": {
            name: {f: list(v) if isinstance(v := getattr(b, f), tuple) else v for f in _BEE_FIELDS}
            for name, b in topology.bees.items()
            if bee_contract(b)  # read where the code is: the controller never has it
        },
    }
    return json.dumps(body, indent=2, sort_keys=True) + "\n"


def load(text: str, tokens: dict[str, str] | None = None) -> Topology:
    """The graph back, each bee's function a stand-in; `tokens`: the gateways' secrets."""
    body = json.loads(text)
    tokens = tokens or {}
    topology = Topology()
    for name, g in body["gateways"].items():
        fields = {f: g[f] for f in _GATEWAY_FIELDS if f in g}  # a stack made before grpc_port has none
        topology.add_gateway(GatewaySpec(name, host="0.0.0.0", token=tokens.get(name), **fields))
    for name, b in body["bees"].items():
        fields = {f: b[f] for f in _BEE_FIELDS if f in b}  # a stack made before contracts has none
        fields["inputs"] = tuple(fields["inputs"])
        topology.add_bee(BeeSpec(name, remote, fuse=False, **fields))
    return topology
