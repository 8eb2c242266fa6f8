"""Which bus edges a swarm's live processes need, which are proven, and what follows.

Pure bookkeeping, no sockets: the supervisor feeds it events (a process is up, a
probe arrived, a shard was applied, a process died) and sends what it returns.
An edge is a (producer, consumer, topic) between two processes that are up (the hub
produces its gateways' topics and consumes their response topics; a bee produces
its own topic and responses, and consumes its inputs); it is proven when a probe
frame the producer published on that topic reached the consumer. A replica
whose edges are all proven gets a shard of its bee's messages; a swarm serves when
every bee has a replica that acknowledged its shard.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .runtime.base import Handle
from .spec import Topology
from .wire import response_topic, topic_of

__all__ = ["HUB", "Member", "Slot", "Wiring"]

_COUNTERS = ("handled", "errors", "dropped")


@dataclass
class Member:
    """One running bee replica (role "bee") or the hub (role "hub": bus and gateways)."""

    identity: str
    role: str
    name: str
    replica: int
    handle: Handle | None = None
    state: str = "starting"  # starting -> configured -> up -> stopping
    wired: bool = False
    retiring: bool = False  # runs a replaced version of its bee: drained, then stopped
    shard_ok: int = -1  # the shard version this replica narrowed to (its only share)
    widened: int = -1  # the shard version whose share it took on top of what it held
    shard_sent: tuple[int, bool] = (-1, False)  # the last (version, widen) step sent to it
    shard_set: tuple[str, ...] = ()  # the active set (identities) it narrowed to
    status_ok: int = -1
    stats: dict[str, Any] = field(default_factory=dict)
    peer: str | None = None  # where a bee replica's own publisher listens
    peers: frozenset[str] = frozenset()  # the producer publishers it was told to read
    # a retiring replica that gave up its share stops only once a probe sent after that
    # has come from each of its producers: everything sent before has then been handled
    fence_token: str | None = None
    fence: set[tuple[str, bytes]] = field(default_factory=set)  # (producer, topic) still to come

    @property
    def slot_key(self) -> tuple[str, str, int]:
        return (self.role, self.name, self.replica)


@dataclass
class Slot:
    """A wanted (role, name, replica) position; outlives the processes that fill it."""

    failures: int = 0
    restart_at: float = 0.0
    generation: int = 0
    ever_ready: bool = False
    last_exit: int | None = None
    carried: dict[str, int] = field(default_factory=dict)  # counters of dead processes


Edge = tuple[Member, Member, bytes]


def _by_producer(edges: Iterable[Edge]) -> dict[str, tuple[Member, set[bytes]]]:
    """Per producer identity: the producer and the topics these edges carry from it."""
    out: dict[str, tuple[Member, set[bytes]]] = {}
    for p, _, topic in edges:
        out.setdefault(p.identity, (p, set()))[1].add(topic)
    return out


def _sum_counts(counts: Iterable[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for c in counts:
        for k, v in c.items():
            out[k] = out.get(k, 0) + int(v)
    return out


HUB = ("hub", "hub", 0)  # the slot of the hub process


class Wiring:
    """Members, proven edges and shard assignments of one swarm."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.members: dict[str, Member] = {}
        self.slots: dict[tuple[str, str, int], Slot] = {}
        self.verified: set[tuple[str, str, bytes]] = set()
        self.shard_version: dict[str, int] = {}
        self.shard_members: dict[str, list[str]] = {}

    # -- membership ------------------------------------------------------------------

    def want(self) -> list[tuple[str, str, int]]:
        """Create a slot for the hub and for every replica the topology asks for."""
        self.slots.setdefault(HUB, Slot())
        for name, bee in self.topology.bees.items():
            for r in range(bee.replicas):
                self.slots.setdefault(("bee", name, r), Slot())
        return list(self.slots)

    def add(self, member: Member) -> None:
        self.members[member.identity] = member

    def remove(self, identity: str) -> Member | None:
        """Forget a dead process: its edges, and keep its counters for its slot."""
        m = self.members.pop(identity, None)
        if m is None:
            return None
        self.verified = {e for e in self.verified if identity not in e[:2]}
        for other in self.members.values():  # a dead producer sends nothing more
            other.fence = {e for e in other.fence if e[0] != identity}
        slot = self.slots.get(m.slot_key)
        if slot is not None:
            for k in _COUNTERS:
                slot.carried[k] = slot.carried.get(k, 0) + int(m.stats.get(k, 0))
        return m

    def peers_of(self, m: Member) -> frozenset[str]:
        """The publishers a bee replica reads its bee inputs from: every replica of
        those bees that is up, and old or surplus ones until they have exited (their
        last results may still be on the way)."""
        inputs = set(self.topology.bees[m.name].inputs) if m.name in self.topology.bees else set()
        return frozenset(
            p.peer
            for p in self.members.values()
            if p.role == "bee" and p.name in inputs and p.state in ("up", "stopping") and p.peer
        )

    def of_bee(self, name: str) -> list[Member]:
        return [m for m in self.members.values() if m.role == "bee" and m.name == name and m.state == "up"]

    # -- edges -----------------------------------------------------------------------

    def produces(self, m: Member) -> set[bytes]:
        gateways = self.topology.gateways
        if m.role == "hub":
            return {topic_of(g) for g in gateways}
        return {topic_of(m.name), *(response_topic(g) for g in gateways)}

    def consumes(self, m: Member) -> set[bytes]:
        if m.role == "hub":
            return {response_topic(g) for g in self.topology.gateways}
        return {topic_of(src) for src in self.topology.bees[m.name].inputs}

    def edges(self) -> list[Edge]:
        """Every (producer, consumer, topic) between processes that are up."""
        up = [m for m in self.members.values() if m.state == "up"]
        wants = {m.identity: self.consumes(m) for m in up}
        out: list[Edge] = []
        for p in up:
            made = self.produces(p)
            out += [(p, c, t) for c in up if c is not p for t in sorted(made & wants[c.identity])]
        return out

    def unproven(self, only: str | None = None) -> dict[str, tuple[Member, set[bytes]]]:
        """Per producer, the topics it must probe (touching `only` if given)."""
        return _by_producer(
            (p, c, topic)
            for p, c, topic in self.edges()
            if (p.identity, c.identity, topic) not in self.verified
            and (only is None or only in (p.identity, c.identity))
        )

    def saw(self, producer: str, consumer: str, topic: bytes) -> bool:
        """A probe `producer` sent on `topic` reached `consumer`; True if that is news."""
        if producer not in self.members or consumer not in self.members:
            return False
        edge = (producer, consumer, topic)
        if edge in self.verified:
            return False
        self.verified.add(edge)
        return True

    # -- shards and readiness --------------------------------------------------------

    def rewire(self) -> list[tuple[Member, dict[str, Any]]]:
        """Mark wired members and return the SHARD messages a changed active set needs."""
        edges = self.edges()
        for m in self.members.values():
            m.wired = m.state == "up" and all(
                (p.identity, c.identity, t) in self.verified for p, c, t in edges if m in (p, c)
            )
            if m.wired and not m.retiring:  # an old version's health says nothing of the slot
                slot = self.slots.get(m.slot_key)
                if slot is not None:
                    slot.ever_ready = True
                    slot.failures = 0
        messages: list[tuple[Member, dict[str, Any]]] = []
        for name, bee in self.topology.bees.items():
            # wired to join; once serving, a replica keeps its share while edges to new
            # peers (a producer's new version, say) are being proven
            current = set(self.shard_members.get(name, ()))
            active = sorted(
                m.identity for m in self.of_bee(name) if (m.wired or m.identity in current) and not m.retiring
            )
            handing_over = any(
                m.retiring and m.identity in self.shard_members.get(name, ()) for m in self.of_bee(name)
            )
            if handing_over and len(active) < bee.replicas:
                active = self.shard_members[name]  # a redeploy switches once all new replicas are wired
            if active != self.shard_members.get(name):
                self.shard_members[name] = active
                self.shard_version[name] = self.shard_version.get(name, 0) + 1
            messages += self._shard_messages(name)
        return messages

    def _shard_messages(self, name: str) -> list[tuple[Member, dict[str, Any]]]:
        """Hand out a new active set without a gap, in two steps.

        Every replica first widens (takes its share of the new set on top of what it
        holds); only once all of them have acknowledged that are they told to narrow
        to the new share alone. In between a message may be handled twice (the first
        response wins), never by nobody, in whatever order the replicas switch.
        """
        version = self.shard_version.get(name, 0)
        pending = [m for m in self.of_bee(name) if m.shard_ok != version]
        widen = any(m.widened != version for m in pending)
        body: dict[str, Any] = {
            "members": self.shard_members.get(name, []),
            "version": version,
            "widen": widen,
        }
        if not widen:
            # requests received before now may have reached a new owner before it widened:
            # the replicas keep their wider shares for those (gateway clock, epoch seconds)
            body["since"] = time.time()
        out = []
        for m in pending:
            if widen and m.widened == version:
                continue  # widened already: waits for the others
            if m.shard_sent != (version, widen):
                m.shard_sent = (version, widen)
                out.append((m, body))
        return out

    def acked(self, m: Member, version: int, widen: bool) -> None:
        """A replica applied the step (version, widen); acks of superseded steps count for nothing."""
        if m.shard_sent != (version, widen):
            return
        if widen:
            m.widened = version
        else:
            m.shard_ok = version
            m.shard_set = tuple(self.shard_members.get(m.name, ()))

    def _holds_share(self, m: Member) -> bool:
        """It handles a share now: the one it narrowed to, or one of the new set it widened to."""
        if m.identity in m.shard_set:
            return True
        return m.widened == self.shard_version.get(m.name, 0) and m.identity in self.shard_members.get(
            m.name, ()
        )

    def serving(self, *, current: bool = False) -> dict[str, int]:
        """Replicas per bee handling a share right now (of its current version only)."""
        return {
            name: sum(1 for m in self.of_bee(name) if self._holds_share(m) and not (current and m.retiring))
            for name in self.topology.bees
        }

    def settled(self) -> bool:
        """Every wanted replica of every bee's current version handles its share, and all
        replicas (retiring ones included) agree on the current set."""
        serving = self.serving(current=True)
        return all(
            serving[name] == bee.replicas
            and all(m.shard_ok == self.shard_version.get(name, 0) for m in self.of_bee(name))
            for name, bee in self.topology.bees.items()
        )

    def retire(self, name: str) -> None:
        """The bee is redeployed: its running replicas serve on until the new ones take over."""
        for m in self.members.values():
            if m.role == "bee" and m.name == name:
                m.retiring = True

    def _gave_up_share(self, m: Member) -> bool:
        return (
            m.retiring
            and m.state == "up"
            and m.shard_ok == self.shard_version.get(m.name, 0)
            and m.identity not in m.shard_set
        )

    def start_fences(self) -> list[tuple[Member, dict[str, Any]]]:
        """PROBE requests (producer, body) that fence retiring replicas which gave up their share.

        Messages sent before the narrow may be this replica's to handle (the new owner
        can have seen them before it widened). Each producer sends one probe down the
        same pipe after them; pipes keep order and a replica handles frames in order,
        so its SAW for the probe means they are done. What producers send later, the
        new owners take.
        """
        out: list[tuple[Member, dict[str, Any]]] = []
        edges = self.edges()
        for m in self.members.values():
            if m.fence_token is not None or not self._gave_up_share(m):
                continue
            m.fence_token = secrets.token_hex(4)
            into = [e for e in edges if e[1] is m]
            m.fence = {(p.identity, topic) for p, _, topic in into}
            for p, topics in _by_producer(into).values():
                names = sorted(t.decode("latin-1") for t in topics)
                out.append((p, {"token": m.fence_token, "topics": names}))
        return out

    def fenced(self, consumer: str, producer: str, topic: bytes, token: str) -> bool:
        """A fence probe reached its retiring replica; True if that is news."""
        m = self.members.get(consumer)
        if m is None or m.fence_token != token or (producer, topic) not in m.fence:
            return False
        m.fence.discard((producer, topic))
        return True

    def retirable(self) -> list[Member]:
        """Retiring replicas that gave up their share and handled all sent before: stop them."""
        return [
            m
            for m in self.members.values()
            if self._gave_up_share(m) and m.fence_token is not None and not m.fence
        ]

    def bee_stats(self) -> dict[str, dict[str, Any]]:
        """Per bee: counters (dead replicas' included), latency, readiness."""
        serving = self.serving()
        out: dict[str, dict[str, Any]] = {}
        for name, spec in self.topology.bees.items():
            reps = [m.stats for m in self.members.values() if m.role == "bee" and m.name == name]
            slots = [s for (role, n, _), s in self.slots.items() if role == "bee" and n == name]
            st: dict[str, Any] = {
                k: sum(int(s.get(k, 0)) for s in reps) + sum(s.carried.get(k, 0) for s in slots)
                for k in _COUNTERS
            }
            st.update(
                p50_ms=max((s.get("p50_ms", 0.0) for s in reps), default=0.0),
                p99_ms=max((s.get("p99_ms", 0.0) for s in reps), default=0.0),
                batch=max((s.get("batch", 1.0) for s in reps), default=1.0),
                pending_joins=sum(s.get("pending_joins", 0) for s in reps),
                dropped_by=_sum_counts(s.get("dropped_by") or {} for s in reps),
                ready=min(serving.get(name, 0), spec.replicas),
                wanted=spec.replicas,
                input=list(spec.inputs),
                last_error=max(
                    (s["last_error"] for s in reps if s.get("last_error")),
                    key=lambda e: float(e.get("time", 0)),
                    default=None,
                ),
            )
            st["state"] = self._bee_state(name, st["ready"], spec.replicas, slots)
            out[name] = st
        return out

    def _bee_state(self, name: str, ready: int, wanted: int, slots: list[Slot]) -> str:
        """starting, ready, redeploying (old replicas handing over) or error (crashing)."""
        if any(m.retiring for m in self.members.values() if m.role == "bee" and m.name == name):
            return "redeploying"
        if ready >= wanted:
            return "ready"
        return "error" if any(s.failures for s in slots) else "starting"

    def hub(self) -> Member | None:
        return next((m for m in self.members.values() if m.role == "hub"), None)

    def hub_acked(self, version: int) -> bool:
        """The hub is up and has applied status `version`."""
        hub = self.hub()
        return hub is not None and hub.state == "up" and hub.status_ok == version
