"""Fused chains: consecutive bees in one process, with everything a user sees per bee.

The plan is pure and tested as such; the rest runs real replica processes: answers,
figures, logs, errors, timeouts, crashes, and live changes that regroup under load.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Any

import numpy as np
import pytest
from conftest import Load, wait_until

from bytewax_nb import RemoteError, Swarm
from bytewax_nb.engine.changes import replan, unplan
from bytewax_nb.engine.wiring import Member, Wiring
from bytewax_nb.model.fusion import groups, handoff, plan
from bytewax_nb.model.protocol import MemberState
from bytewax_nb.model.spec import BeeSpec, GatewaySpec, Topology
from bytewax_nb.model.table import status_table
from bytewax_nb.runtime.images import requirements_for


def _same(p: Any) -> Any:
    return p


def _graph(*bees: BeeSpec) -> Topology:
    return Topology({"in": GatewaySpec("in")}, {b.name: b for b in bees})


def _bee(name: str, *inputs: str, **kw: Any) -> BeeSpec:
    return BeeSpec(name, _same, inputs, **kw)


# -- the plan ---------------------------------------------------------------------------


def test_a_chain_with_the_same_settings_is_one_group_named_after_its_last_bee() -> None:
    g = _graph(_bee("a", "in"), _bee("b", "a"), _bee("c", "b"))
    assert groups(g) == [["a", "b", "c"]]
    units = plan(g)
    assert list(units.bees) == ["a"]
    (unit,) = units.bees.values()
    assert unit.inputs == ("in",) and [s.name for s in unit.stages] == ["a", "b", "c"]
    assert units.gateways is g.gateways  # a gateway added later is in both
    assert groups(g, enabled=False) == [["a"], ["b"], ["c"]]


@pytest.mark.parametrize(
    ("bees", "expected"),
    [
        # a producer read by two bees: each gets its own copy over a link
        ([_bee("a", "in"), _bee("b", "a"), _bee("c", "a")], [["a"], ["b"], ["c"]]),
        # a bee with two inputs (a join, or not) reads over links
        ([_bee("a", "in"), _bee("b", "a", "in")], [["a"], ["b"]]),
        ([_bee("a", "in"), _bee("x", "in"), _bee("j", "a", "x", join=True)], [["a"], ["x"], ["j"]]),
        # a batch collects messages across calls: it starts a group, never continues one
        ([_bee("a", "in"), _bee("b", "a", batch_size=8)], [["a"], ["b"]]),
        ([_bee("a", "in", batch_size=8), _bee("b", "a")], [["a", "b"]]),
        # other runtime settings, other processes
        ([_bee("a", "in"), _bee("b", "a", replicas=2)], [["a"], ["b"]]),
        ([_bee("a", "in"), _bee("b", "a", requirements=("numpy",))], [["a"], ["b"]]),
        ([_bee("a", "in"), _bee("b", "a", env={"K": "1"})], [["a"], ["b"]]),
        ([_bee("a", "in"), _bee("b", "a", timeout=5.0)], [["a"], ["b"]]),
        # asked to stay apart
        ([_bee("a", "in"), _bee("b", "a", fuse=False), _bee("c", "b")], [["a"], ["b"], ["c"]]),
    ],
)
def test_what_keeps_bees_in_processes_of_their_own(bees: list[BeeSpec], expected: list[list[str]]) -> None:
    assert sorted(groups(_graph(*bees))) == sorted(expected)


def test_a_regroup_redeploys_the_groups_it_changes_and_only_those() -> None:
    user = _graph(_bee("a", "in"), _bee("b", "a"), _bee("other", "in"))
    units = plan(user)
    w = Wiring(units, user)
    w.want()
    for name in units.bees:
        w.add(
            Member(
                f"bee:{name}:0:1",
                "bee",
                name,
                0,
                state=MemberState.UP,
                group=("a", "b") if name == "a" else (),
            )
        )
    before = dict(units.bees)
    scaled = plan(_graph(_bee("a", "in"), _bee("b", "a", replicas=2), _bee("other", "in")))
    assert replan(units, w, scaled.bees) == []
    assert sorted(units.bees) == ["a", "b", "other"]
    assert w.members["bee:a:0:1"].retiring  # the old group serves until the new processes do
    assert not w.members["bee:other:0:1"].retiring
    assert ("bee", "b", 1) in w.slots and ("bee", "a", 0) in w.slots
    # undone: the old group is back, as it was
    unplan(units, w, before, scaled.bees)
    assert list(units.bees) == list(before) and not w.members["bee:a:0:1"].retiring
    # a scale of a bee alone is a scale, not a redeploy
    more = dataclasses.replace(units.bees["other"], replicas=3)
    replan(units, w, {**units.bees, "other": more})
    assert not w.members["bee:other:0:1"].retiring and ("bee", "other", 2) in w.slots


def _total(p: Any) -> float:
    return float(np.sum(p))


def test_a_fused_groups_image_holds_what_each_of_its_bees_imports() -> None:
    (unit,) = plan(_graph(_bee("a", "in"), BeeSpec("b", _total, ("a",)))).bees.values()
    assert unit.stages and unit.fn is _same  # the group runs as its first bee...
    assert any(r.startswith("numpy==") for r in requirements_for(unit))  # ...with b's needs


def test_a_handed_on_value_is_a_copy_unless_it_cannot_change() -> None:
    value = {"xs": [1, 2], "t": (1, "a")}
    copy = handoff(value)
    assert copy == value and copy is not value and copy["xs"] is not value["xs"]
    text = "unchanged"
    assert handoff(text) is text and handoff(7) == 7
    flat = {"name": "Bee", "n": 1}  # a flat record: a shallow copy is a full one
    assert handoff(flat) == flat and handoff(flat) is not flat
    assert handoff([1, "a"]) == [1, "a"]


# -- running ----------------------------------------------------------------------------


def _chain(make_swarm: Any, name: str = "fz", **kw: Any) -> Swarm:
    swarm: Swarm = make_swarm(name, **kw)
    swarm.gateway("in", timeout=10)

    @swarm.bee(input="in")
    def pre(p: dict[str, Any]) -> dict[str, Any]:
        print("pre got", p["n"])
        return {**p, "pre": os.getpid()}

    @swarm.bee(input="pre", timeout=2.0)
    def model(p: dict[str, Any]) -> dict[str, Any]:
        print("model got", p["n"])
        if p.get("fail"):
            raise ValueError(f"model cannot take {p['n']}")
        if p.get("hang"):
            time.sleep(60)
        if p.get("die"):
            os._exit(3)
        return {**p, "model": os.getpid()}

    @swarm.bee(input="model", timeout=2.0)
    def post(p: dict[str, Any]) -> dict[str, Any]:
        return {**p, "post": os.getpid()}

    return swarm


def test_a_fused_chain_runs_in_one_process_and_reports_per_bee(make_swarm: Any) -> None:
    # pre's timeout (the default) differs from the others': pre alone, model+post fused
    swarm = _chain(make_swarm).start()
    bees = swarm.status()["bees"]
    assert bees["model"]["group"] == bees["post"]["group"] == ["model", "post"] and bees["pre"]["group"] == []
    answer = swarm.request("in", {"n": 1})
    assert answer["model"] == answer["post"] != answer["pre"]  # model and post: one process
    with pytest.raises(RemoteError) as err:
        swarm.request("in", {"n": 2, "fail": True})
    assert err.value.bee == "model" and "model cannot take 2" in str(err.value)
    assert 'raise ValueError(f"model cannot take' in err.value.traceback
    bees = swarm.status()["bees"]
    assert [(bees[b]["handled"], bees[b]["errors"]) for b in ("pre", "model", "post")] == [
        (2, 0),
        (1, 1),
        (1, 0),
    ]
    assert bees["model"]["last_error"]["type"] == "ValueError" and bees["post"]["last_error"] is None
    assert bees["model"]["p50_ms"] > 0 and bees["post"]["p50_ms"] > 0
    assert [r["pid"] for r in bees["model"]["replicas"]] == [r["pid"] for r in bees["post"]["replicas"]]
    # each bee's prints are its own, though model and post share stdout
    wait_until(lambda: len(swarm.logs("model")) >= 2, what="model's lines")
    assert [line.split("] ", 1)[1] for line in swarm.logs("model")][:2] == ["model got 1", "model got 2"]
    assert any("model cannot take 2" in line for line in swarm.logs("model"))
    assert not any("model got" in line for line in swarm.logs("post") + swarm.logs("pre"))
    assert "fused (one process per replica): model -> post" in status_table(swarm.status(), "process")


def test_fusion_can_be_turned_off_for_a_bee_or_the_swarm(make_swarm: Any) -> None:
    def pids(swarm: Swarm) -> set[int]:
        return {r["pid"] for b in swarm.status()["bees"].values() for r in b["replicas"]}

    off = make_swarm("off", fuse=False)
    off.gateway("in")
    off.bee(_same, input="in", name="a")
    off.bee(_same, input="a", name="b")
    off.start()
    assert len(pids(off)) == 2 and off.request("in", 5) == 5
    apart = make_swarm("apart")
    apart.gateway("in")
    apart.bee(_same, input="in", name="a")
    apart.bee(_same, input="a", name="b", fuse=False)
    apart.start()
    assert len(pids(apart)) == 2 and apart.status()["bees"]["b"]["group"] == []


def test_no_bee_sees_a_change_another_makes_after_handing_a_value_on(make_swarm: Any) -> None:
    swarm = make_swarm()
    swarm.gateway("in")
    kept: list[Any] = []  # the producer's own reference, in its process

    @swarm.bee(input="in")
    def keeper(p: int) -> dict[str, Any]:
        for old in kept:  # changes what it handed on before
            old["n"] = -1
            old["seen"].append("changed later")
        value = {"n": p, "seen": []}
        kept.append(value)
        return value

    got: list[Any] = []

    @swarm.bee(input="keeper")
    def reader(p: dict[str, Any]) -> list[Any]:
        got.append(p)
        p["seen"].append("reader")  # and the producer must not see this either
        return [dict(g, seen=list(g["seen"])) for g in got]

    swarm.start()
    assert swarm.status()["bees"]["reader"]["group"] == ["keeper", "reader"]
    swarm.request("in", 1)
    answer = swarm.request("in", 2)
    assert answer == [{"n": 1, "seen": ["reader"]}, {"n": 2, "seen": ["reader"]}]


def test_a_fused_bee_past_its_timeout_answers_its_callers_and_its_group_restarts(make_swarm: Any) -> None:
    swarm = _chain(make_swarm).start()
    with pytest.raises(RemoteError) as err:
        swarm.request("in", {"n": 1, "hang": True})
    assert err.value.bee == "model" and err.value.ename == "BeeTimeout"
    wait_until(lambda: swarm.status()["bees"]["post"]["ready"] == 1, what="the group restarted")
    assert swarm.request("in", {"n": 2})["n"] == 2


def test_a_crash_in_a_fused_group_answers_its_callers_and_the_group_restarts(make_swarm: Any) -> None:
    swarm = _chain(make_swarm).start()
    with pytest.raises(RemoteError) as err:
        swarm.request("in", {"n": 1, "die": True}, timeout=10)  # sent again once, dies again
    assert err.value.ename == "ReplicaDied"
    assert "bees 'model', 'post' (fused: one process) exited with code 3" in str(err.value)
    wait_until(lambda: swarm.status()["bees"]["post"]["ready"] == 1, what="the group restarted")
    assert swarm.request("in", {"n": 2})["n"] == 2
    bees = swarm.status()["bees"]
    assert bees["model"]["deaths"] == bees["post"]["deaths"] == 2 and bees["pre"]["deaths"] == 0


# -- live changes under load: every request answered ----------------------------------


def _tag(tag: str) -> Any:
    def tagged(p: Any) -> Any:
        return {"n": p, "tag": tag} if not isinstance(p, dict) else {**p, "tag": tag}

    return tagged


@pytest.mark.slow
@pytest.mark.parametrize("change", ["redeploy a member", "scale a member", "connect", "disconnect"])
def test_regrouping_under_load_loses_no_request(make_swarm: Any, change: str) -> None:
    swarm = make_swarm()
    swarm.gateway("in")
    swarm.bee(lambda p: {"n": p}, input="in", name="a")
    swarm.bee(_tag("v1"), input="a", name="b")
    swarm.bee(_same, input="b", name="c")
    if change == "disconnect":  # start split: c also listens to the gateway
        swarm.connect("in", "c")
    swarm.start()
    grouped = swarm.status()["bees"]["b"]["group"]
    assert grouped == (["a", "b"] if change == "disconnect" else ["a", "b", "c"])
    with Load(swarm.url()) as load:
        if change == "redeploy a member":
            swarm.bee(_tag("v2"), input="a", name="b")
        elif change == "scale a member":
            swarm.scale("b", 2)
        elif change == "connect":
            swarm.connect("in", "c")  # c leaves the group: two inputs
        else:
            swarm.disconnect("in", "c")  # c joins the group again
        mark = time.monotonic()
        wait_until(lambda: len(load.sent_after(mark)) > 50, what="load after the change")
        if change == "scale a member":
            swarm.scale("b", 1)  # and back: one group again
            mark = time.monotonic()
            wait_until(lambda: len(load.sent_after(mark)) > 50, what="load after scaling back")
    assert load.failed() == [], f"requests failed during '{change}'"
    # c answers whichever of its inputs comes first: the gateway's number, or b's record
    assert all((body["n"] if isinstance(body, dict) else body) == n for _, _, body, n in load.outcomes)
    after = swarm.status()["bees"]
    if change == "redeploy a member":
        assert all(body["tag"] == "v2" for _, _, body, _ in load.sent_after(mark))
    expected = {
        "redeploy a member": ["a", "b", "c"],
        "scale a member": ["a", "b", "c"],
        "connect": ["a", "b"],
        "disconnect": ["a", "b", "c"],
    }[change]
    assert after["b"]["group"] == expected
    assert sum(after[b]["handled"] for b in ("c",)) >= len(load.outcomes)  # counted across regroups
