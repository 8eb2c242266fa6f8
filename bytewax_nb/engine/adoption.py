"""The controller's side of registration: tasks the engine started become members.

A task says HELLO when it starts (and is configured as a launched process would be),
then a BEAT every `BYTEWAX_NB_HEARTBEAT` seconds carrying how it is wired. A
controller that restarts has no members: it adopts each task from its next beat, and
for a few beats only listens (sending links or routes built from half the swarm would
cut links that carry requests). Requests never pass through the controller, so they
flow on meanwhile.

Slots are the engine's task slots: a bee wants as many replicas as it has slots. A
slot appears when a task of it registers and goes when its task leaves on purpose
(SIGTERM: scale down, update); a task that dies keeps its slot, as the engine starts
another in it. So `docker service scale` typed by hand is followed like `swarm.scale`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

from ..bus.child import CONTROLLER_PORT, REDIAL_S
from ..bus.curve import BusKeys
from ..model.protocol import Beat, MemberState, Msg, Role, Tally
from ..model.spec import Topology
from ..runtime.base import Handle, Launcher
from .book import Book
from .wiring import NO_HEARTBEAT, Member, Past, Slot, Wiring

__all__ = ["Adopt", "Adoption", "BeatHandle", "Beats", "Engine"]

_MISSED = 6  # heartbeats missed before a task counts as dead
_QUIET_BEATS = 4  # heartbeats a restarted controller only listens for


@dataclass(frozen=True)
class Adopt:
    """How a controller runs: the stack's secrets, its port, the heartbeat's period."""

    key: bytes
    curve: BusKeys | None = field(repr=False)
    port: int = CONTROLLER_PORT
    beat: float = 0.5
    redial: float = REDIAL_S  # the longest a live task may take to find a new controller
    journal: str = "/var/lib/bytewax-nb/journal.sqlite"  # the hub's volume


class Engine(Launcher):
    """The engine launches a stack's processes: the controller never does."""

    name = "stack"
    bind_host = "0.0.0.0"  # the stack's network reaches the controller
    peer_host = "auto"  # a task listens on its own address on that network

    def launch(self, *args: Any, **kwargs: Any) -> Handle:
        raise RuntimeError("a stack's controller launches nothing: the engine does")


class BeatHandle(Handle):
    """A registered task, alive while it beats; the engine, not us, ends it."""

    def __init__(self, identity: str, pid: int | None, timeout: float) -> None:
        self.identity = identity
        self.pid = pid
        self._timeout = timeout
        self._last = time.monotonic()
        self._code: int | None = None

    def beat(self) -> None:
        self._last = time.monotonic()

    def bye(self) -> None:
        """Drained and exiting on purpose."""
        self._code = 0

    def gone(self) -> None:
        """Replaced: a new task took its place (the hub's one slot)."""
        self._code = NO_HEARTBEAT

    def exit_code(self) -> int | None:
        if self._code is None and time.monotonic() - self._last > self._timeout:
            self._code = NO_HEARTBEAT
        return self._code

    def terminate(self) -> None:
        pass

    def kill(self) -> None:
        pass

    def close(self) -> None:
        pass


class Beats:
    """Members from registrations and heartbeats, and the wanted replicas from slots."""

    def __init__(self, adopt: Adopt) -> None:
        self.adopt = adopt
        start = time.monotonic()
        self.quiet_until = start + _QUIET_BEATS * adopt.beat
        # longer while a task that beats names one not heard of yet: after a controller
        # that vanished without a word, the others find this one only once they see
        # their connection dead (see `bus.child.watch_peer`)
        self.await_until = start + adopt.redial + 2 * adopt.beat
        self.since = time.time()  # this controller's start, in `/swarm`
        self._quiet_said = False
        self.snapshot_at = 0.0
        # what each member's last beat named: consumers it may have sent work to, and
        # producers it dials; one that is no member after the quiet start died unseen
        self.holding: dict[str, set[str]] = {}
        self.dialling: dict[str, set[str]] = {}
        self.told: set[str] = set()  # identities seen to end, or already said lost
        # the replicas the engine runs of each bee, when this controller may ask it (an
        # autoscaled stack's): what a bee wants, also at zero; otherwise its slots say
        self.engine_wanted: Callable[[], Mapping[str, int]] | None = None

    def quiet(self, wiring: Wiring) -> bool:
        """Still learning the swarm after a (re)start: send nothing that rewires (and
        count no death no one saw) while a live task may not have found us yet."""
        now = time.monotonic()
        if now < self.quiet_until:
            return True
        return now < self.await_until and bool(self.awaited(wiring))

    def awaited(self, wiring: Wiring) -> set[str]:
        """Tasks a member names (holds work for, or dials) that are neither members nor
        seen to end."""
        named: set[str] = set()
        for seen in (self.holding, self.dialling):
            for identities in seen.values():
                named |= identities
        return named - set(wiring.members) - self.told

    def quiet_ended(self, wiring: Wiring) -> bool:
        """True once, when the quiet start is over."""
        if self._quiet_said or self.quiet(wiring):
            return False
        self._quiet_said = True
        return True

    def member(self, identity: str, kind: Msg, body: Any, wiring: Wiring, units: Topology) -> Member | None:
        """A task heard of for the first time, as a member; None if it is none of ours."""
        if kind not in (Msg.HELLO, Msg.BEAT):
            return None
        try:
            role_text, name, slot_text, _ = identity.split(":")
            role, slot = Role(role_text), int(slot_text)
        except ValueError:
            return None
        if (role == Role.BEE and name not in units.bees) or (role == Role.HUB and name != "hub"):
            return None  # a task of a bee no longer deployed, on its way out
        pid = cast(dict[str, Any], body).get("pid") if isinstance(body, dict) else None
        m = Member(identity, role, name, slot, BeatHandle(identity, pid, _MISSED * self.adopt.beat))
        for other in wiring.members.values():
            if other.slot_key != m.slot_key or other.retiring:
                continue
            if role == Role.HUB:  # one hub: a new one means the old one is gone
                cast(BeatHandle, other.handle).gone()
            elif kind == Msg.HELLO:  # a new task in a live one's slot: an update (start-first)
                other.retiring = True
        wiring.add(m)
        wiring.slots.setdefault(m.slot_key, Slot())
        if kind == Msg.BEAT:  # running already: its controller restarted
            m.state = MemberState.UP
            m.served = True  # it served before; it counts as ready while wired
        self.sync_wanted(wiring, units)
        return m

    def on_beat(self, m: Member, beat: Beat, wiring: Wiring, units: Topology) -> bool:
        """Apply a heartbeat; True if the swarm must be told (a task started leaving)."""
        handle = m.handle
        if isinstance(handle, BeatHandle):
            handle.beat()
        self.holding[m.identity] = set(beat.get("holding", ()))
        links = beat.get("links")
        if links is not None:
            self.dialling[m.identity] = set(links["links"])
        if m.address is None and beat.get("address"):
            m.address = beat.get("address")
            m.links_sent = beat.get("links")
            m.routes_sent = beat.get("routes")
            m.linked = frozenset(beat.get("linked", ()))
            m.revoked = bool(beat.get("revoked"))
        if not beat.get("leaving") or (m.retiring and m.retire_sent):
            return False
        # the engine stops it (scale down, update, undeploy): it drains; its slot goes
        # unless a newer task holds it
        m.retiring = m.retire_sent = True
        if not any(o.slot_key == m.slot_key and not o.retiring for o in wiring.members.values()):
            wiring.slots.pop(m.slot_key, None)
        self.sync_wanted(wiring, units)
        return True

    def unseen_dead(self, wiring: Wiring) -> list[str]:
        """Tasks that died while no controller ran: consumers a member has not seen
        drain, and producers a member dials, that are no member (after the quiet start,
        every live task has beaten). A task that drained and left is in neither."""
        if self.quiet(wiring):
            return []
        named: set[str] = set()
        for seen in (self.holding, self.dialling):
            for identity in list(seen):
                if identity in wiring.members:
                    named |= seen[identity]
                else:
                    del seen[identity]
        dead = sorted(named - set(wiring.members) - self.told)
        self.told.update(dead)
        return dead

    def sync_wanted(self, wiring: Wiring, units: Topology) -> None:
        """Each bee wants what the engine runs of it, if this controller may ask, else as
        many replicas as it has slots (none known yet: as deployed)."""
        told = self.engine_wanted() if self.engine_wanted is not None else {}
        for name, spec in list(units.bees.items()):
            want = sum(1 for role, bee, _ in wiring.slots if role == Role.BEE and bee == name)
            if name in told:
                want = told[name]
            elif not want:
                continue
            if want != spec.replicas:
                units.bees[name] = dataclasses.replace(spec, replicas=want)
                if wiring.user is not units and name in wiring.user.bees:
                    wiring.user.bees[name] = units.bees[name]


class Adoption:
    """A stack controller's side of the supervisor: tasks the engine started register
    (HELLO) and beat; deaths while no controller ran are found from the survivors' beats."""

    def __init__(self, adopt: Adopt, book: Book, say: Callable[[str, str], None]) -> None:
        self.adopt = adopt
        self.beats = Beats(adopt)
        self._book = book
        self._say = say  # (identity, line): into the swarm's logs

    @property
    def since(self) -> float:
        """When this controller started (epoch seconds), as `/swarm` shows it."""
        return self.beats.since

    def quiet(self) -> bool:
        return self.beats.quiet(self._book.wiring)

    def register(self, identity: str, kind: Msg, body: Any) -> Member | None:
        """A task heard of for the first time: a member now, if it is one of ours."""
        book = self._book
        m = self.beats.member(identity, kind, body, book.wiring, book.units)
        if m is not None:
            self._say(identity, f"bytewax-nb: {identity} registered ({kind})")
        return m

    def beat(self, m: Member, beat: Beat) -> bool:
        """Apply a heartbeat; True if the swarm must be told (a task started leaving)."""
        book = self._book
        if m.role == Role.HUB and beat.get("ports"):
            book.ports.update(beat.get("ports", {}))
        if m.role == Role.HUB and "tally" in beat:  # this controller may be a restarted one
            self.carry_on(beat["tally"])
        return self.beats.on_beat(m, beat, book.wiring, book.units)

    def carry_on(self, tally: Tally) -> None:
        """Counts as the hub last heard them from a controller (counts only grow)."""
        book = self._book
        book.hub_restarts = max(book.hub_restarts, tally["hub_restarts"])
        for bee, deaths in tally["deaths"].items():
            if bee in book.units.bees or bee in book.topology.bees:
                past = book.wiring.past.setdefault(bee, Past())
                past.deaths = max(past.deaths, deaths)

    def resync(self) -> None:
        """The engine's replicas changed (this controller scaled a bee): want them now."""
        self.beats.sync_wanted(self._book.wiring, self._book.units)

    def ended(self, m: Member) -> None:
        """Seen to end: not one that died unseen."""
        self.beats.told.add(m.identity)

    def tick(
        self,
        now: float,
        rewire: Callable[[], None],
        died_unseen: Callable[[str], None],
        send_snapshot: Callable[[], None],
    ) -> None:
        """Rewire once the quiet start is over, count deaths no controller saw, and about
        once a second send the hub the swarm's status for `/swarm`."""
        if self.beats.quiet_ended(self._book.wiring):
            rewire()
        for identity in self.beats.unseen_dead(self._book.wiring):
            died_unseen(identity)
        if now >= self.beats.snapshot_at:
            self.beats.snapshot_at = now + 1.0
            send_snapshot()
