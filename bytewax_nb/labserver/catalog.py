"""What JupyterLab's side panel lists and does: this machine's swarms and the deployed
stacks, each drawn in a tab with the graph widget's view (`widget.view`), changed,
read and stopped. Plain blocking calls: the server's handlers run them on threads.

A swarm is named by an id that stays unique when names do not: `local/NAME.PID` for a
swarm of this machine (two kernels may each run a swarm called `hello-world`), and
`stack/NAME` for a deployed stack.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from ..engine import state
from ..model.errors import BytewaxNBError
from ..swarm import Swarm
from ..widget.graph import describe_edit
from ..widget.probe import send_probe
from ..widget.state import Kept, Listed, ListedBee, ListedGateway, Message, Probe
from ..widget.view import GraphView, Watched, apply_edit, edit_outcome
from .elsewhere import Elsewhere

__all__ = ["Catalog", "UnknownSwarm"]

_STOP_WAIT = 60.0  # seconds a stopped swarm has to drain and remove its record
_LIST_ASK = 2.0  # seconds each owner has to answer the listing's status


class UnknownSwarm(BytewaxNBError):
    """No swarm or stack has that id (any more)."""


class Catalog:
    """The swarms one Jupyter server shows; one drawing (`GraphView`) per swarm open."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._open: dict[str, tuple[Watched, GraphView]] = {}
        self._seq = 0

    # -- the list --------------------------------------------------------------------

    def listing(self) -> list[Listed]:
        from ..stack.attach import stacks

        rows = [self._local_row(r) for r in state.read_all()]
        rows += [self._stack_row(name) for name in stacks()]
        return rows

    def _local_row(self, record: state.Record) -> Listed:
        row = Listed(
            id=f"local/{record.stem}",
            name=record.swarm,
            kind="swarm",
            runtime=record.runtime,
            owner=record.owner,
            state="running",
            gateways=[ListedGateway(name=n, url=u) for n, u in record.gateways.items()],
            bees=[ListedBee(name=n, state="", ready=0, wanted=0) for n in record.bees],
            error="",
        )
        if not state.owner_alive(record):
            row["state"] = "owner dead"
            row["error"] = "its owner died: `bytewax-nb gc` removes what it left"
            return row
        try:
            from ..engine.commands import ask

            who = f"swarm {record.swarm!r} (owner {record.owner})"
            _fill(row, ask(record.control, who, "status", _LIST_ASK)["status"])
        except BytewaxNBError as exc:
            row["state"], row["error"] = "not answering", str(exc)
        return row

    def _stack_row(self, name: str) -> Listed:
        row = Listed(
            id=f"stack/{name}",
            name=name,
            kind="stack",
            runtime="stack",
            owner=None,
            state="deployed",
            gateways=[],
            bees=[],
            error="",
        )
        try:
            swarm = self._watched(row["id"])
            if isinstance(swarm, Swarm):  # where callers reach it, not where it binds
                row["gateways"] = [ListedGateway(name=n, url=swarm.url(n)) for n in swarm.topology.gateways]
            _fill(row, swarm.status())
        except BytewaxNBError as exc:
            row["state"], row["error"] = "not answering", str(exc)
        return row

    # -- one swarm -------------------------------------------------------------------

    def _watched(self, sid: str) -> Watched:
        with self._lock:
            opened = self._open.get(sid)
        if opened is not None and (sid.startswith("stack/") or opened[0].running):
            return opened[0]
        kind, _, name = sid.partition("/")
        swarm: Watched
        if kind == "local":
            record = next((r for r in state.read_all() if r.stem == name), None)
            if record is None or not state.owner_alive(record):
                raise UnknownSwarm(f"no running swarm {name!r} on this machine (see `bytewax-nb list`)")
            swarm = Elsewhere(record)
        elif kind == "stack":
            swarm = Swarm.attach(name)
        else:
            raise UnknownSwarm(f"no swarm {sid!r}: ids are local/NAME.PID or stack/NAME")
        with self._lock:
            self._open[sid] = (swarm, GraphView())
        return swarm

    def view(self, sid: str, selected: str) -> dict[str, Any]:
        """What the swarm's tab draws: the graph widget's traits."""
        swarm = self._watched(sid)
        with self._lock:
            drawing = self._open[sid][1]
        return {"swarm": swarm.name, **drawing.read(swarm, selected)}

    def edit(self, sid: str, content: dict[str, Any]) -> Message:
        """Apply an edit from the tab; its outcome in words, as the widget says it."""
        swarm = self._watched(sid)
        return self._said(*edit_outcome(describe_edit(content), lambda: apply_edit(swarm, content)))

    def _said(self, level: str, text: str) -> Message:
        with self._lock:
            self._seq += 1
            return Message(text=text, level="error" if level == "error" else "info", seq=self._seq)

    def probe(self, sid: str, gateway: str, text: str) -> Probe:
        with self._lock:
            self._seq += 1
            seq = self._seq
        return send_probe(self._watched(sid), gateway, text, seq)

    def traces(self, sid: str) -> Kept:
        kept = self._watched(sid).traces()
        return Kept(slow=kept.get("slow", []), failed=kept.get("failed", []))

    def logs(self, sid: str, bee: str, lines: int) -> list[str]:
        swarm = self._watched(sid)
        if bee != "hub" and bee not in swarm.topology.bees:
            raise BytewaxNBError(f"swarm {swarm.name!r} has no bee {bee!r}")
        out = swarm.logs(bee)
        return out[-lines:] if lines > 0 else out

    def stop(self, sid: str) -> Message:
        """A swarm of this machine drains and stops; a deployed stack is removed (what
        `bytewax-nb undeploy` does)."""
        swarm = self._watched(sid)
        with self._lock:
            self._open.pop(sid, None)
        if isinstance(swarm, Elsewhere):
            swarm.stop()
            path = state.state_dir() / f"{swarm.record.stem}.json"
            deadline = time.monotonic() + _STOP_WAIT
            while path.exists() and time.monotonic() < deadline:
                time.sleep(0.05)  # the owner drains, then removes its record
            if path.exists():
                return self._said("info", f"swarm {swarm.name!r} is still draining")
            return self._said("info", f"swarm {swarm.name!r} stopped")
        from ..stack.deploy import undeploy

        removed = undeploy(swarm.name)
        return self._said("info", f"removed stack {swarm.name!r}: {', '.join(removed)}")


def _fill(row: Listed, status: Any) -> None:
    """A listed swarm's state and bees from its status."""
    if status.get("error"):
        row["state"], row["error"] = "not answering", str(status["error"])
        return
    bees = status.get("bees", {})
    row["bees"] = [
        ListedBee(
            name=name,
            state=str(b.get("state", "")),
            ready=int(b.get("ready", 0)),
            wanted=int(b.get("wanted", 0)),
        )
        for name, b in bees.items()
    ]
    row["state"] = "ready" if status.get("ready") else "starting"
    for name, g in status.get("gateways", {}).items():
        for listed in row["gateways"]:
            if listed["name"] == name and g.get("url"):
                listed["url"] = g["url"]
