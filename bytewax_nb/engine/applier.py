"""Changes to a running swarm, one at a time: start, deploy a bee, scale, remove, add a
gateway. Each is applied on the supervisor's thread as the difference between two
plans of processes (`changes.replan`), then waited for from the caller's thread until
it settles (`readiness`), or undone if its new processes cannot start: the old ones
serve on. A regrouping of fused bees is a redeploy like any other.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

import zmq

from ..model import fusion
from ..model.errors import StartError
from ..model.protocol import Msg
from ..model.spec import BeeSpec, GatewaySpec, Topology
from ..runtime.base import Launcher
from . import changes
from .book import Book
from .changes import Change
from .mailbox import Mailbox
from .wiring import Member

__all__ = ["Applier"]


class Applier:
    """Applies and awaits one change at a time, whichever thread asks."""

    def __init__(
        self,
        book: Book,
        launcher: Launcher,
        mailbox: Mailbox,
        replanned: Callable[[list[Member]], None],
        settle: Callable[[], None],
        send_hub: Callable[[Msg, Any], None],
        report: Callable[[], str],
    ) -> None:
        self._book = book
        self._launcher = launcher
        self._mailbox = mailbox
        self._replanned = replanned  # kill these, launch what the slots want now, rewire
        self._settle = settle  # mark the current change done if the swarm is as it wants
        self._send_hub = send_hub
        self._report = report  # each process's state and last lines: what a failed change shows
        self.current: Change | None = None  # the change being applied (the supervisor's thread)
        self._lock = threading.RLock()  # one change at a time

    def prepare(self) -> None:
        """Get every process-level bee's image ready (builds happen here, in the caller's
        thread, before anything starts)."""
        units = self._book.units
        for spec in units.bees.values():
            self._launcher.prepare(spec, units.upstream(spec))

    def run(self, change: Change, apply: Callable[[], None], timeout: float) -> None:
        """Apply `change` on the supervisor's thread, wait until it settles; StartError if
        it fails or is not done within `timeout` (it was undone by then, if it could be)."""
        with self._lock:

            def begin() -> None:
                self.current = change
                apply()
                self._settle()

            self._mailbox.call(begin)
            change.done.wait(timeout)
            failed = bool(change.error) or not change.done.is_set()
            try:
                self._mailbox.call(lambda: setattr(self, "current", None))
                report = self._mailbox.call(self._report) if failed else ""
            except (zmq.ZMQError, TimeoutError):  # the swarm stopped meanwhile: its loop is gone
                report = ""
            if failed:
                why = change.error or f"not ready after {timeout:g} s"
                raise StartError(f"swarm {self._book.swarm!r}: {change.what} failed: {why}\n{report}")

    def deploy(self, spec: BeeSpec, timeout: float) -> None:
        """Add a bee, or replace a running one with new code or options (its processes
        are replaced even if nothing changed: a restart).

        New replicas are proven wired before the old ones give up their share, so no
        message goes unhandled; a new version that cannot start is rolled back and the
        old replicas go on serving.
        """
        with self._lock:  # what it replaces must be what the change started from
            bees = dict(self._book.topology.bees)
            bees[spec.name] = spec
            self._replan(f"deploy of bee {spec.name!r}", bees, timeout, restart=spec.name)

    def scale(self, name: str, replicas: int, timeout: float) -> None:
        """Start or retire replicas of a running bee; the others serve on untouched.

        New replicas take a share once wired; removed ones give theirs up first (the
        same gap-free hand-over as a redeploy), then drain and stop. A bee of a fused
        group leaves it (the group is redeployed), as its processes differ now.
        """
        with self._lock:
            bees = dict(self._book.topology.bees)
            bees[name] = dataclasses.replace(bees[name], replicas=replicas)
            self._replan(f"scaling bee {name!r} to {replicas}", bees, timeout)

    def resize(self, unit: str, replicas: int, why: str, timeout: float) -> None:
        """The autoscaler's change: `replicas` of a process-level bee, a fused group's
        bees all alike, so the group stays one (`scale` takes a bee out of its group)."""
        with self._lock:
            spec = self._book.units.bees.get(unit)
            if spec is None:
                raise StartError(f"swarm {self._book.swarm!r} runs no bee {unit!r} any more")
            bees = dict(self._book.topology.bees)
            for name in fusion.members(spec):
                bees[name] = dataclasses.replace(bees[name], replicas=replicas)
            self._replan(f"autoscaling bee {unit!r} to {replicas} ({why})", bees, timeout)

    def remove(self, name: str, timeout: float) -> None:
        """Take a bee out: its replicas ask for nothing more, finish what they hold, exit."""
        with self._lock:
            bees = {n: b for n, b in self._book.topology.bees.items() if n != name}
            self._replan(f"removing bee {name!r}", bees, timeout)

    def add_gateway(self, spec: GatewaySpec, timeout: float) -> None:
        """Serve one more gateway from the running hub."""

        def apply() -> None:
            topology = self._book.topology
            topology.gateways[spec.name] = spec
            self._send_hub(Msg.GATEWAYS, list(topology.gateways.values()))

        self.run(Change(f"gateway {spec.name!r}"), apply, timeout)

    def _replan(
        self,
        what: str,
        bees: dict[str, BeeSpec],
        timeout: float,
        restart: str = "",
    ) -> None:
        """Apply a new user's graph: plan its processes, build what they need, then go
        from the running plan to the new one (or back, if it cannot settle)."""
        book = self._book
        old_bees, old_units = dict(book.topology.bees), dict(book.units.bees)
        units = fusion.plan(Topology(book.topology.gateways, bees), book.fuse)
        forced = {n for n, spec in units.bees.items() if restart in fusion.members(spec)}
        for name, spec in units.bees.items():
            if name in forced or old_units.get(name) != spec:
                self._launcher.prepare(spec, units.upstream(spec))

        def apply() -> None:
            book.topology.bees = bees
            self._replanned(changes.replan(book.units, book.wiring, units.bees, forced))

        def undo() -> None:
            book.topology.bees = old_bees
            self._replanned(changes.unplan(book.units, book.wiring, old_units, units.bees, forced))

        self.run(Change(what, undo=undo), apply, timeout)
