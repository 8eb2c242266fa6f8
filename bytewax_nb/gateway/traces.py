"""The traces a hub keeps to look at: the slowest and the failed requests of the last
minutes, and each one the owner asked for by id (a test payload from the widget).

Kept raw (the header's trace string and a few numbers) and turned into span records
only when somebody reads them: recording costs a tuple and a heap push per request.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from typing import NamedTuple

from ..model.tracing import TraceRecord, record

__all__ = ["Kept", "Traces"]

KEEP = 20  # slow ones and failed ones, each
_ASKED = 64  # traces asked for by id, until read
_WINDOW = 60.0  # seconds: the slowest are the slowest of this window and the one before


class Kept(NamedTuple):
    duration: float
    seq: int  # ties: the later one counts as slower (heap order only)
    trace: str
    parent_id: str
    request_id: str
    gateway: str
    t0: float
    status: int
    error: str

    def record(self) -> TraceRecord:
        return record(
            self.trace,
            self.parent_id,
            self.request_id,
            self.gateway,
            self.t0,
            self.t0 + self.duration,
            self.status,
            self.error,
        )


class Traces:
    """Per hub: what it keeps, and what it hands an exporter (OpenTelemetry, if set up)."""

    def __init__(self, export: Callable[[Kept], None] | None = None, keep: int = KEEP) -> None:
        self.keep = keep
        self.export = export
        self._seq = itertools.count()
        self._slow: dict[str, list[Kept]] = {}  # per gateway, a min-heap of this window's slowest
        self._before: dict[str, list[Kept]] = {}  # the previous window's
        self._rotate_at = time.monotonic() + _WINDOW
        self.failed: deque[Kept] = deque(maxlen=keep)
        self.asked: OrderedDict[str, Kept] = OrderedDict()  # trace id -> its request (asked for)
        self.recorded = 0

    def add(
        self,
        trace: str,
        parent_id: str,
        request_id: str,
        gateway: str,
        t0: float,
        t1: float,
        status: int,
        error: str = "",
        asked: bool = False,
    ) -> None:
        self.recorded += 1
        duration = t1 - t0
        if not (asked or status >= 400 or self.export is not None):  # most requests: not slow enough
            heap = self._slow.get(gateway)
            if (
                heap is not None
                and len(heap) >= self.keep
                and duration <= heap[0].duration
                and not self._due()
            ):
                return
        kept = Kept(duration, next(self._seq), trace, parent_id, request_id, gateway, t0, status, error)
        if asked:
            self.asked[trace.partition("-")[0]] = kept
            while len(self.asked) > _ASKED:
                self.asked.popitem(last=False)
        if status >= 400:
            self.failed.append(kept)
        else:
            if self._due():
                self._before, self._slow = self._slow, {}
                self._rotate_at = time.monotonic() + _WINDOW
            heap = self._slow.setdefault(gateway, [])
            if len(heap) < self.keep:
                heapq.heappush(heap, kept)
            elif kept > heap[0]:
                heapq.heapreplace(heap, kept)
        if self.export is not None:
            self.export(kept)

    def _due(self) -> bool:
        """The window is over: this one's slowest become the previous window's."""
        return time.monotonic() >= self._rotate_at

    def slowest(self, gateway: str) -> list[Kept]:
        both = [*self._slow.get(gateway, ()), *self._before.get(gateway, ())]
        return sorted(both, reverse=True)[: self.keep]

    def find(self, trace_id: str, gateway: str) -> Kept | None:
        kept = self.asked.get(trace_id)
        if kept is None:
            kept = next((k for k in self._all() if k.trace.startswith(trace_id)), None)
        return kept if kept is not None and kept.gateway == gateway else None

    def _all(self) -> Iterator[Kept]:
        yield from self.failed
        for heaps in (self._slow, self._before):
            for heap in heaps.values():
                yield from heap

    def listing(self, gateway: str) -> dict[str, list[TraceRecord]]:
        """What a gateway's `GET /traces` answers: its slowest (slowest first) and its
        failed (newest first)."""
        return {
            "slow": [k.record() for k in self.slowest(gateway)],
            "failed": [k.record() for k in reversed(self.failed) if k.gateway == gateway],
        }
