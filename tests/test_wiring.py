"""Readiness bookkeeping without processes: edges, probes, shards, carried counters."""

from __future__ import annotations

import time
from typing import Any

from bytewax_nb.spec import BeeSpec, GatewaySpec, Topology
from bytewax_nb.wire import response_topic, topic_of
from bytewax_nb.wiring import Member, Wiring


def _wiring() -> Wiring:
    topo = Topology()
    topo.add_gateway(GatewaySpec("gw"))
    topo.add_bee(BeeSpec("a", lambda p: p, ("gw",), replicas=2))
    topo.add_bee(BeeSpec("b", lambda p: p, ("a",)))
    w = Wiring(topo)
    w.want()
    for role, name, r in [("hub", "hub", 0), ("bee", "a", 0), ("bee", "a", 1), ("bee", "b", 0)]:
        m = Member(f"{role}:{name}:{r}:1", role, name, r)
        m.state = "up"
        w.add(m)
    return w


def _prove_all(w: Wiring) -> None:
    for p, c, t in w.edges():
        w.saw(p.identity, c.identity, t)


def _ack(w: Wiring, messages: list[tuple[Member, dict[str, Any]]]) -> None:
    for m, body in messages:
        w.acked(m, body["version"], body["widen"])


def _settle(w: Wiring) -> None:
    """Acknowledge every step the wiring asks for until it asks for nothing."""
    for _ in range(10):
        messages = w.rewire()
        if not messages:
            return
        _ack(w, messages)
    raise AssertionError("the hand-over never settles")


def test_edges_cover_inputs_and_responses() -> None:
    w = _wiring()
    edges = {(p.identity, c.identity, t) for p, c, t in w.edges()}
    assert ("hub:hub:0:1", "bee:a:0:1", topic_of("gw")) in edges
    assert ("bee:a:1:1", "bee:b:0:1", topic_of("a")) in edges
    assert ("bee:b:0:1", "hub:hub:0:1", response_topic("gw")) in edges
    assert len(edges) == 2 + 2 + 3  # hub->a*2, a*2->b, every bee replica -> hub


def test_probes_go_to_producers_until_each_edge_is_seen() -> None:
    w = _wiring()
    probes = w.unproven()
    assert probes["hub:hub:0:1"][1] == {topic_of("gw")}
    assert probes["bee:a:0:1"][1] == {topic_of("a"), response_topic("gw")}
    assert set(w.unproven(only="bee:b:0:1")) == {"bee:a:0:1", "bee:a:1:1", "bee:b:0:1"}
    _prove_all(w)
    assert w.unproven() == {}
    assert w.saw("bee:a:0:1", "bee:b:0:1", topic_of("a")) is False  # not news twice
    assert w.saw("ghost", "bee:b:0:1", topic_of("a")) is False


def test_shards_are_handed_out_only_to_wired_replicas_and_serve_once_acked() -> None:
    w = _wiring()
    assert all(not body["members"] for _, body in w.rewire())
    _prove_all(w)
    widen = w.rewire()
    a_bodies = {m.identity: body for m, body in widen if m.name == "a"}
    assert a_bodies["bee:a:0:1"]["members"] == ["bee:a:0:1", "bee:a:1:1"]
    assert all(body["widen"] for _, body in widen)
    assert w.serving() == {"a": 0, "b": 0}
    _ack(w, widen)
    assert w.serving() == {"a": 2, "b": 1} and not w.settled()  # widened replicas serve
    before = time.time()
    narrow = w.rewire()
    assert narrow and not any(body["widen"] for _, body in narrow)
    # requests received before the narrow keep their wider shares: the moment travels along
    assert all(before <= body["since"] <= time.time() for _, body in narrow)
    _ack(w, narrow)
    assert w.serving() == {"a": 2, "b": 1} and w.settled()
    assert w.rewire() == []  # nothing changed, nothing to send


def test_a_dead_replica_leaves_the_shard_and_its_counters_stay() -> None:
    w = _wiring()
    _prove_all(w)
    _settle(w)
    w.members["bee:a:1:1"].stats = {"handled": 7, "errors": 1}
    w.members["bee:a:0:1"].stats = {"handled": 3}
    w.remove("bee:a:1:1")
    assert not any("bee:a:1:1" in e for e in w.verified)
    messages = w.rewire()
    assert [(m.identity, body["members"], body["widen"]) for m, body in messages] == [
        ("bee:a:0:1", ["bee:a:0:1"], True)
    ]
    stats = w.bee_stats()["a"]
    assert (stats["handled"], stats["errors"], stats["wanted"]) == (10, 1, 2)
    assert stats["ready"] == 1  # the survivor goes on serving while it takes the whole share
    assert not w.settled()


def test_nobody_narrows_before_every_replica_has_widened() -> None:
    w = _wiring()
    late = w.members.pop("bee:a:1:1")  # replica 1 of "a" is not up yet
    _prove_all(w)
    _settle(w)
    assert w.serving()["a"] == 1
    w.add(late)
    _prove_all(w)
    both = ["bee:a:0:1", "bee:a:1:1"]
    widen = w.rewire()
    assert sorted((m.identity, body["members"], body["widen"]) for m, body in widen) == [
        ("bee:a:0:1", both, True),
        ("bee:a:1:1", both, True),
    ]
    _ack(w, widen[:1])
    assert w.rewire() == []  # one widened: still nobody narrows
    _ack(w, widen[1:])
    narrow = w.rewire()
    assert sorted((m.identity, body["widen"]) for m, body in narrow) == [
        ("bee:a:0:1", False),
        ("bee:a:1:1", False),
    ]
    _ack(w, narrow)
    assert w.serving()["a"] == 2 and w.settled()


def test_an_ack_of_a_superseded_step_counts_for_nothing() -> None:
    w = _wiring()
    late = w.members.pop("bee:a:1:1")
    _prove_all(w)
    _settle(w)
    w.add(late)
    _prove_all(w)
    stale = w.rewire()  # widen to {0, 1}
    w.remove("bee:a:1:1")  # ... and replica 1 dies before anyone acknowledged
    fresh = w.rewire()
    assert [(m.identity, body["members"], body["widen"]) for m, body in fresh] == [
        ("bee:a:0:1", ["bee:a:0:1"], True)
    ]
    _ack(w, [(m, body) for m, body in stale if m.identity == "bee:a:0:1"])
    assert w.rewire() == []  # the stale ack moved nothing forward
    _ack(w, fresh)
    _settle(w)
    assert w.serving()["a"] == 1 and not w.settled()  # one of two wanted replicas


def test_a_redeployed_bee_hands_over_before_the_old_replicas_stop() -> None:
    w = _wiring()
    _prove_all(w)
    _settle(w)
    w.retire("b")
    new = Member("bee:b:0:2", "bee", "b", 0)
    w.add(new)
    assert w.rewire() == [] and w.retirable() == []  # the new one is not up yet
    new.state = "up"
    _prove_all(w)
    widen = w.rewire()
    assert sorted((m.identity, body["members"], body["widen"]) for m, body in widen) == [
        ("bee:b:0:1", ["bee:b:0:2"], True),  # the old one keeps its share while widening
        ("bee:b:0:2", ["bee:b:0:2"], True),
    ]
    assert w.serving()["b"] == 1  # the old one alone until the new one has widened
    _ack(w, widen)
    assert w.serving()["b"] == 2 and not w.settled() and w.retirable() == []  # both, for a moment
    narrow = w.rewire()
    _ack(w, narrow)
    old = w.members["bee:b:0:1"]
    assert w.settled() and w.retirable() == []  # not before what a's replicas sent is handled
    fences = w.start_fences()
    token = old.fence_token
    assert sorted((p.identity, body["topics"], body["token"]) for p, body in fences) == [
        ("bee:a:0:1", ["a\x00"], token),
        ("bee:a:1:1", ["a\x00"], token),
    ]
    assert w.start_fences() == []  # asked once
    assert not w.fenced(old.identity, "bee:a:0:1", topic_of("a"), "stale-token")
    assert w.fenced(old.identity, "bee:a:0:1", topic_of("a"), str(token))
    assert w.retirable() == []  # a's replica 1 has not been heard yet
    w.remove("bee:a:1:1")  # ... and never will: it died, and sends nothing more
    assert w.retirable() == [old]


def test_a_serving_consumer_keeps_its_share_while_a_new_producer_is_proven() -> None:
    w = _wiring()
    _prove_all(w)
    _settle(w)
    assert w.shard_members["b"] == ["bee:b:0:1"]
    # a new replica of a (its producer) comes up: the edge a:2 -> b is not proven yet
    new = Member("bee:a:0:2", "bee", "a", 0)
    new.state = "up"
    w.add(new)
    w.rewire()
    assert w.shard_members["b"] == ["bee:b:0:1"]  # b still serves
    assert "bee:a:0:2" not in w.shard_members["a"]  # the newcomer waits for its edges


def test_bee_states_for_the_widget() -> None:
    w = _wiring()
    assert {n: st["state"] for n, st in w.bee_stats().items()} == {"a": "starting", "b": "starting"}
    _prove_all(w)
    _settle(w)
    assert {n: st["state"] for n, st in w.bee_stats().items()} == {"a": "ready", "b": "ready"}
    w.remove("bee:a:1:1")  # a replica died and is being restarted
    w.slots[("bee", "a", 1)].failures = 1
    w.rewire()
    assert w.bee_stats()["a"]["state"] == "error"
    w.retire("b")  # a new version of b is taking over
    assert w.bee_stats()["b"]["state"] == "redeploying"
