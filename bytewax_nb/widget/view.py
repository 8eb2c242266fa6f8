"""What the live graph shows of a swarm at one moment, as the traits' plain JSON.

One `GraphView` per place that draws a swarm (a widget under a cell, a JupyterLab
tab): it keeps what a single status cannot give (rates from successive counters, the
last minutes of each node, each bee's recent errors), so both draw the same figures.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..model.errors import BytewaxNBError
from ..model.spec import Topology
from ..model.tracing import TraceRecord
from .graph import Errors, Rates, bee_detail, graph
from .history import History

if TYPE_CHECKING:
    from ..client import Traced

__all__ = ["GraphView", "Watched", "apply_edit", "edit_outcome"]


class Watched(Protocol):
    """What the graph asks of a swarm (a `Swarm`: running here, or attached to a stack;
    or one another process owns, seen from JupyterLab's side panel)."""

    name: str

    @property
    def running(self) -> bool: ...

    @property
    def topology(self) -> Topology: ...

    def status(self, fresh: float = 0.5) -> Any: ...

    def logs(self, bee: str) -> list[str]: ...

    def scale(self, bee: str, replicas: int) -> None: ...

    def connect(self, source: str, bee: str) -> None: ...

    def disconnect(self, source: str, bee: str) -> None: ...

    def remove(self, name: str) -> None: ...

    def trace(self, gateway: str | None, payload: Any, *, timeout: float | None = None) -> Traced: ...

    def traces(self) -> dict[str, list[TraceRecord]]: ...


class GraphView:
    """The figures of one drawing of a swarm, refreshed by `read`."""

    def __init__(self) -> None:
        self._rates = Rates()
        self._history = History()
        self._errors = Errors()

    def read(self, swarm: Watched, selected: str) -> dict[str, Any]:
        """`running`, `nodes` and `edges` now, and `detail` when `selected` is a bee."""
        status = swarm.status(fresh=0.2) if swarm.running else {"running": False}
        now = time.monotonic()
        topology = swarm.topology
        nodes, edges = graph(topology, status, self._rates, now)
        self._history.add(nodes, now)
        for n in nodes:  # each node draws its own last minutes (one trait, one render)
            n["spark"] = self._history.spark(n["id"])
        self._errors.note(status)
        # traits hold plain dicts: the TypedDicts are what they hold (see `state`)
        shown: dict[str, Any] = {
            "running": bool(status.get("running")),
            "nodes": [dict(n) for n in nodes],
            "edges": [dict(e) for e in edges],
        }
        if selected in topology.bees:
            errors, history = self._errors.of(selected), self._history.of(selected)
            shown["detail"] = dict(bee_detail(selected, status, swarm.logs(selected), errors, history))
        return shown


def apply_edit(swarm: Watched, content: dict[str, Any]) -> None:
    """Apply one edit the front-end sent (raises on a refused one)."""
    kind = content["type"]
    if kind == "replicas":
        replicas = content["replicas"]
        if not isinstance(replicas, int) or isinstance(replicas, bool):
            raise ValueError(f"replicas must be an integer, not {replicas!r}")
        swarm.scale(str(content["bee"]), replicas)
    elif kind == "connect":
        swarm.connect(str(content["source"]), str(content["target"]))
    elif kind == "disconnect":
        swarm.disconnect(str(content["source"]), str(content["target"]))
    elif kind == "remove":
        swarm.remove(str(content["bee"]))
    else:
        raise ValueError(f"unknown edit {kind!r}")


def edit_outcome(what: str, edit: Callable[[], None]) -> tuple[str, str]:
    """Make an edit; its outcome as (level, words), as the widget and the lab's tab both
    say it: a refused edit is the user's input, answered, never an exception."""
    try:
        edit()
    except (BytewaxNBError, KeyError, TypeError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return "error", f"refused: {what}: {first}"
    return "info", f"done: {what}"
