"""A bee whose call hangs: its `timeout` answers the caller and restarts the replica."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from conftest import wait_until

from bytewax_nb import RemoteError, TopologyError
from bytewax_nb.client import post
from bytewax_nb.model.spec import BeeSpec


def _serve(make_swarm: Any, fn: Any, *, gateway_timeout: float = 30, **bee: Any) -> Any:
    """A started swarm: gateway `in` -> the bee `fn` with these options."""
    swarm = make_swarm()
    swarm.gateway("in", timeout=gateway_timeout)
    swarm.bee(fn, input="in", **bee)
    return swarm.start()


def _pids(swarm: Any, bee: str) -> list[int]:
    return [r["pid"] for r in swarm.status(fresh=0)["bees"][bee]["replicas"]]


def _restarted(swarm: Any, bee: str, old: list[int]) -> None:
    def ready_again() -> bool:
        st = swarm.status()["bees"][bee]
        pids = [r["pid"] for r in st["replicas"]]
        return st["ready"] == len(old) and not set(pids) & set(old)

    wait_until(ready_again, what=f"{bee} restarted and ready")


def test_a_call_past_its_timeout_is_answered_and_its_replica_restarted(make_swarm: Any) -> None:
    def stuck(payload: Any) -> Any:
        if payload == "hang":
            time.sleep(3600)
        return payload

    swarm = _serve(make_swarm, stuck, timeout=0.5)
    before = _pids(swarm, "stuck")
    with pytest.raises(RemoteError) as err:
        swarm.request("in", "hang")  # well inside the gateway's 30 s: answered by the bee's watchdog
    e = err.value
    assert (e.bee, e.ename) == ("stuck", "BeeTimeout")
    assert "0.5 s" in e.evalue and e.request_id
    # the traceback is where the call was stuck, not the runner's loop
    assert "time.sleep(3600)" in e.traceback and "runner.py" not in e.traceback
    _restarted(swarm, "stuck", before)
    assert swarm.request("in", "ok") == "ok"
    wait_until(
        lambda: any("did not return within its timeout" in line for line in swarm.logs("stuck")),
        what="the reason in the bee's logs",
    )

    # over HTTP: a 500 with the bee, the type and the request id, like any bee error
    before = _pids(swarm, "stuck")
    status, body, rid = post(swarm.url("in"), "hang", timeout=30)
    assert status == 500 and body["type"] == "BeeTimeout" and body["bee"] == "stuck"
    assert body["request_id"] == rid
    _restarted(swarm, "stuck", before)
    assert swarm.request("in", 7) == 7


def test_a_busy_loop_is_cut_short_too(make_swarm: Any) -> None:
    def spin(payload: Any) -> Any:
        n = 0
        while payload == "forever":  # pure Python: the interpreter still lets the watchdog run
            n += 1
        return payload

    swarm = _serve(make_swarm, spin, timeout=0.5)
    with pytest.raises(RemoteError) as err:
        swarm.request("in", "forever")
    assert err.value.ename == "BeeTimeout" and ", in spin\n" in err.value.traceback
    wait_until(lambda: swarm.status()["bees"]["spin"]["ready"] == 1, what="spin ready again")
    assert swarm.request("in", "once") == "once"


def test_every_caller_of_a_stuck_batch_is_answered(make_swarm: Any) -> None:
    def batch(payloads: list[Any]) -> list[Any]:
        if "hang" in payloads:
            time.sleep(3600)
        return payloads

    # a batch is called only when full: all three requests are in the stuck call
    swarm = _serve(make_swarm, batch, batch_size=3, batch_timeout_ms=60_000, timeout=0.5)
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda p: post(swarm.url("in"), p, timeout=30), ["a", "hang", "b"]))
    assert [(status, body["type"]) for status, body, _ in answers] == [(500, "BeeTimeout")] * 3
    assert len({rid for _, _, rid in answers}) == 3


def nap(payload: Any) -> Any:
    if payload == "hang":
        print("stuck", flush=True)
        time.sleep(3600)
    return payload


def _stuck(swarm: Any, pool: ThreadPoolExecutor) -> Any:
    """Send the call that hangs; return once the bee is in it."""
    stuck = pool.submit(post, swarm.url("in"), "hang", timeout=30)
    wait_until(lambda: any("stuck" in line for line in swarm.logs("nap")), what="the bee in its stuck call")
    return stuck


def test_callers_queued_behind_a_stuck_call_go_to_a_free_replica(make_swarm: Any, tmp_path: Any) -> None:
    import os

    gate = tmp_path / "gate"
    gate.touch()

    def held(payload: Any) -> Any:
        if payload == "hang":
            print("stuck", flush=True)
            while os.path.exists(gate):  # until the test lets it go: no clock decides
                time.sleep(0.01)
        return payload

    swarm = _serve(make_swarm, held, gateway_timeout=60, timeout=None, replicas=2, name="nap")
    with ThreadPoolExecutor(12) as pool:
        stuck = _stuck(swarm, pool)
        queued = [pool.submit(post, swarm.url("in"), n, timeout=60) for n in range(10)]
        answers = [f.result() for f in queued]
        # the free replica took them all while the stuck call still held its replica
        assert not stuck.done()
        gate.unlink()
        assert stuck.result()[:2] == (200, "hang")
    assert [(status, body) for status, body, _ in answers] == [(200, n) for n in range(10)]


def test_callers_queued_behind_the_only_replica_wait_for_its_restart(make_swarm: Any) -> None:
    swarm = _serve(make_swarm, nap, gateway_timeout=20, timeout=2)
    before = _pids(swarm, "nap")
    with ThreadPoolExecutor(4) as pool:
        stuck = _stuck(swarm, pool)
        queued = [pool.submit(post, swarm.url("in"), n, timeout=30) for n in range(3)]
        answers = [f.result() for f in queued]
    assert stuck.result()[1]["type"] == "BeeTimeout"
    # handed back while the call hung, then served by the restarted replica
    assert [(status, body) for status, body, _ in answers] == [(200, n) for n in range(3)]
    assert not set(_pids(swarm, "nap")) & set(before)


def test_a_bee_without_timeout_keeps_its_slow_call(make_swarm: Any) -> None:
    def slow(payload: Any) -> Any:
        time.sleep(1.0)
        return payload

    swarm = make_swarm()
    swarm.gateway("in", timeout=30)
    swarm.bee(slow, input="in")
    swarm.bee(slow, input="in", name="slow_enough", timeout=5)
    swarm.start()
    before = _pids(swarm, "slow") + _pids(swarm, "slow_enough")
    assert swarm.request("in", "x") == "x"
    assert _pids(swarm, "slow") + _pids(swarm, "slow_enough") == before


@pytest.mark.parametrize("bad", [0, -1.0, float("nan")])
def test_timeout_must_be_positive(bad: float) -> None:
    with pytest.raises(TopologyError, match="timeout must be a positive"):
        BeeSpec("b", print, ("in",), timeout=bad)


def test_by_default_a_hung_call_is_answered_beetimeout_before_its_gateway_gives_up(make_swarm: Any) -> None:
    def hangs(payload: Any) -> Any:
        time.sleep(3600)

    swarm = _serve(make_swarm, hangs, gateway_timeout=3)  # the bee's timeout left as it is
    status, body, _ = post(swarm.url(), "x", timeout=10)
    # not the gateway's 504: the bee's own timeout (5/6 of its gateway's) answered first
    assert (status, body["type"], body["bee"]) == (500, "BeeTimeout", "hangs"), body
    assert "within its timeout of 2.5 s" in body["error"]


def test_the_auto_timeout_follows_the_longest_gateway_that_reaches_the_bee() -> None:
    from bytewax_nb.model.spec import GatewaySpec, Topology

    def f(p: Any) -> Any:
        return p

    top = Topology()
    top.add_gateway(GatewaySpec("fast", timeout=6))
    top.add_gateway(GatewaySpec("slow", timeout=120))
    top.add_bee(BeeSpec("a", f, ("fast",)))
    top.add_bee(BeeSpec("b", f, ("a", "slow")))
    top.add_bee(BeeSpec("c", f, ("b",), timeout=7))
    top.add_bee(BeeSpec("d", f, ("b",), timeout=None))
    assert [top.call_timeout(top.bees[n]) for n in "abcd"] == [5.0, 100.0, 7.0, None]
    with pytest.raises(TopologyError, match="seconds, 'auto' or None"):
        BeeSpec("e", f, ("fast",), timeout="soon")


@pytest.mark.slow
def test_a_bee_whose_every_replica_is_stuck_is_not_ready_and_callers_hear_why_at_once(
    make_swarm: Any, tmp_path: Any
) -> None:
    import json
    import os
    import urllib.error
    import urllib.request

    from bytewax_nb.model.table import status_table

    gate = tmp_path / "gate"
    gate.touch()

    def hangs(payload: Any) -> Any:
        while payload == "hang" and os.path.exists(gate):
            time.sleep(0.02)
        return payload

    swarm = _serve(make_swarm, hangs, gateway_timeout=60, timeout=None)  # no limit: stuck for good
    health = swarm.url().split("/gateways/")[0] + "/healthz"

    def healthz() -> tuple[int, dict[str, Any]]:
        try:
            with urllib.request.urlopen(health, timeout=5) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    assert healthz()[0] == 200
    with ThreadPoolExecutor(1) as pool:
        caller = pool.submit(post, swarm.url(), "hang", timeout=90)
        st = wait_until(
            lambda: (b := swarm.status()["bees"]["hangs"])["state"] == "stuck" and b,
            timeout=30,
            what="the bee said stuck",
        )
        (call,) = st["stuck"]
        assert call["replica"] == 0 and call["seconds"] >= 5 and "time.sleep(0.02)" in call["where"]
        code, body = healthz()
        assert code == 503 and body["not_ready"] == ["hangs"], body
        assert "stuck in a call" in body["why"]["hangs"] and call["request_id"] in body["why"]["hangs"]
        status, answer, _ = post(swarm.url(), "other", timeout=90)  # refused, not a 504 a minute later
        assert status == 503 and "stuck in a call" in answer["error"]
        assert f"stuck: hangs/0 in request {call['request_id']}" in status_table(swarm.status(), "process")
        gate.unlink()  # the call returns: the bee takes work again
        assert caller.result()[:2] == (200, "hang")
    wait_until(lambda: healthz()[0] == 200, what="healthy again")
    assert swarm.status()["bees"]["hangs"]["stuck"] == []
    assert post(swarm.url(), "after", timeout=10)[:2] == (200, "after")
