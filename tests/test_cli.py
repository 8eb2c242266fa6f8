"""The `bytewax-nb` command as installed, against real swarms."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from conftest import Gate, hello_swarm, wait_until

import bytewax_nb
from bytewax_nb.engine import state

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = tmp_path / "state"
    monkeypatch.setenv("BYTEWAX_NB_STATE_DIR", str(folder))
    yield folder


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(["bytewax-nb", *args], capture_output=True, text=True, timeout=120)
    if check and out.returncode != 0:
        raise AssertionError(f"bytewax-nb {' '.join(args)} failed: {out.stderr}")
    return out


def test_version_is_printed_by_the_installed_command() -> None:
    assert cli("--version").stdout.strip() == f"bytewax-nb {bytewax_nb.__version__}"


def test_list_status_send_logs_and_stop_a_swarm_run_elsewhere(make_swarm: Any, state_dir: Path) -> None:
    swarm = hello_swarm(make_swarm, name="clitest").start()
    listing = cli("list").stdout
    assert f"clitest  owner {os.getpid()}  process  running" in listing
    assert f"gateway hello-world  {swarm.url('hello-world')}" in listing
    sent = cli("send", "hello-world", '{"name": "Bee"}')
    assert json.loads(sent.stdout) == "goodbye Bee" and "answered in" in sent.stderr
    status = cli("status", "clitest").stdout
    assert "swarm 'clitest' (process): ready" in status
    rows = [ln.split()[:5] for ln in status.splitlines() if ln.startswith(("hello ", "goodbye "))]
    assert rows == [["hello", "hello-world", "1/1", "1", "0"], ["goodbye", "hello", "1/1", "1", "0"]]
    assert "[hello/0] hello Bee" in cli("logs", "clitest", "hello").stdout
    (listed,) = [r for r in json.loads(cli("list", "--json").stdout) if r["runtime"] != "stack"]
    assert (listed["swarm"], listed["running"], listed["owner"]) == ("clitest", True, os.getpid())
    as_json = json.loads(cli("status", "clitest", "--json").stdout)
    assert as_json["bees"]["hello"]["handled"] == 1 and as_json["gateways"]["hello-world"]["requests"] == 1
    # a change from the command line: the kernel's swarm sees it, the other bee is untouched
    assert swarm.status()["bees"]["hello"]["group"] == ["hello", "goodbye"]  # fused: one process
    assert "2 replica(s) serving" in cli("scale", "clitest", "hello", "2").stdout
    scaled = swarm.status()["bees"]
    assert scaled["hello"]["ready"] == 2 and swarm.topology.bees["hello"].replicas == 2
    assert scaled["hello"]["group"] == scaled["goodbye"]["group"] == []  # their processes differ now
    # the old group's process serves until the new ones do, then drains and goes
    wait_until(lambda: len(swarm.status()["bees"]["hello"]["replicas"]) == 2, what="the old group gone")
    scaled = swarm.status()["bees"]
    goodbye_pid = scaled["goodbye"]["replicas"][0]["pid"]
    hello_pid = scaled["hello"]["replicas"][0]["pid"]
    assert "every replica replaced" in cli("restart", "clitest", "goodbye").stdout
    after = swarm.status()["bees"]
    assert [r["pid"] for r in after["goodbye"]["replicas"] if r["state"] == "up"] != [goodbye_pid]
    assert hello_pid in [r["pid"] for r in after["hello"]["replicas"]]
    assert swarm.request("hello-world", {"name": "Again"}) == "goodbye Again"
    wrong = cli("scale", "clitest", "nosuch", "2", check=False)
    assert wrong.returncode == 1 and "no bee 'nosuch'" in wrong.stderr
    follow = subprocess.Popen(
        ["bytewax-nb", "logs", "clitest", "hello", "-f"], stdout=subprocess.PIPE, text=True
    )
    assert follow.stdout is not None
    assert "hello Bee" in follow.stdout.readline()  # what was there
    swarm.request("hello-world", {"name": "Followed"})
    while "Followed" not in follow.stdout.readline():  # and what comes after
        pass
    follow.terminate()
    follow.wait()
    bad = cli("send", "hello-world", "{nope", check=False)
    assert bad.returncode == 1 and "not JSON" in bad.stderr
    assert "stopped" in cli("stop", "clitest").stdout
    wait_until(lambda: not swarm.running, what="the owner seeing its swarm stopped")
    assert state.read_all() == []
    missing = cli("status", "clitest", check=False)
    assert missing.returncode == 1 and "no running swarm named 'clitest'" in missing.stderr


def test_gc_removes_what_a_dead_owner_left(state_dir: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    record = state.Record("ghost", dead_pid, 0.0, gateways={"g": "http://127.0.0.1:1/gateways/g"})
    state.write(record)
    (record.log_dir).mkdir()
    (record.log_dir / "b.log").write_text("old\n")
    # a replica stuck before its boot line, whose owner is gone
    stuck = subprocess.Popen(
        [sys.executable, "-m", "bytewax_nb.replica"],
        stdin=subprocess.PIPE,
        env={**os.environ, "BYTEWAX_NB_OWNER": str(dead_pid)},
    )
    try:
        out = cli("gc").stdout
        assert f"killed process {stuck.pid}, whose owner {dead_pid} is gone" in out
        assert f"removed swarm 'ghost' of owner {dead_pid}" in out
        assert stuck.wait(timeout=10) != 0
        assert state.read_all() == [] and not record.log_dir.exists()
        assert cli("gc").stdout.strip() == "nothing to clean"
    finally:
        stuck.kill()
        stuck.wait()


def test_list_tells_a_dead_owner_from_a_running_one_and_gc_removes_what_it_left(state_dir: Path) -> None:
    # a zombie: exited, not yet reaped by its parent (a kernel killed under a live server)
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    wait_until(lambda: psutil.Process(zombie.pid).status() == psutil.STATUS_ZOMBIE, what="a zombie")
    try:
        state.write(state.Record("zombie-owner", zombie.pid, 0.0))
        # a live pid, but another process than the one that wrote the record (a reused pid)
        state.write(state.Record("reused-pid", os.getpid(), psutil.Process().create_time() - 60))
        state.write(state.Record("alive", os.getpid(), psutil.Process().create_time() + 1))
        # a background run's log whose run died
        (state_dir / f"run-{zombie.pid}.log").write_text("output\n")
        rows = {r.split()[0]: r for r in cli("list").stdout.splitlines() if " owner " in r}
        assert rows["alive"].endswith("running")
        for dead in ("zombie-owner", "reused-pid"):
            assert rows[dead].endswith("owner dead (`bytewax-nb gc` removes what it left)"), rows[dead]
        listed = {
            r["swarm"]: r["running"]
            for r in json.loads(cli("list", "--json").stdout)
            if r["runtime"] != "stack"
        }
        assert listed == {"zombie-owner": False, "reused-pid": False, "alive": True}
        out = cli("gc").stdout
        assert f"removed run-{zombie.pid}.log" in out and "removed swarm 'zombie-owner'" in out
        assert [r.swarm for r in state.read_all()] == ["alive"]
    finally:
        zombie.wait()
        for r in state.read_all():
            state.remove(r)


def test_a_bees_log_file_is_rotated_and_read_whole(tmp_path: Path) -> None:
    files = state.LogFiles(tmp_path, max_bytes=2000)
    for i in range(1000):
        files.write("chatty", f"[chatty/0] line {i}")
    files.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chatty.log", "chatty.log.1"]
    assert all(p.stat().st_size <= 2000 for p in tmp_path.iterdir())  # bounded, whatever the bee says
    lines = state.log_lines(tmp_path, "chatty")
    assert lines[-1] == "[chatty/0] line 999"
    assert lines == [f"[chatty/0] line {i}" for i in range(1000 - len(lines), 1000)]  # in order, no gap


def test_help_shows_every_default_and_what_gc_removes() -> None:
    def said(*args: str) -> str:
        return " ".join(cli(*args).stdout.split())

    assert "serve (default 70)" in said("scale", "--help")
    assert "serve (default 70)" in said("restart", "--help")
    assert "--deploy-timeout DEPLOY_TIMEOUT seconds to wait for the gateways to serve (default 300)" in said(
        "deploy", "--help"
    )
    gc_help = said("gc", "--help")
    assert "records and log folders" in gc_help and "containers" in gc_help and "images" in gc_help


@pytest.mark.slow
def test_run_serves_a_notebook_until_sigterm(state_dir: Path) -> None:
    run = subprocess.Popen(
        ["bytewax-nb", "run", str(ROOT / "notebooks" / "01-hello-swarm.ipynb")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert run.stdout is not None
        lines = []
        for line in run.stdout:
            lines.append(line)
            if line.startswith("serving until"):
                break
        text = "".join(lines)
        assert "skipped: %swarm stop" in text
        # the headless kernel speaks to its client over IPC, not over TCP in clear
        assert "without encryption" not in text
        assert "serving swarm 'hello-world': gateway hello-world at http://127.0.0.1:" in text
        sent = cli("send", "hello-world", '{"name": "CLI"}', "--wait", "30")
        assert json.loads(sent.stdout) == "goodbye CLI"
        (record,) = state.read_all()
        pids = list(record.pids.values())
        run.send_signal(signal.SIGTERM)
        assert run.wait(timeout=60) == 0
        assert "without encryption" not in (run.stderr.read() if run.stderr else "")
        assert state.read_all() == []
        _, alive = psutil.wait_procs([psutil.Process(p) for p in pids if psutil.pid_exists(p)], timeout=10)
        assert not alive
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()


@pytest.mark.slow
def test_run_detached_answers_at_once_and_ends_with_its_swarm(make_swarm: Any, state_dir: Path) -> None:
    other = make_swarm("anchor-chain")  # another process's swarm on this machine
    other.gateway("anchor")
    other.bee(lambda p: p, input="anchor", name="echo")
    other.start()
    out = cli("run", str(ROOT / "notebooks" / "01-hello-swarm.ipynb"), "--detach")
    assert "running in the background" in out.stdout
    assert "swarm 'hello-world': gateway hello-world at http://127.0.0.1:" in out.stdout
    assert "anchor" not in out.stdout  # only what this run started
    other.stop()
    (record,) = state.read_all()
    runner = psutil.Process(int(out.stdout.split("(pid ")[1].split(")")[0]))
    assert json.loads(cli("send", "hello-world", '{"name": "Detached"}').stdout) == "goodbye Detached"
    assert "stopped" in cli("stop", "hello-world").stdout
    log = state_dir / f"run-{runner.pid}.log"
    assert str(log) in out.stdout
    runner.wait(timeout=30)  # the background run ends once its swarms are stopped (not our child: no code)
    assert not runner.is_running()
    assert not log.exists()  # its log went with it
    procs = [psutil.Process(p) for p in record.pids.values() if psutil.pid_exists(p)]
    _, alive = psutil.wait_procs(procs, timeout=10)
    assert not alive and state.read_all() == []


def test_a_gateway_nobody_listens_to_answers_503_at_once(make_swarm: Any) -> None:
    from bytewax_nb.client import post

    swarm = make_swarm()
    swarm.gateway("in")
    swarm.gateway("lonely")
    swarm.bee(lambda p: p, input="in", name="echo")
    swarm.start()
    status, body, _ = post(swarm.url("lonely"), 1, timeout=5)
    assert status == 503 and "no bee listens to gateway 'lonely'" in body["error"]


@pytest.mark.slow
def test_send_wait_waits_until_the_gateway_serves(make_swarm: Any, state_dir: Path, tmp_path: Path) -> None:
    import threading

    gate = tmp_path / "gate"
    gate.touch()
    holder = Gate(str(gate))
    swarm = make_swarm("late")
    swarm.gateway("late-in")

    @swarm.bee(input="late-in")
    def echo(payload: Any) -> Any:
        return [payload, holder is not None]

    starting = threading.Thread(target=swarm.start)
    starting.start()  # the hub serves HTTP, the bee's replica hangs in start-up
    wait_until(lambda: any(r.gateways for r in state.read_all()), what="the gateway's record")
    send = subprocess.Popen(
        ["bytewax-nb", "send", "late-in", "1", "--wait", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert send.stderr is not None
    assert send.stderr.readline().decode().startswith("waiting for http://127.0.0.1:")
    gate.unlink()
    out, err = send.communicate(timeout=60)
    starting.join()
    assert send.returncode == 0, err
    assert json.loads(out) == [1, True]


def test_send_stream_prints_each_chunk_as_it_comes(make_swarm: Any, state_dir: Path, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    swarm = make_swarm("clistream")
    swarm.gateway("words", timeout=30)

    @swarm.bee(input="words")
    def split(text: str) -> Any:
        first, *rest = text.split()
        yield first
        while not os.path.exists(gate):  # the rest waits until the first has been printed
            time.sleep(0.01)
        yield from rest

    swarm.start()
    send = subprocess.Popen(
        ["bytewax-nb", "send", "words", '"one two three"', "--stream"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert send.stdout is not None
    assert json.loads(send.stdout.readline()) == "one"  # printed while the bee still works
    gate.touch()
    out, err = send.communicate(timeout=60)
    assert send.returncode == 0, err
    assert [json.loads(line) for line in out.splitlines()] == ["two", "three"]
    assert err.startswith("3 chunks in ")
