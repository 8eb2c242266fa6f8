"""bytewax-nb: real-time ML inference swarms built, run and served from a notebook."""

from __future__ import annotations

from .devswarm import DevSwarm
from .errors import (
    BytewaxNBError,
    GatewayError,
    NotReady,
    RemoteError,
    RequestTimeout,
    StartError,
    TopologyError,
)
from .invoke import Context
from .swarm import Swarm

__version__ = "0.1.0"

__all__ = [
    "BytewaxNBError",
    "Context",
    "DevSwarm",
    "GatewayError",
    "NotReady",
    "RemoteError",
    "RequestTimeout",
    "StartError",
    "Swarm",
    "TopologyError",
    "__version__",
]
