"""A swarm as a Compose file for `docker stack deploy`: what `deploy` runs and `export` writes.

One service per bee (its image holds its code), the hub (the gateways, published on
each node it runs on: `mode: host`), and the controller. Every service uses
`endpoint_mode: dnsrr`: Swarm mode's virtual IPs and routing mesh need IPVS in the
kernel, which many machines lack, and the bus dials tasks directly anyway. Secrets
are Docker secrets, never in this file: it names them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

import yaml

from ..model.spec import BeeSpec, Topology

__all__ = ["BOOT", "BUS", "TOKENS", "Plan", "compose"]

BOOT = "boot"  # the stack's signing key and bus keys (the same for every deploy of it)
TOKENS = "tokens"  # the gateways' bearer tokens (the hub's only)
BUS = "bus"  # the stack's overlay network: `STACK_bus`
_TOPOLOGY = "/etc/bytewax-nb/topology.json"


@dataclass
class Plan:
    """What the Compose file is made from."""

    stack: str
    topology: Topology
    system_image: str  # the hub's and the controller's
    images: dict[str, str]  # bee -> image (its code inside)
    ports: dict[str, int]  # gateway -> published port
    topology_config: str  # the config's name (content-addressed: a new graph, a new name)
    tokens_secret: str | None = None  # the tokens secret's name, when a gateway has one
    encrypt_overlay: bool = True
    secret_files: dict[str, str] = field(default_factory=dict)  # export: secret -> file


def _task(role: str, name: str) -> str:
    # the engine fills in the slot and the task id: each task's identity on the control channel
    return f"{role}:{name}:{{{{.Task.Slot}}}}:{{{{.Task.ID}}}}"


def _grace(topology: Topology) -> str:
    """How long a task may drain after SIGTERM: the longest gateway timeout, and then some."""
    return f"{math.ceil(max((g.timeout for g in topology.gateways.values()), default=30.0)) + 10}s"


def _resources(spec: BeeSpec) -> dict[str, Any]:
    limits: dict[str, Any] = {}
    if spec.cpus:
        limits["cpus"] = f"{spec.cpus:g}"
    if spec.memory:
        limits["memory"] = spec.memory
    out: dict[str, Any] = {}
    if limits:
        out["limits"] = limits
        out["reservations"] = dict(limits)
    if spec.gpus:
        gpu = {"discrete_resource_spec": {"kind": "gpu", "value": spec.gpus}}
        out.setdefault("reservations", {})["generic_resources"] = [gpu]
    return out


_ENGINE_SOCKET = "/var/run/docker.sock"


def _service(plan: Plan, image: str, module: str, task: str, **extra: Any) -> dict[str, Any]:
    env = {"BYTEWAX_NB_STACK": plan.stack, "BYTEWAX_NB_TASK": task, "PYTHONUNBUFFERED": "1"}
    env.update(extra.pop("environment", {}))
    return {
        "image": image,
        "command": ["python3", "-m", module],
        "environment": env,
        "secrets": [{"source": BOOT, "target": "bytewax-nb-boot", "mode": 0o400}],
        "networks": [BUS],
        **extra,
    }


def compose(plan: Plan) -> str:
    """The Compose file's text."""
    topo = plan.topology
    grace = _grace(topo)
    services: dict[str, Any] = {}
    services["controller"] = _service(
        plan,
        plan.system_image,
        "bytewax_nb.stack.controller",
        _task("controller", "controller"),
        configs=[{"source": "topology", "target": _TOPOLOGY}],
        deploy={
            "replicas": 1,
            "endpoint_mode": "dnsrr",
            "restart_policy": {"condition": "any", "delay": "1s"},
        },
    )
    hub = _service(
        plan,
        plan.system_image,
        "bytewax_nb.gateway",
        _task("hub", "hub"),
        ports=[
            {"target": port, "published": port, "protocol": "tcp", "mode": "host"}
            for port in sorted(set(plan.ports.values()) | _grpc_ports(topo))
        ],
        volumes=["journal:/var/lib/bytewax-nb"],
        stop_grace_period=grace,
        deploy={
            "replicas": 1,
            "endpoint_mode": "dnsrr",
            "restart_policy": {"condition": "any", "delay": "1s"},
            # its ports are published on the node: two hubs cannot share one
            "update_config": {"order": "stop-first"},
            # which gateway has which port: a later deploy keeps them (URLs hold)
            "labels": {"bytewax-nb.ports": json.dumps(plan.ports, sort_keys=True)},
        },
    )
    if any(spec.autoscaled for spec in topo.bees.values()):
        # its controller scales the bees' services: the engine's API, on a manager node
        controller = services["controller"]
        controller["volumes"] = [
            {"type": "bind", "source": _ENGINE_SOCKET, "target": _ENGINE_SOCKET, "read_only": False}
        ]
        controller["deploy"]["placement"] = {"constraints": ["node.role == manager"]}
    if plan.tokens_secret:  # the controller hands them to the hub; both roll over when they change
        for service in (services["controller"], hub):
            service["secrets"].append({"source": TOKENS, "target": "bytewax-nb-tokens", "mode": 0o400})
    services["hub"] = hub
    for name in topo.order():
        spec = topo.bees.get(name)
        if spec is None:
            continue
        deploy: dict[str, Any] = {
            "replicas": spec.replicas,
            "endpoint_mode": "dnsrr",
            # a task that exits 0 drained on purpose; any other exit is restarted
            "restart_policy": {"condition": "on-failure", "delay": "1s"},
            # the new task serves (healthy: wired to its producers) before the old one drains
            "update_config": {"order": "start-first", "parallelism": 1, "failure_action": "rollback"},
        }
        resources = _resources(spec)
        if resources:
            deploy["resources"] = resources
        services[name] = _service(
            plan,
            plan.images[name],
            "bytewax_nb.replica",
            _task("bee", name),
            environment=dict(spec.env),
            stop_grace_period=grace,
            healthcheck={
                "test": ["CMD", "test", "-e", "/tmp/bytewax-nb-ready"],  # made once wired
                "interval": "1s",
                "timeout": "5s",
                "retries": 3,
                "start_period": "120s",
            },
            deploy=deploy,
        )
    network: dict[str, Any] = {"driver": "overlay"}
    if plan.encrypt_overlay:
        network["driver_opts"] = {"encrypted": "true"}
    secrets: dict[str, Any] = {}
    for key, name in ((BOOT, f"{plan.stack}_{BOOT}"), (TOKENS, plan.tokens_secret or "")):
        if not name:
            continue
        if key in plan.secret_files:
            secrets[key] = {"name": name, "file": plan.secret_files[key]}
        else:
            secrets[key] = {"name": name, "external": True}
    doc = {
        "version": "3.8",
        "services": services,
        "networks": {BUS: network},
        "volumes": {"journal": {}},
        "secrets": secrets,
        "configs": {"topology": {"name": plan.topology_config, "file": "./topology.json"}},
    }
    header = (
        f"# bytewax-nb stack {plan.stack!r}: docker stack deploy -c compose.yaml {plan.stack}\n"
        "# (every service endpoint_mode dnsrr and the gateways published mode host: see the docs)\n"
    )
    return header + str(yaml.safe_dump(doc, sort_keys=False, width=100))


def _grpc_ports(topology: Topology) -> set[int]:
    """The ports gateways serve the inference protocol's gRPC service on (fixed: given)."""
    return {g.grpc_port for g in topology.gateways.values() if g.grpc_port is not None}
