"""Live changes to a running swarm's graph, as bookkeeping on its topology and wiring.

No sockets here: each function updates the topology and the wiring's slots and says
what the supervisor must do next (replicas to kill).
The supervisor then launches what the new slots want and waits until the wiring has
settled (see `Change`), or calls the change's `undo`.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field

from ..model.protocol import MemberState, Role
from ..model.spec import BeeSpec, Topology
from .wiring import Member, Slot, Wiring

__all__ = ["Change", "redeploy", "remove", "replan", "reslot", "set_replicas", "undo_deploy", "unplan"]


@dataclass
class Change:
    """Something `start`, `deploy`, `scale` or `add_gateway` waits for: settled, or failed."""

    what: str
    done: threading.Event = field(default_factory=threading.Event)
    error: str | None = None
    undo: Callable[[], None] | None = None  # what a change that cannot settle goes back to


def _bee_slots(wiring: Wiring, name: str) -> list[tuple[Role, str, int]]:
    return [k for k in wiring.slots if k[:2] == (Role.BEE, name)]


def reslot(wiring: Wiring, spec: BeeSpec) -> None:
    """Fresh slots for a bee's replicas: failures count anew for the new version."""
    for key in _bee_slots(wiring, spec.name):
        if key[2] >= spec.replicas:
            del wiring.slots[key]
    for r in range(spec.replicas):
        slot = wiring.slots.setdefault((Role.BEE, spec.name, r), Slot())
        slot.failures, slot.restart_at, slot.ever_ready = 0, 0.0, False


def redeploy(topology: Topology, wiring: Wiring, spec: BeeSpec) -> None:
    """Add a bee or replace its version (old replicas retire once the new ones serve)."""
    if spec.name in topology.bees:
        wiring.retire(spec.name)
    topology.bees[spec.name] = spec
    reslot(wiring, spec)


def set_replicas(topology: Topology, wiring: Wiring, spec: BeeSpec) -> list[Member]:
    """Slots for `spec.replicas`: replicas beyond them retire (ask for nothing more,
    drain, exit), the others are untouched. Returns replicas to kill: surplus ones that
    never served."""
    topology.bees[spec.name] = spec
    for key in _bee_slots(wiring, spec.name):
        if key[2] >= spec.replicas:
            del wiring.slots[key]
    kill = []
    for m in wiring.members.values():
        if m.role == Role.BEE and m.name == spec.name and m.replica >= spec.replicas and not m.retiring:
            if m.state == MemberState.UP:
                m.retiring = True
            else:
                kill.append(m)
    for r in range(spec.replicas):
        wiring.slots.setdefault((Role.BEE, spec.name, r), Slot())
    return kill


def remove(topology: Topology, wiring: Wiring, name: str) -> list[Member]:
    """Take a bee out: its serving replicas retire (they finish what they hold), its
    slots go. Returns replicas to kill: those that never served."""
    del topology.bees[name]
    for key in _bee_slots(wiring, name):
        del wiring.slots[key]
    kill = []
    for m in wiring.members.values():
        if m.role == Role.BEE and m.name == name and not m.retiring:
            if m.state == MemberState.UP:
                m.retiring = True
            else:
                kill.append(m)
    return kill


def undo_deploy(topology: Topology, wiring: Wiring, name: str, previous: BeeSpec | None) -> list[Member]:
    """A (re)deploy whose replicas cannot start: the old version serves on (a new bee
    goes away). Returns the new version's replicas, to kill."""
    kill = [m for m in wiring.members.values() if m.role == Role.BEE and m.name == name and not m.retiring]
    if previous is None:
        del topology.bees[name]
        for key in _bee_slots(wiring, name):
            del wiring.slots[key]
        return kill
    topology.bees[name] = previous
    reslot(wiring, previous)
    for m in wiring.members.values():
        if m.role == Role.BEE and m.name == name and m.retiring and not m.retire_sent:
            m.retiring = False
    for key in _bee_slots(wiring, name):
        wiring.slots[key].ever_ready = True
    return kill


def _only_replicas(a: BeeSpec, b: BeeSpec) -> bool:
    """`b` is `a` with another number of replicas (a scale, not a new version)."""
    return dataclasses.replace(a, replicas=b.replicas) == b


def replan(
    topology: Topology, wiring: Wiring, new: Mapping[str, BeeSpec], forced: Collection[str] = ()
) -> list[Member]:
    """Go from the process-level bees of `topology` to `new` (a `fusion.plan`): bees
    gone are removed, bees that only changed their replicas are scaled, new and changed
    ones (and `forced` ones: a restart) are redeployed; the others are not touched.
    Returns replicas to kill."""
    old = dict(topology.bees)
    kill = []
    for name in old.keys() - new.keys():
        kill += remove(topology, wiring, name)
    for name, spec in new.items():
        prev = old.get(name)
        if prev is None or name in forced or not _only_replicas(prev, spec):
            redeploy(topology, wiring, spec)
        elif prev.replicas != spec.replicas:
            kill += set_replicas(topology, wiring, spec)
    topology.bees = {name: topology.bees[name] for name in new}
    return kill


def unplan(
    topology: Topology,
    wiring: Wiring,
    old: Mapping[str, BeeSpec],
    tried: Mapping[str, BeeSpec],
    forced: Collection[str] = (),
) -> list[Member]:
    """Undo a `replan` from `old` to `tried` that could not settle: the old version of
    each bee it touched serves on. Returns the new versions' replicas, to kill."""
    kill = []
    for name in old.keys() | tried.keys():
        prev, cur = old.get(name), tried.get(name)
        if prev is not None and cur is not None and name not in forced and _only_replicas(prev, cur):
            if prev.replicas != cur.replicas:
                kill += set_replicas(topology, wiring, prev)
            continue
        kill += undo_deploy(topology, wiring, name, prev)
    topology.bees = {name: topology.bees[name] for name in old}
    return kill
