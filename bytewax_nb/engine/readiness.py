"""When a swarm serves, and what its hub is told of it.

Readiness is proven, not assumed (see `wiring`): a change is done once every bee has
its wanted replicas linked to all their producers and the hub has applied a status
that says so. The hub gets a new status when readiness or a bee's figures change (at
most every `_EVERY` seconds for figures alone), so its `/healthz` and its refusals
follow the swarm; it acknowledges each by version.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..model.protocol import BeeState, Msg, Status
from .book import Book
from .changes import Change
from .wiring import Member

__all__ = ["Readiness"]

_EVERY = 0.25  # seconds between status pushes for counters alone
_REFRESH = 5.0  # an unchanged status is still re-sent this often (latency figures)

SendHub = Callable[[Msg, Any], None]


class Readiness:
    """The status the hub last got, and the counters the owner waits for."""

    def __init__(self) -> None:
        self.version = 0
        self._sent = 0.0
        self._key: Any = None
        self.started = threading.Event()  # `start()` returned (or a controller serves)
        self._wanted: tuple[set[str], threading.Event] = (set(), threading.Event())

    def push(self, book: Book, send_hub: SendHub, force: bool = False) -> None:
        """Tell the hub the swarm's readiness and figures, if they changed (or it is time)."""
        bees = book.wiring.bee_stats()
        # a bee whose every ready replica is stuck in a call takes no work: not ready
        # an idle bee (autoscaled to none) serves: a request starts one
        not_ready = sorted(
            n
            for n, st in bees.items()
            if (st["ready"] == 0 and st["state"] != BeeState.IDLE) or st["state"] == BeeState.STUCK
        )
        short = sorted(
            n for n, st in bees.items() if st["ready"] < st["wanted"] or st["state"] == BeeState.STUCK
        )
        figures = [
            (
                st["handled"],
                st["errors"],
                st["deaths"],
                st["retried"],
                st["dropped"],
                st["state"],
                st["failing"],
                st.get("autoscale", {}).get("desired"),  # the autoscaler's word reaches /metrics at once
                st.get("autoscale", {}).get("reason"),
            )
            for _, st in sorted(bees.items())
        ]
        key = (not_ready, short, book.hub_restarts, figures)
        now = time.monotonic()
        since = now - self._sent
        if key == self._key:
            if since < _REFRESH:
                return
        elif not force and since < _EVERY:
            return
        self._key, self._sent = key, now
        self.version += 1
        body = Status(
            version=self.version,
            serving=not not_ready,
            healthy=not short,
            not_ready=short,
            bees=bees,
            hub_restarts=book.hub_restarts,
        )
        send_hub(Msg.STATUS, body)

    def settle(self, book: Book, change: Change | None) -> None:
        """Mark the change done once the swarm is wired as it wants and the hub knows."""
        if change is None or change.done.is_set():
            return
        if book.wiring.settled() and book.wiring.hub_acked(self.version):
            change.done.set()

    def ask(self, members: Iterable[Member], send: Callable[[Member], None]) -> threading.Event:
        """Ask `members` for their counters; the event is set once all have answered."""
        asked = list(members)
        reported = threading.Event()
        self._wanted = ({m.identity for m in asked}, reported)
        for m in asked:
            send(m)
        if not asked:
            reported.set()
        return reported

    def heard(self, identity: str) -> None:
        """A member's counters arrived."""
        wanted, reported = self._wanted
        wanted.discard(identity)
        if not wanted:
            reported.set()
