"""A replica's figures, as its STATS message carries them: per bee (stage) its calls,
errors, latencies and last error; for the replica as a whole its drops, retries, queue,
batches and partial joins (counted with its first bee's)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..model.protocol import BeeStats
from .stages import Stage

__all__ = ["replica_stats", "slowest_p99", "stage_stats"]


def stage_stats(stage: Stage) -> BeeStats:
    """One bee's figures; what the replica counts as a whole is added to its first bee's."""
    lat = sorted(stage.latencies)
    return BeeStats(
        handled=stage.handled,
        errors=stage.errors,
        dropped=0,
        dropped_by={},
        retried={},
        queued=0,
        p50_ms=lat[len(lat) // 2] * 1000 if lat else 0.0,
        p99_ms=lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else 0.0,
        batch=1.0,
        pending_joins=0,
        last_error=stage.last_error,
    )


def replica_stats(
    stages: Sequence[Stage],
    dropped: Mapping[str, int],
    retried: Mapping[str, int],
    queued: int,
    batch: float,
    pending_joins: int,
) -> BeeStats:
    """The STATS body: the first bee's figures with the replica's own; a fused group's
    replica adds each of its bees' under `stages`."""
    head = stage_stats(stages[0])
    head["dropped"] = sum(dropped.values())
    head["dropped_by"] = dict(dropped)
    head["retried"] = dict(retried)
    head["queued"] = queued
    head["batch"] = batch
    head["pending_joins"] = pending_joins
    if len(stages) > 1:
        rest = {st.name: stage_stats(st) for st in stages[1:]}
        head["stages"] = {stages[0].name: BeeStats(**head)} | rest
    return head


def slowest_p99(stats: BeeStats) -> float:
    """Milliseconds: the highest p99 of the bees a replica runs."""
    stages = stats.get("stages")
    return max([stats["p99_ms"], *(st["p99_ms"] for st in stages.values())]) if stages else stats["p99_ms"]
