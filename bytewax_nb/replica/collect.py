"""Messages a replica collects before it calls its bee: the parts of a join (one from
each input, by request id) and the payloads of a batch (up to its size, or until its
wait is over). Pure bookkeeping: what is done with a collected call is the caller's."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from ..bus.wire import Header
from ..model.tracing import merge
from .stages import Ack

__all__ = ["Batch", "Joins"]

_JOIN_TTL = 60.0  # seconds a partial join lives when its request has no deadline

Done = Callable[[Ack], None]  # a message is handled (or dropped): free its producer's window


class Joins:
    """Partial joins by request id: each input's part, until all have come."""

    def __init__(self, inputs: Sequence[str], done: Done) -> None:
        self._inputs = tuple(inputs)
        self._done = done
        self.parts: dict[str, tuple[float, dict[str, tuple[Ack, Any]]]] = {}
        self.traces: dict[str, str] = {}  # a traced request's branches' hops, merged

    def __len__(self) -> int:
        return len(self.parts)

    def add(self, ack: Ack, header: Header, payload: Any) -> tuple[dict[str, Any], list[Ack]] | None:
        """Take one part; the joined call ({input: payload}, the parts' acks) once complete."""
        rid = header.request_id
        expires = header.deadline or (time.time() + _JOIN_TTL)
        _, parts = self.parts.setdefault(rid, (expires, {}))
        if header.sender in parts:  # the same part again (a retry): the newer one stands
            old, _ = parts[header.sender]
            self._done(old)
        parts[header.sender] = (ack, payload)
        if header.trace:  # a traced request: the joined call's trace holds every branch's hops
            self.traces[rid] = header.trace = merge(self.traces.get(rid, ""), header.trace)
        if len(parts) < len(self._inputs):
            return None
        del self.parts[rid]
        self.traces.pop(rid, None)
        return {src: parts[src][1] for src in self._inputs}, [a for a, _ in parts.values()]

    def purge(self, now: float) -> None:
        """Drop joins nobody waits for any more (past their deadline)."""
        stale = [rid for rid, (expires, _) in self.parts.items() if expires < now]
        for rid in stale:
            self.traces.pop(rid, None)
            for ack, _ in self.parts.pop(rid)[1].values():
                self._done(ack)  # nobody waits for it: free the producers' windows

    def give_back(self, giving_back: Done) -> None:
        """A retiring replica hands back the parts it cannot finish: another one joins them."""
        for _, parts in self.parts.values():
            for ack, _ in parts.values():
                giving_back(ack)
        self.parts.clear()
        self.traces.clear()


class Batch:
    """Payloads waiting to be called together."""

    def __init__(self, size: int, timeout_ms: float) -> None:
        self._size = size
        self._wait = timeout_ms / 1000
        self.items: list[tuple[Ack, Header, Any]] = []
        self.due = 0.0  # when the first of them has waited long enough (monotonic)
        self.sizes: deque[int] = deque(maxlen=256)  # of the last calls: the mean is a figure

    def __bool__(self) -> bool:
        return bool(self.items)

    def add(self, ack: Ack, header: Header, payload: Any) -> bool:
        """Keep one; whether the batch is full now."""
        if not self.items:
            self.due = time.monotonic() + self._wait
        self.items.append((ack, header, payload))
        return len(self.items) >= self._size

    def take(self) -> tuple[list[Header], list[Any], list[Ack]]:
        """Everything waiting, as (headers, payloads, acks); the batch is empty after."""
        items, self.items = self.items, []
        self.sizes.append(len(items))
        return [h for _, h, _ in items], [p for _, _, p in items], [a for a, _, _ in items]

    def mean(self) -> float:
        return (sum(self.sizes) / len(self.sizes)) if self.sizes else 1.0
