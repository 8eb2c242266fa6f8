"""What the hub knows of its swarm from the supervisor's last status: readiness (what
`/healthz` says), each bee's figures, and, per gateway, a bee it reaches that takes no
work (it keeps dying, or every replica is stuck): its callers are refused at once
(503, Retry-After) instead of waiting for a 504."""

from __future__ import annotations

from collections.abc import Iterable

from ..model.protocol import BeeFigures, BeeState, Status, SwarmStatus
from .metrics import downstream

__all__ = ["SwarmView"]


class SwarmView:
    """The supervisor's last word, as the hub's gateways use it."""

    def __init__(self) -> None:
        self.healthy = False  # every wanted replica is ready
        self.serving = False  # every bee has a ready replica
        self.not_ready: list[str] = []
        self.bees: dict[str, BeeFigures] = {}  # the supervisor's last figures per bee
        self.failing: dict[str, str | None] = {}  # per gateway: a bee it reaches that takes no work
        self.swarm_status: SwarmStatus | None = None  # a stack's: its controller's last snapshot

    def apply(self, status: Status, gateways: Iterable[str]) -> None:
        self.serving = status["serving"]
        self.healthy = status["healthy"]
        self.not_ready = status["not_ready"]
        self.bees = status["bees"]
        self.failing = {
            g: next((b for b in downstream(g, self.bees) if _takes_no_work(self.bees[b])), None)
            for g in gateways
        }

    def why_not_ready(self, bee: str) -> str:
        """Why a bee takes no work, in words (a 503's message, `/healthz`)."""
        figures = self.bees.get(bee)
        if figures is None:
            return f"bee {bee!r} has no ready replica"
        stuck = figures.get("stuck") or []
        if figures["state"] == BeeState.STUCK and stuck:
            call = max(stuck, key=lambda c: c["seconds"])
            return (
                f"bee {bee!r} takes no work: every replica is stuck in a call (request "
                f"{call['request_id']} has run {call['seconds']:g} s, at {call['where']})"
            )
        if figures["failing"]:
            err = figures["last_error"]
            return f"bee {bee!r} keeps failing ({err['message'] if err else 'no replica'})"
        return f"bee {bee!r} has {figures['ready']} of {figures['wanted']} replicas ready"

    def cold(self, gateway: str) -> str | None:
        """A bee `gateway` reaches that runs no replica because its autoscaler stopped
        it when idle (one is starting, or will): its callers that waited their whole
        timeout get 503 and Retry-After, not 504."""
        for bee in downstream(gateway, self.bees):
            figures = self.bees[bee]
            if figures["state"] == BeeState.IDLE or (figures["ready"] == 0 and "autoscale" in figures):
                return bee
        return None


def _takes_no_work(figures: BeeFigures) -> bool:
    return figures["failing"] or figures["state"] == BeeState.STUCK
