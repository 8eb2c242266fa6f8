"""Readiness bookkeeping without processes: links, routes, retirement, carried counters."""

from __future__ import annotations

from bytewax_nb.engine.wiring import Member, Wiring, exit_cause
from bytewax_nb.model.spec import BeeSpec, GatewaySpec, Topology


def _wiring() -> Wiring:
    """gw -> a (2 replicas) -> b, every process up with an address, nobody linked yet."""
    topo = Topology()
    topo.add_gateway(GatewaySpec("gw"))
    topo.add_bee(BeeSpec("a", lambda p: p, ("gw",), replicas=2))
    topo.add_bee(BeeSpec("b", lambda p: p, ("a",), retries=0))
    w = Wiring(topo)
    w.want()
    for role, name, r in [("hub", "hub", 0), ("bee", "a", 0), ("bee", "a", 1), ("bee", "b", 0)]:
        _up(w, Member(f"{role}:{name}:{r}:1", role, name, r))
    return w


def _up(w: Wiring, m: Member) -> Member:
    m.state, m.address = "up", f"tcp://127.0.0.1:{1000 + len(w.members)}"
    w.add(m)
    return m


def _link_all(w: Wiring) -> None:
    for m in w.members.values():
        m.linked = frozenset(w.producers_of(m))
    w.note_ready()


def test_each_replica_reads_from_the_hub_and_its_input_bees_replicas() -> None:
    w = _wiring()
    a0, b0 = w.members["bee:a:0:1"], w.members["bee:b:0:1"]
    assert set(w.producers_of(a0)) == {"hub:hub:0:1"}
    assert set(w.producers_of(b0)) == {"hub:hub:0:1", "bee:a:0:1", "bee:a:1:1"}  # the hub: for answers
    assert w.producers_of(w.members["hub:hub:0:1"]) == {}
    assert w.links_for(b0)["hub"] == "hub:hub:0:1"


def test_routes_name_the_bees_that_listen_to_each_topic() -> None:
    w = _wiring()
    assert w.routes_for(w.members["hub:hub:0:1"]) == {"gw": [["a", False, 1]]}
    assert w.routes_for(w.members["bee:a:0:1"]) == {"a": [["b", False, 0]]}
    assert w.routes_for(w.members["bee:b:0:1"]) == {"b": []}  # a sink


def test_a_replica_serves_once_every_producer_welcomed_it_and_stays_so() -> None:
    w = _wiring()
    assert not w.settled() and w.bee_stats()["b"]["ready"] == 0
    b0 = w.members["bee:b:0:1"]
    b0.linked = frozenset({"hub:hub:0:1", "bee:a:0:1"})  # a:1 has not answered yet
    w.note_ready()
    assert not w.wired(b0) and w.ready("b") == []
    _link_all(w)
    assert w.settled() and [m.identity for m in w.ready("b")] == ["bee:b:0:1"]
    _up(w, Member("bee:a:2:1", "bee", "a", 2))  # a producer comes later: b serves on meanwhile
    assert w.ready("b") == [b0] and not w.wired(b0) and not w.settled()


def test_old_replicas_are_told_to_retire_only_once_the_new_version_serves() -> None:
    w = _wiring()
    _link_all(w)
    w.retire("b")
    new = Member("bee:b:0:2", "bee", "b", 0)
    w.add(new)
    assert w.to_retire() == []  # the new one is not up: the old one serves on
    _up(w, new)
    assert w.to_retire() == []
    _link_all(w)
    assert [m.identity for m in w.to_retire()] == ["bee:b:0:1"]
    old = w.members["bee:b:0:1"]
    old.retire_sent = True
    assert w.to_retire() == [] and not w.settled()  # its producers may still send to it
    old.revoked = True
    assert w.settled()
    assert w.bee_stats()["b"]["state"] == "redeploying"


def test_a_dead_replica_keeps_its_counters_and_the_retries_others_counted() -> None:
    w = _wiring()
    _link_all(w)
    w.members["bee:a:1:1"].stats = {"handled": 7, "errors": 1}
    w.members["bee:a:0:1"].stats = {"handled": 3, "retried": {"b": 2}}
    w.members["hub:hub:0:1"].stats = {"retried": {"a": 1}}
    w.remove("bee:a:1:1")
    w.remove("bee:a:0:1")
    stats = w.bee_stats()
    assert (stats["a"]["handled"], stats["a"]["errors"], stats["a"]["wanted"]) == (10, 1, 2)
    assert (stats["a"]["retried"], stats["b"]["retried"]) == (1, 2)
    assert stats["a"]["ready"] == 0


def test_a_bee_is_failing_only_after_repeated_failures_with_no_replica_ready() -> None:
    w = _wiring()
    _link_all(w)
    w.remove("bee:b:0:1")
    w.slots[("bee", "b", 0)].failures = 1
    st = w.bee_stats()["b"]
    assert st["state"] == "error" and not st["failing"]  # restarting: requests wait for it
    w.slots[("bee", "b", 0)].failures = 3
    assert w.bee_stats()["b"]["failing"]


def test_bee_states_for_the_widget() -> None:
    w = _wiring()
    assert {n: st["state"] for n, st in w.bee_stats().items()} == {"a": "starting", "b": "starting"}
    _link_all(w)
    assert {n: st["state"] for n, st in w.bee_stats().items()} == {"a": "ready", "b": "ready"}


def test_exit_causes_in_words() -> None:
    assert exit_cause(-9) == "was killed by SIGKILL"
    assert exit_cause(3) == "exited with code 3"
    assert exit_cause(137) == "exited with code 137 (killed by SIGKILL)"
    assert exit_cause(70) == "was restarted: a call ran past the bee's timeout"


def test_restarts_back_off_and_a_process_that_never_served_is_given_up_on() -> None:
    from bytewax_nb.engine.policy import RestartPolicy

    policy = RestartPolicy()
    assert [policy.delay(n) for n in (1, 2, 3, 7, 20)] == [0.1, 0.2, 0.4, 5.0, 5.0]
    assert not policy.gives_up(2, ever_ready=False)
    assert policy.gives_up(3, ever_ready=False)
    # it served once: a crash later is restarted, never given up on
    assert not policy.gives_up(3, ever_ready=True)
    assert policy.failing([3], ready=0) and not policy.failing([3], ready=1)
    assert not policy.failing([2, 1], ready=0)
