"""Stopping a swarm in phases: the hub drains its gateways (answers what is in flight,
bounded by the drain time), then the bees are told to stop, then what is left gets
SIGTERM, then SIGKILL. Each phase ends early once nothing is left for it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from typing import Any

from ..model.protocol import Msg, StopOrder, StopPhase
from .wiring import Member

__all__ = ["Stopping"]

_BEES_S = 5.0  # seconds bees get to drain and say BYE
_TERM_S = 3.0  # seconds between SIGTERM and SIGKILL

Send = Callable[[Member, Msg, Any], None]


class Stopping:
    """How far a swarm's stop has come (on the supervisor's thread; `stopped` for others)."""

    def __init__(self) -> None:
        self.phase = StopPhase.RUNNING
        self._deadline = 0.0
        self.stopped = threading.Event()  # every process is gone (or was killed)

    @property
    def stopping(self) -> bool:
        return self.phase != StopPhase.RUNNING

    def begin(self, now: float, drain: float, hub: Member | None, send: Send) -> None:
        if self.stopping:
            return
        self.phase = StopPhase.GATEWAYS
        self._deadline = now + drain + 2
        if hub is not None:
            send(hub, Msg.STOP, StopOrder(drain=drain))

    def step(self, now: float, members: Collection[Member], hub: Member | None, send: Send) -> None:
        if self.phase == StopPhase.GATEWAYS:
            if hub is not None and now < self._deadline:
                return
            self.phase, self._deadline = StopPhase.BEES, now + _BEES_S
            for m in members:
                send(m, Msg.STOP, None)
        elif self.phase == StopPhase.BEES:
            if members and now < self._deadline:
                return
            self.phase, self._deadline = StopPhase.TERMINATE, now + _TERM_S
            for m in members:
                if m.handle is not None:
                    m.handle.terminate()
        elif self.phase == StopPhase.TERMINATE:
            if members and now < self._deadline:
                return
            for m in members:
                if m.handle is not None:
                    m.handle.kill()
            self.phase = StopPhase.DONE
        if self.phase == StopPhase.DONE or not members:
            self.stopped.set()
