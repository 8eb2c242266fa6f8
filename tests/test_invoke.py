"""Bee signatures, DevSwarm and the in-process DAG (no sockets)."""

from __future__ import annotations

from typing import Any

import pytest

from bytewax_nb import DevSwarm, RemoteError, Swarm, TopologyError
from bytewax_nb.model.hints import call_style


def test_call_style_counts_required_positionals() -> None:
    model = object()

    def one(payload: Any) -> Any: ...
    def one_with_default(payload: Any, m: Any = model) -> Any: ...
    def two(payload: Any, ctx: Any) -> Any: ...
    def legacy(swarm: Any, payload: Any, context: Any) -> Any: ...

    assert [call_style(f) for f in (one, one_with_default, two, legacy)] == [1, 1, 2, 3]


def test_devswarm_is_a_ctx_and_records() -> None:
    def goodbye(payload: dict[str, str], ctx: Any) -> None:
        ctx.respond(f"goodbye {payload['name']}")

    def hello(payload: dict[str, str]) -> dict[str, str]:
        return payload

    def legacy(swarm: Any, payload: int, context: Any) -> None:
        swarm.publish(payload + 1, context)
        swarm.respond(payload * 2, context)

    dev = DevSwarm()
    goodbye({"name": "Bee"}, dev)
    assert dev.responded == ["goodbye Bee"]
    assert dev.run(hello, {"name": "Bee"}) == {"name": "Bee"}
    assert dev.published == [{"name": "Bee"}]
    dev.run(legacy, 3)
    assert dev.published[-1] == 4 and dev.responded[-1] == 6


def _hello_swarm() -> Swarm:
    swarm = Swarm("hello-world", runtime="process")
    swarm.gateway("hello-world")

    @swarm.bee(input="hello-world")
    def hello(payload: dict[str, str]) -> dict[str, str]:
        return payload

    @swarm.bee(input="hello")
    def goodbye(payload: dict[str, str], ctx: Any) -> None:
        ctx.respond(f"goodbye {payload['name']}")

    return swarm


def test_swarm_test_runs_the_dag_in_process() -> None:
    assert _hello_swarm().test("hello-world", {"name": "Bee"}) == "goodbye Bee"


def test_bee_decorator_returns_the_function_unchanged() -> None:
    swarm = Swarm("s", runtime="process")
    swarm.gateway("g")

    def f(p: int) -> int:
        return p + 1

    assert swarm.bee(input="g")(f) is f
    assert f(1) == 2


def test_swarm_test_join_and_fan_out() -> None:
    swarm = Swarm("ens", runtime="process")
    swarm.gateway("in")
    swarm.bee(lambda p: p["x"] * 2, input="in", name="double")
    swarm.bee(lambda p: p["x"] + 1, input="in", name="inc")
    swarm.bee(lambda p: p, input=["double", "inc"], join=True, name="both")
    assert swarm.test("in", {"x": 5}) == {"double": 10, "inc": 6}


def test_swarm_test_raises_remote_error() -> None:
    swarm = Swarm("err", runtime="process")
    swarm.gateway("in")

    @swarm.bee(input="in")
    def boom(p: dict[str, Any]) -> Any:
        return p["missing"]

    with pytest.raises(RemoteError) as info:
        swarm.test("in", {})
    assert info.value.bee == "boom" and info.value.ename == "KeyError"
    assert 'p["missing"]' in info.value.traceback


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda s: s.bee(lambda p: p, input="nowhere", name="b"), "neither a gateway nor a bee"),
        (
            lambda s: (s.bee(lambda p: p, input="b2", name="b1"), s.bee(lambda p: p, input="b1", name="b2")),
            "cycle",
        ),
        (lambda s: s.bee(lambda p: p, input="g", name="g"), "already used"),
        (lambda s: s.bee(lambda p: p, input="g", join=True, name="j"), "at least two inputs"),
        (lambda s: s.bee(lambda p: p, input="g", name="bad name"), "invalid bee name"),
        (lambda s: s.bee(lambda p: p, input="g", replicas=0, name="r"), "replicas"),
    ],
)
def test_invalid_topologies_are_refused_clearly(build: Any, message: str) -> None:
    swarm = Swarm("bad", runtime="process")
    swarm.gateway("g")
    with pytest.raises(TopologyError, match=message):
        build(swarm)
        swarm.topology.validate()
