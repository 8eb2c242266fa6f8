"""Replicas that die, bees that are removed: every caller gets an answer at once."""

from __future__ import annotations

import os
import signal
import threading
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import Load, wait_until

from bytewax_nb import RemoteError, TopologyError
from bytewax_nb.client import post


def _pid_of_replica_with(swarm: Any, bee: str, marker: Path) -> int:
    """The pid a bee wrote into `marker` from inside its call."""
    wait_until(lambda: marker.exists() and marker.read_text(), what="the bee inside its call")
    return int(marker.read_text())


def _holder(marker: str) -> Any:
    def hold(payload: Any) -> Any:
        if payload == "hold":
            with open(marker, "w") as f:
                f.write(str(os.getpid()))
            threading.Event().wait(30)
        return payload

    return hold


@pytest.mark.slow
def test_a_message_whose_replica_died_is_answered_by_another_at_once(make_swarm: Any, tmp_path: Path) -> None:
    marker = tmp_path / "pid"
    swarm = make_swarm()
    swarm.gateway("in", timeout=20)
    swarm.bee(_holder(str(marker)), input="in", name="hold", replicas=2)
    swarm.start()
    with ThreadPoolExecutor(1) as pool:
        caller = pool.submit(post, swarm.url(), "hold", timeout=30)
        pid = _pid_of_replica_with(swarm, "hold", marker)
        marker.unlink()
        os.kill(pid, signal.SIGKILL)  # the message goes to the other replica, which holds too
        second = _pid_of_replica_with(swarm, "hold", marker)
        assert second != pid
        os.kill(second, signal.SIGKILL)  # retried once already: now its caller hears why
        status, body, _ = caller.result()
    assert status == 500 and body["type"] == "ReplicaDied" and body["bee"] == "hold"
    assert "killed by SIGKILL while handling this request (sent 2 times; not sent again)" in body["error"]
    st = swarm.status()["bees"]["hold"]
    assert st["deaths"] == 2 and st["retried"] == 1
    assert st["last_error"]["type"] == "ReplicaDied"
    url = swarm.url().replace("/gateways/in", "/metrics")
    wait_until(
        lambda: 'bytewax_nb_bee_retried_total{bee="hold"} 1.0' in urllib.request.urlopen(url).read().decode(),
        what="the retry in /metrics",
    )
    shown = urllib.request.urlopen(url).read().decode()
    assert 'bytewax_nb_bee_replica_deaths_total{bee="hold"} 2.0' in shown
    wait_until(lambda: swarm.status()["bees"]["hold"]["ready"] == 2, what="both replicas back")
    assert swarm.request("in", 5) == 5


@pytest.mark.slow
def test_a_bee_without_retries_answers_its_caller_how_the_replica_died(make_swarm: Any) -> None:
    swarm = make_swarm()
    swarm.gateway("in", timeout=20)

    @swarm.bee(input="in", retries=0)
    def charge(payload: Any) -> Any:
        if payload == "crash":
            print("about to exit", flush=True)
            os._exit(3)
        return payload

    swarm.start()
    with pytest.raises(RemoteError) as info:  # at once, not after the gateway's 20 s
        swarm.request("in", "crash", timeout=15)
    err = info.value
    assert (err.bee, err.ename) == ("charge", "ReplicaDied")
    assert "replica 0 of bee 'charge' exited with code 3 while handling this request" in err.evalue
    assert "about to exit" in err.traceback  # its last log lines
    st = swarm.status()["bees"]["charge"]
    assert st["deaths"] == 1 and st["last_error"]["message"] == "replica 0 of bee 'charge' exited with code 3"
    wait_until(lambda: swarm.status()["bees"]["charge"]["ready"] == 1, what="the replica back")
    assert swarm.request("in", 1) == 1


def test_retries_must_be_a_count() -> None:
    from bytewax_nb.spec import BeeSpec

    with pytest.raises(TopologyError, match="retries must be an integer >= 0"):
        BeeSpec("b", print, ("in",), retries=-1)


@pytest.mark.slow
def test_removing_a_bee_under_load_costs_the_others_nothing(make_swarm: Any) -> None:
    swarm = make_swarm()
    swarm.gateway("in")
    swarm.gateway("side")
    swarm.bee(lambda p: p, input="in", name="main", replicas=2)
    swarm.bee(lambda p: p, input="side", name="extra")
    swarm.bee(lambda p: p, input="extra", name="tail")
    swarm.start()
    with pytest.raises(TopologyError, match="'tail' listen to it"):
        swarm.remove("extra")
    with Load(swarm.url("in")) as load:
        swarm.remove("tail")  # extra answers by itself again
        assert swarm.request("side", 3) == 3
        swarm.remove("extra")
        before = len(load.outcomes)
        wait_until(lambda: len(load.outcomes) > before + 50, what="load after the removals")
    assert load.failed() == []
    assert sorted(swarm.topology.bees) == ["main"] and sorted(swarm.status()["bees"]) == ["main"]
    status, body, _ = post(swarm.url("side"), 1, timeout=5)
    assert status == 503 and "no bee listens to gateway 'side'" in body["error"]
    wait_until(lambda: len(swarm.status()["bees"]) == 1 and not _extra_alive(swarm), what="replicas gone")


def _extra_alive(swarm: Any) -> bool:
    return any(m.name in ("extra", "tail") for m in swarm._supervisor.wiring.members.values())
