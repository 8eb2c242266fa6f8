"""The autoscaler at work in a running swarm.

Every `EVERY` seconds the supervisor's thread reads each autoscaled bee's load from its
processes' last figures (what each producer reported it holds for the bee), asks the
rule (`autoscale`), and has a change it decides made on a helper thread: a change
waits for the supervisor's thread, which must go on meanwhile. One change at a time,
never while another (the user's) is being made. What it decided, and why, is kept for
the status, `/metrics` and the widget, and written to the bee's log.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..model import fusion
from ..model.errors import BytewaxNBError
from ..model.protocol import AutoscaleView, Role
from ..model.spec import BeeSpec
from .autoscale import Autoscaler, Decision, Load, target
from .book import Book

__all__ = ["EVERY", "Resize", "Scaling", "cores_cap"]

EVERY = 0.25  # seconds between two looks (the figures come every 0.5 s)
_CHANGE_TIMEOUT = 60.0  # seconds a change the autoscaler makes may take to settle

Resize = Callable[[str, int, str, float], None]  # (bee, replicas, why, timeout): the change
Say = Callable[[str, str], None]  # (bee, line): into its log


def cores_cap(runtime: str) -> Callable[[BeeSpec], int | None]:
    """The most replicas of one bee this machine runs: its cores (a bee with `cpus` on
    the docker runtime: as many as fit)."""
    cores = os.cpu_count() or 1

    def cap(spec: BeeSpec) -> int | None:
        if runtime == "docker" and spec.cpus:
            return max(1, math.floor(cores / spec.cpus))
        return cores

    return cap


@dataclass
class _Last:
    """A bee's last decision, as the status shows it."""

    desired: int
    reason: str = ""
    decided: float | None = None
    cold_from: float | None = None  # when a start from zero was decided (monotonic)
    cold_start_s: float | None = None


class Scaling:
    """Looks at autoscaled bees and makes the changes the rule decides."""

    def __init__(self, book: Book, cap: Callable[[BeeSpec], int | None], resize: Resize, say: Say) -> None:
        self._book = book
        self._cap = cap
        self._resize = resize
        self._say = say
        self._rules: dict[str, Autoscaler] = {}  # per bee: its cap is its own
        self._last: dict[str, _Last] = {}
        self._next = 0.0
        self._worker: threading.Thread | None = None
        self._stopped = False  # the swarm stops: a change under way ends quietly

    @property
    def working(self) -> bool:
        return self._worker is not None and self._worker.is_alive()

    def stop(self) -> None:
        """The swarm stops: decide nothing more (its supervisor ends a change under way)."""
        self._stopped = True

    def tick(self, now: float, busy: bool) -> None:
        """One look, if it is time (the supervisor's thread); `busy`: a change is under way."""
        if now < self._next or self._stopped:
            return
        self._next = now + EVERY
        units = {n: s for n, s in self._book.units.bees.items() if s.autoscaled}
        for gone in set(self._last) - set(units):
            del self._last[gone]
            self._rules.pop(gone, None)
        views: dict[str, AutoscaleView] = {}
        decision: Decision | None = None
        for name, spec in units.items():
            load = self._load(name, spec)
            rule = self._rules.setdefault(name, Autoscaler(cap=self._cap(spec)))
            last = self._last.setdefault(name, _Last(desired=spec.replicas))
            if last.cold_from is not None and load.ready:  # started from none: one serves now
                last.cold_start_s = round(now - last.cold_from, 3)
                last.cold_from = None
                self._say(name, f"bytewax-nb autoscale: cold start took {last.cold_start_s:g} s")
            if not busy and not self.working and decision is None:
                decision = rule.look(now, spec, load)
            if decision is None or decision.bee != name:  # what it runs, or is being changed to
                last.desired = spec.replicas
            low, high = rule.limits(spec)
            views[name] = AutoscaleView(
                min=low,
                max=high,
                target=target(spec, load.p50_ms),
                in_flight=load.in_flight,
                desired=decision.replicas if decision is not None and decision.bee == name else last.desired,
                reason=last.reason,
                decided=last.decided,
                cold_start_s=last.cold_start_s,
            )
        if decision is not None:
            self._start(decision, now)
            views[decision.bee]["reason"] = decision.reason
            views[decision.bee]["decided"] = self._last[decision.bee].decided
        self._book.wiring.autoscale = {bee: views[unit] for unit in views for bee in self._members(unit)}

    def _members(self, unit: str) -> list[str]:
        spec = self._book.units.bees.get(unit)
        return fusion.members(spec) if spec is not None else [unit]

    def _load(self, unit: str, spec: BeeSpec) -> Load:
        wiring = self._book.wiring
        head, bees = unit, self._members(unit)
        members = list(wiring.members.values())
        in_flight = sum(int((m.stats.get("outstanding") or {}).get(unit, 0)) for m in members)
        mine = [m for m in members if m.role == Role.BEE and head in m.bees]
        past = wiring.past.get(head)
        handled = sum(int(m.stats_of(head).get("handled", 0)) for m in mine)
        handled += past.counts.get("handled", 0) if past is not None else 0
        # a call's time through the whole group: its bees' in turn
        p50 = max((sum(float(m.stats_of(b).get("p50_ms", 0.0)) for b in bees) for m in mine), default=0.0)
        return Load(
            in_flight=in_flight,
            handled=handled,
            ready=len(wiring.ready(unit)),
            wanted=spec.replicas,
            p50_ms=p50,
        )

    def _start(self, decision: Decision, now: float) -> None:
        last = self._last[decision.bee]
        last.desired, last.reason, last.decided = decision.replicas, decision.reason, time.time()
        if decision.before == 0:
            last.cold_from = now
        line = f"bytewax-nb autoscale: {decision.before} -> {decision.replicas} replicas: {decision.reason}"
        self._say(decision.bee, line)
        rule = self._rules[decision.bee]

        def run() -> None:
            try:
                self._resize(decision.bee, decision.replicas, decision.reason, _CHANGE_TIMEOUT)
            except Exception as exc:
                if self._stopped:  # ended by the stop: nothing to retry, no one to tell
                    return
                if not isinstance(exc, BytewaxNBError):
                    raise
                first = str(exc).splitlines()[0]
                last.reason = f"could not go to {decision.replicas}: {first}"
                rule.failed(decision.bee, time.monotonic())
                last.cold_from = None
                self._say(decision.bee, f"bytewax-nb autoscale: {last.reason}")
                return

        self._worker = threading.Thread(target=run, name=f"bytewax-nb-autoscale-{decision.bee}", daemon=True)
        self._worker.start()
