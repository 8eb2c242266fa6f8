"""bytewax-nb: real-time ML inference swarms built, run and served from a notebook.

Names are imported on first use, so a bee replica (`python -m bytewax_nb.runner`, in a
slim container with only pyzmq and cloudpickle) never imports the owner's side.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any


def _version() -> str:
    """The installed distribution's version (taken from the widget's package.json at
    build time, the one place it lives); a source tree without metadata reads that file."""
    from importlib import metadata

    try:
        return metadata.version("bytewax-nb")
    except metadata.PackageNotFoundError:
        import json
        import pathlib

        here = pathlib.Path(__file__).resolve().parent
        for folder in (here, here.parent):  # built into the package, or the source checkout's
            candidate = folder / "labextension" / "package.json"
            if candidate.is_file():
                return str(json.loads(candidate.read_text())["version"])
        return "0+unknown"


__version__ = _version()

__all__ = [
    "BadRequest",
    "BeeNotPicklable",
    "BytewaxNBError",
    "Context",
    "DevSwarm",
    "GatewayError",
    "NotReady",
    "RemoteError",
    "RequestTimeout",
    "StartError",
    "Swarm",
    "SwarmWidget",
    "TopologyError",
    "__version__",
    "load_ipython_extension",
]

_WHERE = {
    "BadRequest": "errors",
    "BeeNotPicklable": "errors",
    "BytewaxNBError": "errors",
    "GatewayError": "errors",
    "NotReady": "errors",
    "RemoteError": "errors",
    "RequestTimeout": "errors",
    "StartError": "errors",
    "TopologyError": "errors",
    "Context": "invoke",
    "DevSwarm": "devswarm",
    "Swarm": "swarm",
    "SwarmWidget": "widget",
}

if TYPE_CHECKING:
    from .devswarm import DevSwarm
    from .errors import (
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
    from .invoke import Context
    from .swarm import Swarm
    from .widget import SwarmWidget


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'bytewax_nb' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


def load_ipython_extension(ipython: Any) -> None:
    """`%load_ext bytewax_nb`: the %swarm, %gateway, %%bee and %send magics."""
    from .magics import load

    load(ipython)


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where JupyterLab finds the Swarm widget's prebuilt front-end."""
    return [{"src": "labextension", "dest": "bytewax-nb-widget"}]
