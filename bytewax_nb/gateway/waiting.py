"""Requests the hub has accepted and not yet answered: each caller's future (none for a
submit), counted per gateway (`max_in_flight`), and an event that is set whenever none
waits (what a drain waits for). The first answer for an id wins; a late one finds
nobody."""

from __future__ import annotations

import asyncio

__all__ = ["Reply", "Waiting"]

Reply = tuple[int, bytes, str]  # a bus message kind (response or error), its JSON body, its bee


class Waiting:
    """Callers by request id, on the hub's event loop."""

    def __init__(self) -> None:
        self.pending: dict[str, tuple[str, asyncio.Future[Reply] | None]] = {}
        self._open: dict[str, int] = {}  # per gateway: how many of `pending` are its
        self.idle = asyncio.Event()
        self.idle.set()

    def __len__(self) -> int:
        return len(self.pending)

    def __contains__(self, rid: str) -> bool:
        return rid in self.pending

    def in_flight(self, gateway: str) -> int:
        return self._open.get(gateway, 0)

    def track(self, rid: str, gateway: str, fut: asyncio.Future[Reply] | None) -> None:
        self.pending[rid] = (gateway, fut)
        self._open[gateway] = self._open.get(gateway, 0) + 1
        self.idle.clear()

    def forget(self, rid: str) -> None:
        entry = self.pending.pop(rid, None)
        if entry is not None:
            self._open[entry[0]] -= 1
        if not self.pending:
            self.idle.set()

    def answer(self, rid: str, reply: Reply) -> bool:
        """Give a caller its answer; False if nobody waits for it (late, or a second one)."""
        entry = self.pending.get(rid)
        if entry is None:
            return False
        self.forget(rid)
        fut = entry[1]
        if fut is not None and not fut.done():
            fut.set_result(reply)
        return True

    def expire(self, rid: str) -> None:
        """The caller's time is up: it gets TimeoutError (a 504)."""
        entry = self.pending.get(rid)
        self.forget(rid)
        if entry is not None and entry[1] is not None and not entry[1].done():
            entry[1].set_exception(TimeoutError())

    def is_submit(self, rid: str) -> bool:
        """Accepted with no caller waiting (`?mode=submit`)."""
        entry = self.pending.get(rid)
        return entry is not None and entry[1] is None

    def clear(self) -> None:
        """The owner is gone: nobody waits any more."""
        self.pending.clear()
        self._open.clear()
        self.idle.set()
