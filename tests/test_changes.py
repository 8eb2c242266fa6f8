"""Live graph changes as bookkeeping, without processes: which replicas retire, which
die at once, which slots exist, which bees learn they became (or stopped being) sinks."""

from __future__ import annotations

from test_wiring import _wiring

from bytewax_nb.engine.changes import redeploy, remove, set_replicas, undo_deploy
from bytewax_nb.engine.wiring import Member, Slot
from bytewax_nb.model.spec import BeeSpec


def test_scaling_down_retires_surplus_replicas_and_touches_no_other() -> None:
    w = _wiring()  # a: replicas 0 and 1, up; b: replica 0, up
    starting = Member("bee:a:2:1", "bee", "a", 2)  # launched, never served
    w.add(starting)
    w.slots[("bee", "a", 2)] = Slot()
    kill = set_replicas(w.topology, w, BeeSpec("a", lambda p: p, ("gw",), replicas=1))
    assert kill == [starting]
    assert [m.identity for m in w.members.values() if m.retiring] == ["bee:a:1:1"]
    assert sorted(k for k in w.slots if k[:2] == ("bee", "a")) == [("bee", "a", 0)]
    assert w.topology.bees["a"].replicas == 1


def test_scaling_up_adds_slots_and_retires_nobody() -> None:
    w = _wiring()
    assert set_replicas(w.topology, w, BeeSpec("a", lambda p: p, ("gw",), replicas=3)) == []
    assert not any(m.retiring for m in w.members.values())
    assert ("bee", "a", 2) in w.slots


def test_a_redeploy_retires_the_old_version_and_routes_follow() -> None:
    w = _wiring()  # gw -> a -> b: b is the sink
    redeploy(w.topology, w, BeeSpec("c", lambda p: p, ("b",)))
    assert w.routes_for(w.members["bee:b:0:1"]) == {"b": [["c", False, 1]]}  # b has a listener now
    redeploy(w.topology, w, BeeSpec("c", lambda p: p, ("a",)))
    assert w.routes_for(w.members["bee:b:0:1"]) == {"b": []}
    assert all(m.retiring for m in w.members.values() if m.name == "c")


def test_removing_a_bee_retires_its_replicas_and_drops_its_slots() -> None:
    w = _wiring()
    starting = Member("bee:b:0:2", "bee", "b", 0)  # launched, never up
    w.add(starting)
    assert remove(w.topology, w, "b") == [starting]
    assert "b" not in w.topology.bees and not any(k[1] == "b" for k in w.slots)
    assert w.members["bee:b:0:1"].retiring
    assert [m.identity for m in w.to_retire()] == ["bee:b:0:1"]  # at once: nothing replaces it


def test_undoing_a_failed_deploy_keeps_the_old_version_serving() -> None:
    w = _wiring()
    old = w.topology.bees["b"]
    redeploy(w.topology, w, BeeSpec("b", lambda p: p, ("gw",)))
    new = Member("bee:b:0:2", "bee", "b", 0)
    w.add(new)
    kill = undo_deploy(w.topology, w, "b", old)
    assert kill == [new]
    assert w.topology.bees["b"] is old
    assert not any(m.retiring for m in w.members.values())


def test_undoing_a_new_bee_removes_it_and_its_slots() -> None:
    w = _wiring()
    redeploy(w.topology, w, BeeSpec("c", lambda p: p, ("b",)))
    assert undo_deploy(w.topology, w, "c", None) == []
    assert "c" not in w.topology.bees and not any(k[1] == "c" for k in w.slots)
