"""A stack's controller: `python -m bytewax_nb.stack.controller` (one task of the stack).

It wires the swarm as the supervisor does on one machine (links, routes, readiness,
deaths, status) for tasks the engine started, which register with it. It holds no
request: killed, the swarm serves on, and its next task learns the swarm again from
the tasks' heartbeats (see `adopt`).
"""

from __future__ import annotations

import json
import signal
import sys
import threading

from ..bus.child import BOOT_SECRET
from ..bus.curve import BusKeys
from ..engine.adoption import Adopt, Engine
from ..engine.supervisor import Supervisor
from ..model.settings import HEARTBEAT, STACK
from . import skeleton

__all__ = ["main"]

TOPOLOGY = "/etc/bytewax-nb/topology.json"  # the stack's graph, a Docker config
TOKENS = "/run/secrets/bytewax-nb-tokens"  # the gateways' tokens, a Docker secret (optional)


def _print(role: str, name: str, replica: int, line: str) -> None:
    print(f"[{name if role == 'bee' else role}/{replica}] {line}", flush=True)


def main() -> None:
    stack = STACK.get()
    with open(BOOT_SECRET, "rb") as f:
        boot = json.loads(f.read())
    with open(TOPOLOGY) as f:
        topology = skeleton.load(f.read(), read_tokens())
    adopt = Adopt(
        bytes.fromhex(boot["key"]), BusKeys.from_boot(boot.get("curve")), beat=float(HEARTBEAT.get())
    )
    supervisor = Supervisor(stack, topology, Engine(), _print, fuse=False, adopt=adopt)
    if any(spec.autoscaled for spec in topology.bees.values()):  # its compose mounts the engine's socket
        import docker

        from .scaler import StackScaler

        scaler = StackScaler(stack, supervisor, docker.from_env())
        if supervisor.adoption is not None:
            supervisor.adoption.beats.engine_wanted = scaler.engine_wanted
        supervisor.autoscale_with(scaler.cap, scaler.resize)
    supervisor.serve()
    print(
        f"bytewax-nb: controller of stack {stack!r} listening; bees: {', '.join(topology.bees)}", flush=True
    )
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    supervisor.detach()  # the tasks serve on; the next controller adopts them
    sys.exit(0)


def read_tokens() -> dict[str, str]:
    try:
        with open(TOKENS) as f:
            return dict(json.load(f))
    except FileNotFoundError:
        return {}


if __name__ == "__main__":
    main()
