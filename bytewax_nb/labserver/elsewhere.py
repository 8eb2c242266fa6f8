"""A swarm another process of this machine runs (a kernel, a script, `bytewax-nb run`),
as JupyterLab's side panel watches it: through its record, its log files and its
owner's control socket, the way the `bytewax-nb` command does.

It has what the graph asks (`widget.view.Watched`). What only the owner can do,
because only it holds the bees' code and the swarm object, it refuses in words:
rewiring and removing bees, and tracing as the owner.
"""

from __future__ import annotations

import os
import urllib.parse
from typing import Any

from .. import client
from ..engine import state
from ..engine.commands import CHANGE_TIMEOUT, ask
from ..model.errors import BytewaxNBError
from ..model.spec import BeeSpec, GatewaySpec, Topology
from ..model.tracing import TraceRecord

__all__ = ["Elsewhere"]

_ASK_TIMEOUT = 5.0  # seconds an owner has to answer a status: a busy kernel still does


def _elsewhere(*_: Any) -> Any:
    """A bee's function as the panel holds it: its code is in its owner's process."""
    raise BytewaxNBError("this bee's code runs in the process that owns its swarm")


class Elsewhere:
    """A running swarm of this machine that this process does not own."""

    runtime = "process"

    def __init__(self, record: state.Record) -> None:
        self.record = record
        self.name = record.swarm
        self._topology = self._from_record()

    @property
    def who(self) -> str:
        return f"swarm {self.name!r} (owner {self.record.owner})"

    @property
    def running(self) -> bool:
        path = state.state_dir() / f"{self.record.stem}.json"
        return path.exists() and state.owner_alive(self.record)

    @property
    def topology(self) -> Topology:
        """The graph as the owner's last status showed it (its record's before that)."""
        return self._topology

    def _from_record(self) -> Topology:
        topology = Topology()
        for name in self.record.gateways:
            topology.add_gateway(GatewaySpec(name))
        for name, inputs in self.record.bees.items():
            topology.add_bee(BeeSpec(name, _elsewhere, tuple(inputs), fuse=False))
        return topology

    def status(self, fresh: float = 0.5) -> Any:
        reply = ask(self.record.control, self.who, "status", _ASK_TIMEOUT)
        status = reply["status"]
        status.setdefault("running", True)  # its owner answered: its processes run
        topology = Topology()
        for name in status.get("gateways", {}):
            topology.add_gateway(GatewaySpec(name))
        for name, bee in status.get("bees", {}).items():
            inputs = tuple(str(i) for i in bee.get("input", ())) or ("?",)
            join = bool(bee.get("join")) and len(inputs) > 1
            replicas = max(1, int(bee.get("wanted", 1)))
            topology.add_bee(BeeSpec(name, _elsewhere, inputs, join=join, replicas=replicas, fuse=False))
        self._topology = topology
        self.runtime = str(reply.get("runtime", self.runtime))
        return status

    def logs(self, bee: str) -> list[str]:
        return state.log_lines(self.record.log_dir, bee)

    def scale(self, bee: str, replicas: int) -> None:
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1:
            raise ValueError(f"replicas must be an integer >= 1, not {replicas!r}")
        ask(self.record.control, self.who, "scale", CHANGE_TIMEOUT + 5, bee=bee, replicas=replicas)

    def stop(self) -> None:
        """Ask the owner to drain and stop it (it removes its record when done)."""
        ask(self.record.control, self.who, "stop", _ASK_TIMEOUT)

    def _owner_only(self, what: str) -> BytewaxNBError:
        return BytewaxNBError(
            f"{what}: only the notebook or script that runs {self.who} can (it holds the "
            f"bees' code); here you can change replicas, read logs and send test payloads"
        )

    def connect(self, source: str, bee: str) -> None:
        raise self._owner_only(f"connecting {source} -> {bee}")

    def disconnect(self, source: str, bee: str) -> None:
        raise self._owner_only(f"disconnecting {source} -> {bee}")

    def remove(self, name: str) -> None:
        raise self._owner_only(f"removing bee {name!r}")

    def _url(self, gateway: str | None) -> str:
        urls = self.record.gateways
        if gateway is None and len(urls) == 1:
            return next(iter(urls.values()))
        if gateway not in urls:
            raise BytewaxNBError(f"{self.who} has no gateway {gateway!r}")
        return urls[str(gateway)]

    def trace(self, gateway: str | None, payload: Any, *, timeout: float | None = None) -> client.Traced:
        """Send `payload` as any caller would (a `traceparent` asks the gateway to trace
        it, which it does when its `tracing` is on): the answer or the error, and the
        trace when the gateway kept one."""
        url = self._url(gateway)
        base = url.rsplit("/gateways/", 1)[0]
        trace_id, span = os.urandom(16).hex(), os.urandom(8).hex()
        headers = {"traceparent": f"00-{trace_id}-{span}-01"}
        answer: Any = None
        error: BytewaxNBError | None = None
        try:
            answer = client.call(url, payload, timeout=timeout or 35.0, headers=headers).value
        except BytewaxNBError as exc:
            error = exc
        record: TraceRecord | None = None
        try:
            record = client.get(f"{base}/traces/{urllib.parse.quote(trace_id)}")
        except BytewaxNBError:
            record = None  # not traced (its gateway's `tracing` is off), or not kept
        return client.Traced(answer, error, record)

    def traces(self) -> dict[str, list[TraceRecord]]:
        return client.kept((url, None) for url in self.record.gateways.values())
