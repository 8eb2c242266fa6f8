"""When an autoscaled bee's replicas change: the rule, apart from the supervisor that
applies it (as `policy` is for restarts), so it reads in one place and is tested
without a process.

The load of a bee is what it has to do now: the messages its producers sent it and it
has not finished, plus those waiting for a replica with room (`Dispatcher.outstanding`,
summed over its producers). A fused group is one bee here: what reaches its first bee.

- Up, within about a second: once the load has stayed above `target` per replica for
  `UP_AFTER`, to as many replicas as it needs at once (not one at a time), at most the
  bee's `max_replicas` and the cap its runtime gives (the machine's cores).
- Down, one replica at a time, each drained: once the load has stayed low for the bee's
  `idle_s` (every look: at most `LOW` x target in flight for one replica fewer, and
  work for at most `LOW` of each of them, its call rate times its call time: it never
  flaps back up), then every `STEP_DOWN_EVERY` while it stays so, down to `min_replicas`.
- To zero (`min_replicas=0`): once no request came for `idle_s`; the next request
  starts one at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from ..model.spec import BeeSpec

__all__ = ["Autoscaler", "Decision", "Load", "target"]

UP_AFTER = 0.4  # seconds the load stays above target before replicas are added
STEP_DOWN_EVERY = 2.0  # seconds between two retirements once the bee was idle long enough
LOW = 0.5  # a replica is retired only if the rest would each carry at most this x target
LATENCY_BUDGET_MS = 10.0  # the default target: about this long queued behind the others
MAX_DEFAULT_TARGET = 32.0
RETRY_AFTER_FAILURE = 10.0  # seconds before a change that failed is tried again
RATE_SECONDS = 2.0  # the call rate's smoothing


def target(spec: BeeSpec, p50_ms: float) -> float:
    """Requests in flight per replica to aim at: the bee's own, or, from its measured
    latency, as many as wait about `LATENCY_BUDGET_MS` behind each other (2 at least:
    one running, one ready; a batching bee's whole batches)."""
    if spec.target_in_flight is not None:
        return spec.target_in_flight
    per_call = math.ceil(LATENCY_BUDGET_MS / p50_ms) if p50_ms > 0 else 2
    return float(min(max(per_call, 2), MAX_DEFAULT_TARGET) * spec.batch_size)


@dataclass(frozen=True)
class Load:
    """One bee as the autoscaler sees it at a moment."""

    in_flight: int  # messages sent to it and not done, or waiting for room
    handled: int  # calls done so far, all replicas (a counter)
    ready: int
    wanted: int
    p50_ms: float


@dataclass(frozen=True)
class Decision:
    """Run `replicas` of `bee` (it runs `before`), and why, in words a user reads."""

    bee: str
    replicas: int
    before: int
    reason: str


@dataclass
class _Track:
    high_since: float | None = None
    low_since: float | None = None
    last_down: float = -math.inf
    handled: int = -1
    looked: float | None = None  # when it last looked
    rate: float = 0.0  # calls a second, smoothed over about RATE_SECONDS
    busy_at: float = 0.0  # when it last handled or held anything
    failed_at: float = -math.inf


@dataclass
class Autoscaler:
    """Decides, bee by bee, from successive looks at their load."""

    cap: int | None = None  # the most replicas the runtime runs of one bee (cores), None: no cap
    _tracks: dict[str, _Track] = field(default_factory=dict)

    def limits(self, spec: BeeSpec) -> tuple[int, int]:
        """The fewest and the most replicas of `spec`, the runtime's cap applied."""
        low, high = spec.replica_range
        if self.cap is not None:
            high = max(min(high, self.cap), low, 1)
        return low, high

    def failed(self, bee: str, now: float) -> None:
        """The last change of `bee` could not be made: wait before trying again."""
        self._tracks.setdefault(bee, _Track()).failed_at = now

    def forget(self, keep: set[str]) -> None:
        for bee in set(self._tracks) - keep:
            del self._tracks[bee]

    def look(self, now: float, spec: BeeSpec, load: Load) -> Decision | None:
        """One look at `spec`'s load at `now` (monotonic seconds): a change, or None."""
        t = self._tracks.setdefault(spec.name, _Track(busy_at=now))
        if t.looked is not None and now > t.looked and load.handled >= t.handled >= 0:
            weight = min(1.0, (now - t.looked) / RATE_SECONDS)
            t.rate += weight * ((load.handled - t.handled) / (now - t.looked) - t.rate)
        t.looked = now
        if load.handled != t.handled or load.in_flight:
            t.busy_at = now
        t.handled = load.handled
        if now - t.failed_at < RETRY_AFTER_FAILURE:
            return None
        low, high = self.limits(spec)
        wanted, in_flight = load.wanted, load.in_flight
        aim = target(spec, load.p50_ms)

        def to(replicas: int, why: str) -> Decision:
            t.high_since = t.low_since = None
            return Decision(spec.name, replicas, wanted, why)

        if wanted < low:
            return to(low, f"below its minimum of {low}")
        if wanted > high:
            return to(high, f"above its maximum of {high}")
        if wanted == 0:
            if in_flight:  # a cold start: the callers wait for it
                return to(max(1, min(high, math.ceil(in_flight / aim))), f"{in_flight} waiting, none running")
            return None
        if in_flight > aim * wanted:
            t.low_since = None
            if t.high_since is None:
                t.high_since = now
            if now - t.high_since >= UP_AFTER and wanted < high:
                need = min(high, max(math.ceil(in_flight / aim), wanted + 1))
                return to(need, f"{in_flight} in flight, above {aim:g} per replica")
            return None
        t.high_since = None
        if wanted <= low:
            t.low_since = None
            return None
        fewer = wanted - 1
        if fewer == 0:  # to zero: nothing came, nothing held, for idle_s
            if in_flight or now - t.busy_at < spec.idle_s or now - t.last_down < STEP_DOWN_EVERY:
                return None
            t.last_down = now
            return to(0, f"no request for {spec.idle_s:g} s")
        working = t.rate * load.p50_ms / 1000  # replicas' worth of calls running (Little's law)
        if in_flight > LOW * aim * fewer or working > LOW * fewer:
            t.low_since = None
            return None
        if t.low_since is None:
            t.low_since = now
        if now - t.low_since >= spec.idle_s and now - t.last_down >= STEP_DOWN_EVERY:
            t.last_down = now
            decision = to(fewer, f"{in_flight} in flight, low for {now - t.low_since:.0f} s")
            t.low_since = now - spec.idle_s  # stays low: the next one after STEP_DOWN_EVERY
            return decision
        return None
