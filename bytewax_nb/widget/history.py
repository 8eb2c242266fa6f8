"""The last minutes of each node's figures, for the charts of the widget's panel.

Kept in the owner (the kernel), bounded: a fixed number of samples per node, one per
refresh whatever the load; a node that leaves the graph takes its history with it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from .graph import Node
from .state import NodeHistory, Spark

__all__ = ["SAMPLES", "SPARK_POINTS", "History"]

SAMPLES = 120  # at one refresh a second: the last two minutes
SPARK_POINTS = 60  # what a node's sparklines draw of them
_KEYS = ("t", "rate", "p50", "p99", "errors")


class History:
    """Samples of every node's rate, p50, p99 and error rate, oldest first."""

    def __init__(self, samples: int = SAMPLES) -> None:
        self._samples = samples
        self._series: dict[str, dict[str, deque[float]]] = {}
        self._errors: dict[str, tuple[float, int]] = {}  # node -> (time, error count) last seen

    def add(self, nodes: Iterable[Node], now: float) -> None:
        """One sample of each node: its figures of this refresh."""
        seen = set()
        for n in nodes:
            seen.add(n["id"])
            series = self._series.setdefault(n["id"], {k: deque(maxlen=self._samples) for k in _KEYS})
            if n["kind"] == "gateway":
                rate, p50, p99 = n["rps"], 0.0, 0.0
            else:
                rate, p50, p99 = n["rate"], n["p50_ms"], n["p99_ms"]
            series["t"].append(now)
            series["rate"].append(rate)
            series["p50"].append(p50)
            series["p99"].append(p99)
            series["errors"].append(self._error_rate(n["id"], n["errors"], now))
        for gone in set(self._series) - seen:
            del self._series[gone]
            self._errors.pop(gone, None)

    def _error_rate(self, node: str, count: int, now: float) -> float:
        last = self._errors.get(node)
        self._errors[node] = (now, count)
        if last is None or now <= last[0] or count < last[1]:  # first look, or a restart
            return 0.0
        return round((count - last[1]) / (now - last[0]), 2)

    def spark(self, node: str) -> Spark:
        """A node's sparklines: every other sample of its rate, p99 and error rate (the
        last two minutes in 60 points), to three significant digits: each node's share
        of a refresh stays under a kilobyte."""
        s = self._series.get(node)
        if not s:
            return Spark(rate=[], p99=[], errors=[])
        step = max(1, len(s["t"]) // SPARK_POINTS)
        return Spark(
            rate=[_short(v) for v in list(s["rate"])[-1::-step][::-1]],
            p99=[_short(v) for v in list(s["p99"])[-1::-step][::-1]],
            errors=[_short(v) for v in list(s["errors"])[-1::-step][::-1]],
        )

    def of(self, node: str) -> NodeHistory | None:
        """A node's series, `ago` in seconds before its newest sample (None: none yet)."""
        s = self._series.get(node)
        if not s or not s["t"]:
            return None
        newest = s["t"][-1]
        return NodeHistory(
            ago=[round(newest - t, 1) for t in s["t"]],
            rate=list(s["rate"]),
            p50=list(s["p50"]),
            p99=list(s["p99"]),
            errors=list(s["errors"]),
        )


def _short(v: float) -> float:
    return float(f"{v:.3g}")
