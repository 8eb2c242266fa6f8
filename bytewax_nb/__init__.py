"""bytewax-nb: real-time ML inference swarms built, run and served from a notebook."""

from __future__ import annotations

from typing import Any

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


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext bytewax_nb`: the %swarm, %gateway, %%bee and %send magics."""
    from .magics import load

    load(ipython)


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
    "load_ipython_extension",
]
