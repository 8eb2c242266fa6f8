"""Autoscaling: the rule (pure, below), then real swarms whose replicas follow a step
load, every request counted."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import Gate, Refuse, wait_until
from conftest import Load as Callers

from bytewax_nb.client import stream
from bytewax_nb.engine.autoscale import (
    LOW,
    STEP_DOWN_EVERY,
    UP_AFTER,
    Autoscaler,
    Load,
    target,
)
from bytewax_nb.model.spec import BeeSpec
from bytewax_nb.model.table import status_table


def _spec(**kw: Any) -> BeeSpec:
    kw.setdefault("max_replicas", 8)
    kw.setdefault("idle_s", 30.0)
    return BeeSpec.of("b", len, ("in",), kw)  # type: ignore[arg-type]


def _load(in_flight: int, wanted: int, handled: int = 0, p50_ms: float = 5.0) -> Load:
    return Load(in_flight=in_flight, handled=handled, ready=wanted, wanted=wanted, p50_ms=p50_ms)


def test_the_default_target_follows_the_bees_latency_and_its_batches() -> None:
    assert target(_spec(), 5.0) == 2  # a 5 ms call: one running, one ready
    assert target(_spec(), 1.0) == 10  # 10 calls of 1 ms wait about 10 ms
    assert target(_spec(), 0.05) == 32  # capped
    assert target(_spec(), 0.0) == 2  # not measured yet
    assert target(_spec(batch_size=4), 5.0) == 8  # whole batches
    assert target(_spec(target_in_flight=3.5), 0.1) == 3.5  # the user's


def test_a_load_above_target_scales_up_at_once_to_what_it_needs_within_the_limits() -> None:
    scaler = Autoscaler()
    spec = _spec(min_replicas=1, max_replicas=8)
    assert scaler.look(0.0, spec, _load(9, 1)) is None  # not for a single look
    up = scaler.look(UP_AFTER, spec, _load(9, 1))
    assert up is not None and (up.replicas, up.before) == (5, 1)  # ceil(9 / 2), not 2
    assert "9 in flight, above 2 per replica" in up.reason
    # at most max_replicas, and at most the runtime's cap (the machine's cores)
    capped = Autoscaler(cap=3)
    capped.look(0.0, spec, _load(100, 1))
    decision = capped.look(1.0, spec, _load(100, 1))
    assert decision is not None and decision.replicas == 3
    unlimited = Autoscaler()
    unlimited.look(0.0, spec, _load(100, 1))
    decision = unlimited.look(1.0, spec, _load(100, 1))
    assert decision is not None and decision.replicas == 8
    # a burst shorter than UP_AFTER changes nothing
    bursty = Autoscaler()
    for i in range(20):
        now = i * UP_AFTER * 0.75
        assert bursty.look(now, spec, _load(9 if i % 2 else 0, 1)) is None


def test_a_low_load_retires_one_replica_at_a_time_after_idle_s_and_never_flaps() -> None:
    scaler = Autoscaler()
    spec = _spec(min_replicas=1, max_replicas=8, idle_s=30.0)
    now = 0.0
    # 4 replicas carrying 1 in flight: low (1 <= LOW x 2 x 3), but not for idle_s yet
    while now < 30.0:
        assert scaler.look(now, spec, _load(1, 4)) is None
        now += 0.5
    down = scaler.look(now, spec, _load(1, 4))
    assert down is not None and (down.replicas, down.before) == (3, 4) and "low for 30 s" in down.reason
    # the next one only STEP_DOWN_EVERY later, while it stays low
    assert scaler.look(now + 0.5, spec, _load(1, 3)) is None
    later = scaler.look(now + STEP_DOWN_EVERY, spec, _load(1, 3))
    assert later is not None and later.replicas == 2
    # a load the rest could not carry at LOW x target keeps them: no flapping
    busy = Autoscaler()
    for i in range(200):
        assert busy.look(i * 0.5, spec, _load(int(LOW * 2 * 3) + 1, 4)) is None
    # nor does a steady load that one replica fewer could not carry, though little is
    # queued at any moment: 260 calls/s of 5 ms are 1.3 replicas' worth of work
    steady = Autoscaler()
    for i in range(200):
        assert steady.look(i * 0.5, spec, _load(1, 2, handled=130 * i)) is None, i
    # once it drops, the wait starts
    drop = [steady.look(100 + i * 0.5, spec, _load(0, 2, handled=130 * 200 + 10 * i)) for i in range(80)]
    first = next(i for i, d in enumerate(drop) if d is not None)
    assert drop[first] is not None and drop[first].replicas == 1 and first * 0.5 >= 30.0
    # and a spike restarts the wait
    spiky = Autoscaler()
    for i in range(120):
        in_flight = 5 if i == 50 else 0
        decision = spiky.look(i * 0.5, spec, _load(in_flight, 2))
        assert decision is None or i * 0.5 >= 25.0 + 30.0, i
    # never below min_replicas
    floor = Autoscaler()
    spec2 = _spec(min_replicas=2, max_replicas=8, idle_s=1.0)
    assert all(floor.look(i * 0.5, spec2, _load(0, 2)) is None for i in range(40))


def test_min_replicas_zero_stops_the_bee_when_idle_and_a_request_starts_it_at_once() -> None:
    scaler = Autoscaler()
    spec = _spec(min_replicas=0, max_replicas=4, idle_s=10.0)
    handled = 0
    for i in range(20):  # served for 10 s
        handled += 3
        assert scaler.look(i * 0.5, spec, _load(0, 1, handled)) is None
    now = 10.0
    while now < 19.5:  # then nothing for idle_s
        assert scaler.look(now, spec, _load(0, 1, handled)) is None
        now += 0.5
    zero = scaler.look(20.0, spec, _load(0, 1, handled))
    assert zero is not None and zero.replicas == 0 and zero.reason == "no request for 10 s"
    assert scaler.look(21.0, spec, _load(0, 0, handled)) is None
    cold = scaler.look(21.5, spec, _load(3, 0, handled))  # at once: callers wait
    assert cold is not None and (cold.replicas, cold.before) == (2, 0) and "none running" in cold.reason


def test_limits_are_restored_and_a_failed_change_is_not_retried_at_once() -> None:
    scaler = Autoscaler()
    spec = _spec(min_replicas=3, max_replicas=5)
    below = scaler.look(0.0, spec, _load(0, 1))
    assert below is not None and below.replicas == 3 and "minimum of 3" in below.reason
    above = scaler.look(0.0, spec, _load(0, 7))
    assert above is not None and above.replicas == 5
    scaler.failed("b", 1.0)
    assert scaler.look(2.0, spec, _load(0, 1)) is None
    assert scaler.look(12.0, spec, _load(0, 1)) is not None


# -- real swarms ----------------------------------------------------------------------


def _bee(swarm: Any, name: str, input: str, holder: Any = None, **options: Any) -> None:
    def work(p: Any) -> Any:
        assert holder is None or holder  # travels with the bee (a Gate, a Refuse)
        end = time.perf_counter() + 0.005  # about 5 ms of CPU a call
        while time.perf_counter() < end:
            pass
        return p

    swarm.bee(work, input=input, name=name, **options)


def _view(swarm: Any, bee: str) -> dict[str, Any]:
    return dict(swarm.status()["bees"][bee])


def test_a_step_load_scales_a_bee_up_then_back_down_and_every_request_is_answered(make_swarm: Any) -> None:
    swarm = make_swarm("autoscaled")
    swarm.gateway("in", timeout=30)
    _bee(swarm, "work", "in", max_replicas=2, idle_s=2.0)
    swarm.start()
    url = swarm.url("in")
    assert _view(swarm, "work")["wanted"] == 1
    with Callers(url, callers=8) as load:
        up = wait_until(
            lambda: _view(swarm, "work")["ready"] == 2 or None, timeout=30, what="a second replica"
        )
        assert up
        during = len(load.outcomes)
    after_load = len(load.outcomes)
    assert after_load > during and not load.failed(), load.failed()[:3]  # every request answered
    view = _view(swarm, "work")
    scale = view["autoscale"]
    assert (scale["min"], scale["max"]) == (1, 2) and scale["target"] == 2.0
    assert "in flight, above 2 per replica" in scale["reason"]
    assert any("autoscale: 1 -> 2 replicas" in line for line in swarm.logs("work"))
    table = status_table(swarm.status(), "process")
    assert "autoscaled work: 1..2 replicas, wants 2" in table and "last: " in table
    metrics = urllib.request.urlopen(url.rsplit("/gateways/", 1)[0] + "/metrics", timeout=5).read().decode()
    assert 'bytewax_nb_bee_replicas_desired{bee="work"}' in metrics
    assert "bytewax_nb_bee_autoscale_decision_timestamp_seconds{" in metrics
    # the load gone: back to one replica after idle_s, drained, and it still answers
    wait_until(lambda: _view(swarm, "work")["wanted"] == 1, timeout=30, what="scaled back down")
    wait_until(
        lambda: len(_view(swarm, "work")["replicas"]) == 1, timeout=30, what="the surplus replica gone"
    )
    assert "low for" in _view(swarm, "work")["autoscale"]["reason"]
    assert swarm.request("in", {"n": 1}) == {"n": 1}


def test_a_change_the_autoscaler_cannot_make_is_undone_and_the_status_says_so(
    make_swarm: Any, tmp_path: Path
) -> None:
    broken = str(tmp_path / "broken")
    swarm = make_swarm("autofail")
    swarm.gateway("in", timeout=30)
    _bee(swarm, "work", "in", holder=Refuse(broken), min_replicas=1, max_replicas=2, idle_s=60.0)
    swarm.start()
    Path(broken).touch()  # from now on a new replica fails as it loads the bee
    with Callers(swarm.url("in"), callers=8) as load:
        wait_until(
            lambda: "could not go to 2" in _view(swarm, "work")["autoscale"]["reason"],
            timeout=30,
            what="the failed change said",
        )
    assert not load.failed(), load.failed()[:3]  # the running replica answered every request
    view = _view(swarm, "work")
    # undone: it wants, and runs, what it ran before; not the target it could not reach
    assert (view["wanted"], view["ready"], view["autoscale"]["desired"]) == (1, 1, 1)
    assert any("autoscale: could not go to 2" in line for line in swarm.logs("work"))


def test_a_fused_chain_scales_as_one_group(make_swarm: Any) -> None:
    swarm = make_swarm("autofused")
    swarm.gateway("in", timeout=30)
    _bee(swarm, "a", "in", max_replicas=2, idle_s=60.0)
    _bee(swarm, "b", "a", max_replicas=2, idle_s=60.0)
    swarm.start()
    assert _view(swarm, "a")["group"] == ["a", "b"]
    with Callers(swarm.url("in"), callers=8) as load:
        wait_until(lambda: _view(swarm, "a")["ready"] == 2, timeout=30, what="the group scaled")
    assert not load.failed(), load.failed()[:3]
    bees = swarm.status()["bees"]
    assert bees["a"]["group"] == bees["b"]["group"] == ["a", "b"]  # still one group
    assert bees["a"]["ready"] == bees["b"]["ready"] == 2
    assert bees["b"]["autoscale"]["desired"] == 2


def test_a_bee_scaled_to_zero_is_started_by_the_next_request(make_swarm: Any) -> None:
    swarm = make_swarm("autozero")
    swarm.gateway("in", timeout=30)
    _bee(swarm, "work", "in", min_replicas=0, max_replicas=2, idle_s=1.0)
    swarm.start()
    assert swarm.request("in", {"n": 1}) == {"n": 1}
    stopped = {"state": "idle", "replicas": []}
    wait_until(
        lambda: {k: _view(swarm, "work")[k] for k in stopped} == stopped, timeout=30, what="stopped when idle"
    )
    view = _view(swarm, "work")
    assert (view["wanted"], view["ready"], view["replicas"]) == (0, 0, [])
    health = urllib.request.urlopen(swarm.url("in").rsplit("/gateways/", 1)[0] + "/healthz", timeout=5)
    assert health.status == 200  # an idle bee serves: a request starts it
    t = time.perf_counter()
    assert swarm.request("in", {"n": 2}) == {"n": 2}
    first_answer = time.perf_counter() - t
    cold = wait_until(
        lambda: _view(swarm, "work")["autoscale"]["cold_start_s"], what="the cold start measured"
    )
    assert 0 < cold <= first_answer + 0.5  # from the decision to a replica serving
    scale = _view(swarm, "work")["autoscale"]
    assert "waiting, none running" in scale["reason"]
    lines = swarm.logs("work")
    assert any("autoscale: 1 -> 0 replicas: no request for 1 s" in line for line in lines)
    assert any("cold start took" in line for line in lines)


def test_a_cold_start_slower_than_the_gateways_timeout_answers_503_with_retry_after(
    make_swarm: Any, tmp_path: Path
) -> None:
    gate = str(tmp_path / "gate")
    holder = Gate(gate)
    swarm = make_swarm("autocold")
    swarm.gateway("in", timeout=1.0)

    @swarm.bee(input="in", min_replicas=0, max_replicas=1, idle_s=0.5)
    def echo(payload: Any) -> Any:
        assert holder is not None
        return payload

    swarm.start()
    wait_until(lambda: _view(swarm, "echo")["replicas"] == [], timeout=30, what="stopped when idle")
    Path(gate).touch()  # the next replica hangs while loading its configuration
    req = urllib.request.Request(swarm.url("in"), data=b"1", headers={"Content-Type": "application/json"})
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(req, timeout=10)
    assert refused.value.code == 503 and refused.value.headers["Retry-After"] == "1"
    assert "autoscaled to zero" in json.loads(refused.value.read())["error"]
    Path(gate).unlink()  # it starts now: the next caller is answered
    wait_until(lambda: _view(swarm, "echo")["ready"] == 1, timeout=30, what="the replica serving")
    assert swarm.request("in", 2) == 2


def test_a_batching_bee_scales_on_what_it_holds_and_every_request_is_answered(make_swarm: Any) -> None:
    swarm = make_swarm("autobatch")
    swarm.gateway("in", timeout=30)

    @swarm.bee(input="in", batch_size=4, batch_timeout_ms=2, max_replicas=2, idle_s=60.0)
    def batch(payloads: list[Any]) -> list[Any]:
        end = time.process_time() + 0.004 * len(payloads)
        while time.process_time() < end:
            pass
        return payloads

    swarm.start()
    assert _view(swarm, "batch")["autoscale"]["target"] >= 8  # whole batches
    with Callers(swarm.url("in"), callers=24) as load:
        wait_until(lambda: _view(swarm, "batch")["ready"] == 2, timeout=30, what="a second replica")
    assert not load.failed(), load.failed()[:3]
    assert [o[2] for o in load.outcomes[:50]] == [o[3] for o in load.outcomes[:50]]  # each its own answer


def test_a_streaming_bee_scales_on_the_streams_under_way_and_every_stream_ends(make_swarm: Any) -> None:
    swarm = make_swarm("autostream")
    swarm.gateway("prompt", timeout=30)

    @swarm.bee(input="prompt", max_replicas=2, idle_s=60.0)
    def generate(payload: dict[str, Any]) -> Any:
        for i in range(payload["n"]):
            end = time.process_time() + 0.002
            while time.process_time() < end:
                pass
            yield {"token": i}

    swarm.start()
    url = swarm.url("prompt")
    done: list[int] = []
    errors: list[BaseException] = []

    def caller() -> None:
        while len(done) < 400 and not errors:
            try:
                chunks = list(stream(url, {"n": 20}, timeout=30))
            except BaseException as exc:  # noqa: BLE001 - counted, and the test fails on it
                errors.append(exc)
                return
            done.append(len(chunks))

    with ThreadPoolExecutor(8) as pool:
        for _ in range(8):
            pool.submit(caller)
        wait_until(lambda: _view(swarm, "generate")["ready"] == 2 or errors, timeout=30, what="scaled up")
    assert not errors, errors[:3]
    assert done and set(done) == {20}  # every stream ended with all its chunks
    assert "in flight" in _view(swarm, "generate")["autoscale"]["reason"]
