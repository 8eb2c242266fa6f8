"""bytewax-nb: real-time ML inference swarms built, run and served from a notebook.

The public API. Names are imported on first use, so a bee replica (`python -m
bytewax_nb.replica`, in a slim container with only pyzmq, cloudpickle and blake3) never
imports the owner's side. Where each part runs: docs/architecture.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .model import errors as _errors
from .model.version import VERSION as __version__

__all__ = [
    "BadRequest",
    "BeeNotPicklable",
    "BeeSpec",
    "BytewaxNBError",
    "Context",
    "DevSwarm",
    "GatewayError",
    "GatewaySpec",
    "NotReady",
    "RemoteError",
    "RequestTimeout",
    "StartError",
    "Swarm",
    "SwarmWidget",
    "Tensor",
    "TopologyError",
    "__version__",
    "current_swarm",
    "load_ipython_extension",
]

_WHERE = {
    "BadRequest": "model.errors",
    "BeeNotPicklable": "model.errors",
    "BytewaxNBError": "model.errors",
    "GatewayError": "model.errors",
    "NotReady": "model.errors",
    "RemoteError": "model.errors",
    "RequestTimeout": "model.errors",
    "StartError": "model.errors",
    "TopologyError": "model.errors",
    "BeeSpec": "model.spec",
    "GatewaySpec": "model.spec",
    "Context": "model.invoke",
    "Tensor": "model.tensors",
    "DevSwarm": "devswarm",
    "Swarm": "swarm",
    "SwarmWidget": "widget",
    "current_swarm": "notebook.magics",
}

if TYPE_CHECKING:
    from .devswarm import DevSwarm
    from .model.errors import (
        BadRequest,
        BeeNotPicklable,
        BytewaxNBError,
        GatewayError,
        NotReady,
        RemoteError,
        RequestTimeout,
        StartError,
        TopologyError,
    )
    from .model.invoke import Context
    from .model.spec import BeeSpec, GatewaySpec
    from .model.tensors import Tensor
    from .notebook.magics import current_swarm
    from .swarm import Swarm
    from .widget import SwarmWidget


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'bytewax_nb' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def _as_in_ipython(text: str) -> str:
    from .notebook.cells import as_in_ipython  # only when IPython shows a bee's traceback

    return as_in_ipython(text)


_errors.RemoteError.name_files = _as_in_ipython


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext bytewax_nb`: the %swarm, %gateway, %%bee and %send magics."""
    from .notebook.magics import load

    load(ipython)


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where JupyterLab finds the Swarm widget's prebuilt front-end."""
    return [{"src": "labextension", "dest": "bytewax-nb-widget"}]
