"""Who runs, who reads from whom, and who serves: a swarm's bookkeeping, without sockets.

The supervisor feeds it events (a process is up, a replica linked to its producers,
a process died) and sends what it asks for. Every bee replica reads from its
producers over links it dials itself (see `intake` and `links`): the hub (for the
gateways' requests, and to send answers), and each live replica of the bees it
listens to. A replica serves once each of them has welcomed it; from then on
producers send it messages whenever it has room in its window, so a replica that
joins takes work at once and one that leaves (`retire`) first asks for nothing more.

Processes run the graph of `fusion.plan`: a fused group is one process-level bee. The
figures stay per bee of the user's graph (`bee_stats`).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from ..model.fusion import members
from ..model.protocol import (
    AutoscaleView,
    BeeError,
    BeeFigures,
    BeeState,
    Busy,
    LinksBody,
    MemberState,
    Role,
    Route,
    RoutesBody,
    StuckCall,
    bee_error,
    routes_to,
)
from ..model.spec import Topology
from ..replica.watchdog import EXIT_TIMEOUT
from ..runtime.base import Handle
from .policy import RESTARTS

__all__ = ["HUB", "NO_HEARTBEAT", "Member", "Slot", "Wiring", "death_error", "describe", "exit_cause"]

NO_HEARTBEAT = 1000  # no process exits with it: a stack's task that went silent (see `stack.adopt`)
_COUNTERS = ("handled", "errors", "dropped")


@dataclass
class Member:
    """One running bee replica (role "bee") or the hub (role "hub": bus and gateways)."""

    identity: str
    role: Role
    name: str
    replica: int
    handle: Handle | None = None
    state: MemberState = MemberState.STARTING
    address: str | None = None  # where its link socket (ROUTER) listens, once up
    retiring: bool = False  # an old version, a surplus replica or a removed bee: goes once replaced
    retire_sent: bool = False  # told to retire (it drains, then exits)
    served: bool = False  # was wired once: counts as ready while it links to new producers
    revoked: bool = False  # retiring, and no producer sends it anything more
    linked: frozenset[str] = frozenset()  # producers that welcomed it
    links_sent: LinksBody | None = None  # the LINKS body it was last sent
    routes_sent: RoutesBody | None = None  # the ROUTES body it was last sent
    status_ok: int = -1
    busy: Busy | None = None  # a call it runs far past its usual time (it takes no work meanwhile)
    stats: Mapping[str, Any] = field(default_factory=dict)  # its last BeeStats or HubStats
    group: tuple[str, ...] = ()  # the bees it runs, if not just `name` (a fused group's)

    @property
    def bees(self) -> tuple[str, ...]:
        """The bees whose code it runs: fixed at its launch, whatever its bee's group is now."""
        return self.group or (self.name,)

    @property
    def topic(self) -> str:
        """What its consumers listen to: its last bee's name (a group is named after its first)."""
        return self.bees[-1]

    def stats_of(self, bee: str) -> Mapping[str, Any]:
        """The figures of one of the bees it runs (a fused group's replica runs several)."""
        stages = self.stats.get("stages")
        return cast(Mapping[str, Any], stages.get(bee, {})) if stages else self.stats

    @property
    def slot_key(self) -> tuple[Role, str, int]:
        return (self.role, self.name, self.replica)


@dataclass
class Slot:
    """A wanted (role, name, replica) position; outlives the processes that fill it."""

    failures: int = 0
    restart_at: float = 0.0
    generation: int = 0
    ever_ready: bool = False
    last_exit: int | None = None


@dataclass
class Past:
    """What a bee's processes that are gone did: it stays in the bee's figures, whatever
    slot or group (`fusion`) the processes had."""

    counts: dict[str, int] = field(default_factory=dict)  # their counters
    drops: dict[str, int] = field(default_factory=dict)  # their dropped frames, by reason
    deaths: int = 0  # processes that exited unasked
    last_death: BeeError | None = None  # how the last one died, as a bee's last error


HUB = (Role.HUB, "hub", 0)  # the slot of the hub process


def _sum_counts(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in counts:
        for k, v in c.items():
            out[k] = out.get(k, 0) + int(v)
    return out


class Wiring:
    """Members, links and readiness of one swarm."""

    def __init__(self, topology: Topology, user: Topology | None = None) -> None:
        self.topology = topology  # the graph of processes (`fusion.plan`)
        self.user = user if user is not None else topology  # the graph of bees the user made
        self.members: dict[str, Member] = {}
        self.slots: dict[tuple[Role, str, int], Slot] = {}
        self.retried_before: dict[str, int] = {}  # per consumer bee, counted by producers now gone
        self.past: dict[str, Past] = {}  # per bee
        self.autoscale: dict[str, AutoscaleView] = {}  # per autoscaled bee: its autoscaler's view

    # -- membership ------------------------------------------------------------------

    def want(self) -> list[tuple[Role, str, int]]:
        """Create a slot for the hub and for every replica the topology asks for."""
        self.slots.setdefault(HUB, Slot())
        for name, bee in self.topology.bees.items():
            for r in range(bee.replicas):
                self.slots.setdefault((Role.BEE, name, r), Slot())
        return list(self.slots)

    def add(self, member: Member) -> None:
        self.members[member.identity] = member

    def remove(self, identity: str) -> Member | None:
        """Forget a dead process; keep its counters for its bees."""
        m = self.members.pop(identity, None)
        if m is None:
            return None
        if m.role == Role.BEE:
            for bee in m.bees:
                past, stats = self.past.setdefault(bee, Past()), m.stats_of(bee)
                past.counts = _sum_counts([past.counts, {k: int(stats.get(k, 0)) for k in _COUNTERS}])
                past.drops = _sum_counts([past.drops, stats.get("dropped_by") or {}])
        self.retried_before = _sum_counts([self.retried_before, m.stats.get("retried") or {}])
        return m

    def note_death(self, m: Member, error: BeeError) -> None:
        """A replica died unasked: each bee it ran counts it, and shows how."""
        for bee in m.bees:
            past = self.past.setdefault(bee, Past())
            past.deaths += 1
            past.last_death = error

    def bees_of(self, unit: str) -> list[str]:
        """The bees a process-level bee runs: itself, or its fused group."""
        spec = self.topology.bees.get(unit)
        return members(spec) if spec is not None else [unit]

    def unit_of(self) -> dict[str, str]:
        """bee -> the process-level bee that runs it."""
        return {bee: unit for unit in self.topology.bees for bee in self.bees_of(unit)}

    def hub(self) -> Member | None:
        return next((m for m in self.members.values() if m.role == Role.HUB), None)

    def of_bee(self, name: str) -> list[Member]:
        """A bee's replicas that are up (old and surplus ones included)."""
        return [
            m
            for m in self.members.values()
            if m.role == Role.BEE and m.name == name and m.state == MemberState.UP
        ]

    # -- links -----------------------------------------------------------------------

    def producers_of(self, m: Member) -> dict[str, str]:
        """identity -> address of every process a bee replica must read from: the hub, and
        the live replicas of the bees it listens to (stopping ones too: their last
        results may still come)."""
        spec = self.topology.bees.get(m.name) if m.role == Role.BEE else None
        if spec is None:
            return {}
        inputs = set(spec.inputs)
        return {
            p.identity: p.address
            for p in self.members.values()
            if p.address is not None
            and p.state in (MemberState.UP, MemberState.STOPPING)
            and (p.role == Role.HUB or (p.role == Role.BEE and p.topic in inputs))
        }

    def links_for(self, m: Member) -> LinksBody:
        hub = self.hub()
        links = self.producers_of(m)
        if m.retiring and m.links_sent is not None:
            # a replaced replica reads on from the producers it had while they live (and
            # from a new hub): after a regroup its bee may not be in the plan any more,
            # yet its old producers still send it what they hold
            links = {
                i: address
                for i, address in m.links_sent["links"].items()
                if i in self.members and self.members[i].role == Role.BEE
            }
            if hub is not None and hub.address is not None:
                links[hub.identity] = hub.address
        return LinksBody(
            links=links,
            hub=hub.identity if hub is not None and hub.address is not None else None,
        )

    def routes_for(self, m: Member) -> RoutesBody:
        """The bees that listen to what `m` produces, per topic."""
        topics = list(self.topology.gateways) if m.role == Role.HUB else [m.topic]
        return routes_to(
            {
                topic: [Route(b.name, b.join, b.retries) for b in self.topology.consumers(topic)]
                for topic in topics
            }
        )

    def wired(self, m: Member) -> bool:
        """Up, and welcomed by every producer it must read from."""
        return m.state == MemberState.UP and set(self.producers_of(m)) <= m.linked

    # -- serving ---------------------------------------------------------------------

    def ready(self, name: str) -> list[Member]:
        """A bee's replicas of its current version that serve (once wired, a replica
        serves on while it links to producers that come later)."""
        return [m for m in self.of_bee(name) if not m.retiring and m.served]

    def note_ready(self) -> None:
        """Mark replicas that are wired as serving; a slot whose replica serves is
        healthy again: its failures start anew."""
        for m in self.members.values():
            if m.role == Role.BEE and not m.retiring and self.wired(m):
                m.served = True
                slot = self.slots.get(m.slot_key)
                if slot is not None:
                    slot.ever_ready = True
                    slot.failures = 0

    def to_retire(self) -> list[Member]:
        """Retiring replicas to tell now: their bee has enough of its new replicas serving
        (or is gone). Until then the old ones serve on, so nobody waits for a replica."""
        out = []
        for m in self.members.values():
            if m.role != Role.BEE or not m.retiring or m.retire_sent or m.state != MemberState.UP:
                continue
            spec = self.topology.bees.get(m.name)
            if spec is None:  # gone: once no process sends it anything any more
                if not self._routed_to(m):
                    out.append(m)
            elif len(self.ready(m.name)) >= spec.replicas:
                out.append(m)
        return out

    def _routed_to(self, m: Member) -> bool:
        """Some other process may still send `m`'s bee messages: a replaced group's
        replicas keep the routes they had until they are gone, so what they hold still
        reaches the bees that listened to them (see `Supervisor._after_change`)."""
        return any(
            p is not m
            and p.state == MemberState.UP
            and p.routes_sent is not None
            and any(r[0] == m.name for rs in p.routes_sent.values() for r in rs)
            for p in self.members.values()
        )

    def retire(self, name: str) -> None:
        """The bee is redeployed (or removed): its replicas serve on until replaced."""
        for m in self.members.values():
            if m.role == Role.BEE and m.name == name:
                m.retiring = True

    def settled(self) -> bool:
        """Every bee has its wanted replicas of its current version serving, each of them
        linked to every producer it reads from, and every replica they replace gets no
        more messages (its producers have confirmed: later requests meet the new version)."""
        return (
            all(len(self.ready(name)) >= bee.replicas for name, bee in self.topology.bees.items())
            and all(self.wired(m) for m in self.members.values() if m.role == Role.BEE and not m.retiring)
            and not self.to_retire()
            and all(m.revoked for m in self.members.values() if m.retire_sent and m.state == MemberState.UP)
        )

    def hub_acked(self, version: int) -> bool:
        """The hub is up and has applied status `version`."""
        hub = self.hub()
        return hub is not None and hub.state == MemberState.UP and hub.status_ok == version

    # -- figures ---------------------------------------------------------------------

    def bee_stats(self) -> dict[str, BeeFigures]:
        """Per bee of the user's graph: counters (dead replicas' included), latency,
        readiness, how it last failed, and the bees it shares its processes with."""
        out: dict[str, BeeFigures] = {}
        now = time.time()
        retried = _sum_counts(
            [self.retried_before, *(m.stats.get("retried") or {} for m in self.members.values())]
        )
        unit_of = self.unit_of()
        for name, user_spec in self.user.bees.items():
            unit = unit_of.get(name, name)
            spec = self.topology.bees.get(unit, user_spec)
            group = self.bees_of(unit)
            # every process running its code: a group's old processes too, while they drain
            reps = [m.stats_of(name) for m in self.members.values() if m.role == Role.BEE and name in m.bees]
            slots = [s for (role, n, _), s in self.slots.items() if role == Role.BEE and n == unit]
            past = self.past.get(name, Past())
            counts = {k: sum(int(s.get(k, 0)) for s in reps) + past.counts.get(k, 0) for k in _COUNTERS}
            errors: list[BeeError] = [s["last_error"] for s in reps if s.get("last_error")]
            if past.last_death:
                errors.append(past.last_death)
            serving = self.ready(unit)
            ready = min(len(serving), spec.replicas)
            stuck = [
                StuckCall(
                    replica=m.replica,
                    bee=m.busy.get("bee", name),
                    request_id=m.busy.get("request_id", ""),
                    seconds=round(now - m.busy.get("since", now), 1),
                    where=m.busy.get("where", ""),
                )
                for m in self.members.values()
                if m.role == Role.BEE and name in m.bees and m.busy
            ]
            free = sum(1 for m in serving if not m.busy)
            out[name] = BeeFigures(
                handled=counts["handled"],
                errors=counts["errors"],
                dropped=counts["dropped"],
                dropped_by=_sum_counts([*(s.get("dropped_by") or {} for s in reps), past.drops]),
                deaths=past.deaths,
                # counted per process-level bee, named after its group's first bee: what
                # reaches a group is counted with that bee
                retried=retried.get(name, 0),
                queued=sum(int(s.get("queued", 0)) for s in reps),
                p50_ms=max((float(s.get("p50_ms", 0.0)) for s in reps), default=0.0),
                p99_ms=max((float(s.get("p99_ms", 0.0)) for s in reps), default=0.0),
                batch=max((float(s.get("batch", 1.0)) for s in reps), default=1.0),
                pending_joins=sum(int(s.get("pending_joins", 0)) for s in reps),
                ready=ready,
                wanted=spec.replicas,
                input=list(user_spec.inputs),
                failing=RESTARTS.failing((s.failures for s in slots), ready),
                stuck=stuck,
                last_error=max(errors, key=lambda e: float(e.get("time", 0)), default=None),
                state=self._bee_state(unit, ready, spec.replicas, slots, free),
                group=group if len(group) > 1 else [],
            )
            if name in self.autoscale:
                out[name]["autoscale"] = self.autoscale[name]
        return out

    def _bee_state(self, name: str, ready: int, wanted: int, slots: list[Slot], free: int) -> BeeState:
        """starting, ready, redeploying (old replicas handing over), error (crashing),
        stuck (every ready replica in a call running far past its usual time) or idle
        (autoscaled to none)."""
        if wanted == 0 and not ready:
            return BeeState.IDLE
        if ready and not free:
            return BeeState.STUCK
        if any(m.retiring for m in self.members.values() if m.role == Role.BEE and m.name == name):
            return BeeState.REDEPLOYING
        if ready >= wanted:
            return BeeState.READY
        return BeeState.ERROR if any(s.failures for s in slots) else BeeState.STARTING


def exit_cause(code: int) -> str:
    """How a process ended, in words: 'was killed by SIGKILL', 'exited with code 3'."""
    if code == EXIT_TIMEOUT:
        return "was restarted: a call ran past the bee's timeout"
    if code == NO_HEARTBEAT:
        return "went silent (no heartbeat): its task died or was replaced"
    if code < 0:
        return f"was killed by {_signal_name(-code)}"
    if code > 128 and _signal_name(code - 128).startswith("SIG"):  # a container's exit code
        return f"exited with code {code} (killed by {_signal_name(code - 128)})"
    return f"exited with code {code}"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def describe(bees: list[str]) -> str:
    """'bee 'x'', or 'bees 'a', 'b' (fused: one process)' for a group."""
    if len(bees) == 1:
        return f"bee {bees[0]!r}"
    return f"bees {', '.join(map(repr, bees))} (fused: one process)"


def death_error(bees: list[str], replica: int, cause: str, tail: list[str]) -> BeeError:
    """How a replica died, shaped as a bee's last error (status, widget, callers)."""
    why = f"replica {replica} of {describe(bees)} {cause}"
    return bee_error(bees[-1], "ReplicaDied", why, "\n".join(tail))
