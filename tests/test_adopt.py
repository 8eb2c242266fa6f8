"""A stack controller's registration bookkeeping without processes: which tasks died
while no controller ran, as the survivors' heartbeats name them (pure logic; the
stack tests kill real tasks)."""

from __future__ import annotations

import json

from bytewax_nb.bus.producer import Dispatcher, Parcel
from bytewax_nb.bus.wire import Header, Kind, Signer
from bytewax_nb.engine.adoption import Adopt, Beats
from bytewax_nb.engine.wiring import Wiring
from bytewax_nb.model.protocol import Beat, LinksBody, Msg
from bytewax_nb.model.spec import BeeSpec, GatewaySpec, Topology

HUB_OLD, HUB = "hub:hub:1:old", "hub:hub:1:new"
A1, A2 = "bee:a:1:t1", "bee:a:2:t2"
B1 = "bee:b:1:t3"


def _topology() -> Topology:
    topo = Topology()
    topo.add_gateway(GatewaySpec("gw"))
    topo.add_bee(BeeSpec("a", lambda p: p, ("gw",), replicas=2))
    topo.add_bee(BeeSpec("b", lambda p: p, ("a",)))
    return topo


def _beats() -> Beats:
    return Beats(Adopt(key=b"k" * 32, curve=None, beat=0.0, redial=0.0))  # no quiet start: judge at once


def _beat(beats: Beats, w: Wiring, topo: Topology, identity: str, **body: object) -> None:
    m = w.members.get(identity) or beats.member(identity, Msg.BEAT, body, w, topo)
    assert m is not None
    beats.on_beat(m, Beat(**body), w, topo)  # type: ignore[typeddict-item]


def test_a_consumer_a_producer_holds_work_for_and_a_producer_a_consumer_dials_are_dead() -> None:
    topo, beats = _topology(), _beats()
    w = Wiring(topo)
    # after a restart: the new hub, a's replica 1 and b's replica beat; a's replica 2 and
    # the old hub died meanwhile (the hub still holds a2, b still dials the old hub)
    _beat(beats, w, topo, HUB, holding=[A1, A2])
    _beat(beats, w, topo, A1, holding=[B1], links=LinksBody(links={HUB: "tcp://h:7601"}, hub=HUB))
    dials = LinksBody(links={A1: "x", A2: "y", HUB_OLD: "z"}, hub=HUB_OLD)
    _beat(beats, w, topo, B1, holding=[], links=dials)
    assert beats.unseen_dead(w) == [A2, HUB_OLD]
    assert beats.unseen_dead(w) == []  # said once


def test_a_task_that_drained_and_left_and_one_seen_to_end_are_not_dead() -> None:
    topo, beats = _topology(), _beats()
    w = Wiring(topo)
    _beat(beats, w, topo, HUB, holding=[A1])  # a2 revoked its link and handed all back
    _beat(beats, w, topo, A1, holding=[], links=LinksBody(links={HUB: "h"}, hub=HUB))
    beats.told.add(A1)  # the controller saw it end (the supervisor notes each death it reaps)
    w.remove(A1)
    assert beats.unseen_dead(w) == []


def test_a_producer_names_only_consumers_it_has_not_seen_drain() -> None:
    sent: list[tuple[str, list[object]]] = []
    d = Dispatcher("hub:hub:1:x", Signer(b"k" * 32), lambda who, frames: sent.append((who, frames)))
    credit = Header(Kind.CREDIT, "", "a", "a")
    for who in (A1, A2, B1):
        d.on_frame(who, credit, json.dumps({"bee": "a", "window": 4}).encode())
    d.on_frame(A2, Header(Kind.REVOKE, "", "a", "a"), b"")  # drained: revoked, nothing out
    d.on_frame(B1, Header(Kind.REVOKE, "", "a", "a"), b"")
    d.links[B1].out[1] = Parcel(Header(Kind.DATA, "r", "gw", "gw"), b"1", [], "a")  # revoked, still holding
    assert d.unsettled() == [A1, B1]


def test_a_restarted_controller_listens_on_while_a_task_names_one_it_has_not_heard() -> None:
    """After a controller that vanished without a word, a task finds the next one only
    once it sees its connection dead: a death declared, or a rewire made, before then
    would wrongly cut a live task out."""
    topo = _topology()
    beats = Beats(Adopt(key=b"k" * 32, curve=None, beat=0.0, redial=60.0))
    w = Wiring(topo)
    assert not beats.quiet(w)  # nobody named anybody yet
    _beat(beats, w, topo, HUB, holding=[A1])
    assert beats.quiet(w) and beats.awaited(w) == {A1} and beats.unseen_dead(w) == []
    _beat(beats, w, topo, A1, holding=[], links=LinksBody(links={HUB: "h"}, hub=HUB))
    assert not beats.quiet(w) and beats.unseen_dead(w) == []
