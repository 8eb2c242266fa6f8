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
    from bytewax_nb.model.spec import BeeSpec

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
    return any(m.name in ("extra", "tail") for m in swarm._supervisor.book.wiring.members.values())


def test_the_journal_keeps_submits_until_taken_and_across_a_reopen(tmp_path: Path) -> None:
    from bytewax_nb.gateway.journal import Journal

    journal = Journal(tmp_path / "j" / "journal.sqlite")
    journal.add("r1", "in", b'{"a": 1}', 2.0)
    journal.add("r2", "in", b"2", 1.0)
    journal.taken("r1")
    journal.close()
    again = Journal(tmp_path / "j" / "journal.sqlite")  # what a restarted hub opens
    assert again.pending() == [("r2", "in", b"2", 1.0)] and len(again) == 1
    again.close()


def _recorder(out: str, gate: str = "") -> Any:
    def record(payload: Any, ctx: Any) -> None:
        while gate and os.path.exists(gate):
            threading.Event().wait(0.01)
        with open(out, "a") as f:
            f.write(f"{ctx.request_id}\n")

    return record


def _processed(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@pytest.mark.slow
def test_accepted_submits_are_processed_despite_killed_replicas(make_swarm: Any, tmp_path: Path) -> None:
    out = tmp_path / "seen"
    swarm = make_swarm()
    swarm.gateway("in")
    swarm.bee(_recorder(str(out)), input="in", name="record", replicas=2)
    swarm.start()
    accepted: list[str] = []
    kills = 0
    for i in range(300):
        accepted.append(swarm.submit("in", i))
        if i in (100, 200):  # a replica dies under the stream of submits
            pid = swarm.status(fresh=0)["bees"]["record"]["replicas"][0]["pid"]
            os.kill(pid, signal.SIGKILL)
            kills += 1
        threading.Event().wait(0.005)
    wait_until(lambda: set(_processed(out)) >= set(accepted), timeout=30, what="every submit processed")
    seen = _processed(out)
    twice = len(seen) - len(set(seen))
    assert set(seen) == set(accepted)
    assert twice <= 2 * kills, f"{twice} submits ran twice"  # only what a dying replica had in hand


@pytest.mark.slow
def test_accepted_submits_survive_the_hub(make_swarm: Any, tmp_path: Path) -> None:
    out, gate = tmp_path / "seen", tmp_path / "gate"
    gate.touch()
    swarm = make_swarm()
    swarm.gateway("in")
    swarm.bee(_recorder(str(out), str(gate)), input="in", name="record")
    swarm.start()
    accepted = [swarm.submit("in", i) for i in range(20)]  # one in the held call, the rest waiting
    hub = swarm.status(fresh=0)["hub"]["pid"]
    os.kill(hub, signal.SIGKILL)
    wait_until(
        lambda: swarm.status(fresh=0)["hub"]["pid"] not in (None, hub) and swarm.status()["ready"],
        what="a new hub",
    )
    gate.unlink()
    wait_until(lambda: set(_processed(out)) >= set(accepted), timeout=30, what="every submit processed")
    assert swarm.status()["hub"]["restarts"] == 1
    url = swarm.url().replace("/gateways/in", "/metrics")
    assert "bytewax_nb_hub_restarts_total 1.0" in urllib.request.urlopen(url).read().decode()


@pytest.mark.slow
def test_stopping_with_untaken_submits_says_how_many(
    make_swarm: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gate = tmp_path / "gate"
    gate.touch()
    swarm = make_swarm()
    swarm.gateway("in")
    swarm.bee(_recorder(str(tmp_path / "seen"), str(gate)), input="in", name="record")
    swarm.start()
    for i in range(5):
        swarm.submit("in", i)
    swarm.stop(drain_timeout=0.5)
    assert "stopped with 5 accepted submit(s) that no bee had taken yet" in capsys.readouterr().err


def test_a_bee_importing_what_its_replica_lacks_fails_the_start_not_its_first_caller(make_swarm: Any) -> None:
    from bytewax_nb import StartError

    swarm = make_swarm()
    swarm.gateway("in")

    @swarm.bee(input="in")
    def fancy(payload: Any) -> Any:
        import not_a_module_anywhere  # noqa: F401

        return payload

    with pytest.raises(StartError, match=r"imports 'not_a_module_anywhere'.*requirements"):
        swarm.start(timeout=30)


@pytest.mark.slow
def test_scaling_down_and_up_again_under_load_loses_nothing(make_swarm: Any) -> None:
    swarm = make_swarm()
    swarm.gateway("in")
    swarm.bee(lambda p: p, input="in", name="model", replicas=3)
    swarm.start()
    with Load(swarm.url("in")) as load:
        swarm.scale("model", 2)
        swarm.scale("model", 3)  # replica 2 again: a new process, never mistaken for the old one
        before = len(load.outcomes)
        wait_until(lambda: len(load.outcomes) > before + 50, what="load after scaling up again")
    assert load.failed() == []
    assert swarm.status()["bees"]["model"]["ready"] == 3
    dropped = swarm.status()["bees"]["model"]["dropped_by"]
    assert "replayed" not in dropped and "replayed" not in swarm.status()["hub"]["dropped_by"]
