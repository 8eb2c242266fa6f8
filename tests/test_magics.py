"""The magics in a real IPython shell, against real processes and HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from conftest import wait_until
from IPython.core.interactiveshell import InteractiveShell

from bytewax_nb import RemoteError
from bytewax_nb.notebook.magics import current_swarm


@pytest.fixture
def ip() -> Iterator[Any]:
    shell = InteractiveShell.instance()
    shell.run_cell("%load_ext bytewax_nb", store_history=False)
    yield shell
    swarm = current_swarm()
    if swarm is not None:
        swarm.stop(drain_timeout=1)
    leftovers = [c for c in psutil.Process().children(recursive=True) if c.status() != "zombie"]
    assert not leftovers, f"child processes left behind: {leftovers}"


def run(ip: Any, source: str) -> Any:
    result = ip.run_cell(source, store_history=True)
    if result.error_in_exec is not None:
        raise result.error_in_exec
    if result.error_before_exec is not None:
        raise result.error_before_exec
    return result.result


HELLO = """%%bee --input hello-world
def hello(payload):
    print("hello", payload["name"])
    return payload
"""

GOODBYE = """%%bee --input hello
def goodbye(payload, ctx):
    ctx.respond(f"goodbye {payload['name']}")
"""


def test_the_seed_tutorial_through_magics(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    run(ip, "%swarm new hello-world --runtime process")
    run(ip, "%gateway hello-world")
    run(ip, HELLO)
    run(ip, GOODBYE)
    out = capsys.readouterr().out
    assert "bee 'hello' serving: 1 replica, input hello-world" in out
    assert "bee 'goodbye' serving" in out
    assert run(ip, '%send hello-world {"name": "Bee"}') == "goodbye Bee"
    assert run(ip, '%%send hello-world\n{"name": "Ann"}') == "goodbye Ann"
    assert "answered in" in capsys.readouterr().out
    # the cell's function is an ordinary function in the kernel, testable with DevSwarm
    assert run(
        ip, "from bytewax_nb import DevSwarm\nd = DevSwarm()\ngoodbye({'name': 'X'}, d)\nd.responded"
    ) == ["goodbye X"]
    run(ip, "%swarm status")
    table = capsys.readouterr().out
    assert "hello-world  http://127.0.0.1:" in table
    assert "hello    hello-world  1/1" in table
    # a replica's prints reach the owner on a reader thread: the answer can come first
    swarm = current_swarm()
    assert swarm is not None
    wait_until(lambda: "[hello/0] hello Bee" in swarm.logs("hello"), what="the bee's print read")
    run(ip, "%bee logs hello")
    assert "[hello/0] hello Bee" in capsys.readouterr().out
    run(ip, "%swarm stop")
    assert "stopped" in capsys.readouterr().out


def test_rerunning_a_bee_cell_redeploys_the_new_code(ip: Any) -> None:
    run(ip, "%swarm new redeploy --runtime process")
    run(ip, "%gateway in")
    run(ip, "%%bee --input in\ndef model(x):\n    return x + 1\n")
    assert run(ip, "%send in 1") == 2
    pid = current_swarm().status()["bees"]["model"]["replicas"][0]["pid"]  # type: ignore[union-attr]
    run(ip, "%%bee --input in\ndef model(x):\n    return x * 100\n")
    assert run(ip, "%send in 1") == 100
    swarm: Any = current_swarm()
    wait_until(
        lambda: pid not in [r["pid"] for r in swarm.status()["bees"]["model"]["replicas"]],
        what="the old replica stopped",
    )


def test_a_bee_error_shows_the_cell_line_that_raised(ip: Any) -> None:
    run(ip, "%swarm new errors --runtime process")
    run(ip, "%gateway in")
    run(ip, '%%bee --input in\ndef picky(payload):\n    value = payload["needed"]\n    return value\n')
    with pytest.raises(RemoteError) as info:
        run(ip, '%send in {"other": 1}')
    err = info.value
    assert err.bee == "picky" and err.ename == "KeyError"
    assert 'value = payload["needed"]' in err.traceback  # the cell's own line, shown remotely
    assert ", line 2, in picky" in err.traceback


@pytest.mark.parametrize(
    "cell, message",
    [
        ("%%bee\ndef f(x):\n    return x\n", "needs --input"),
        ("%%bee --input in\nx = 1\n", "must define a function"),
        ("%%bee --input in\ndef f(x):\n    return x\ndef g(x):\n    return x\n", "several functions"),
        ("%%bee --input in --image custom:1\ndef f(x):\n    return x\n", "cannot apply image"),
        ("%%bee --input in --env NOEQUALS\ndef f(x):\n    return x\n", "KEY=VALUE"),
        ("%%bee --input in --replicas 3:1\ndef f(x):\n    return x\n", "0 <= min_replicas <= max_replicas"),
        ("%%bee --input in --replicas two\ndef f(x):\n    return x\n", "N or MIN:MAX"),
        ("%%bee --input in --min-replicas 2\ndef f(x):\n    return x\n", "min_replicas needs max_replicas"),
        ('%send in {"broken"', "not JSON"),
        ("%swarm frobnicate", "unknown %swarm action"),
        ("%bee hello", "%bee logs NAME or %bee rm NAME"),
        ("%bee rm nosuch", "has no bee 'nosuch'"),
    ],
)
def test_bad_magic_input_gets_a_clear_error(ip: Any, cell: str, message: str) -> None:
    run(ip, "%swarm new bad --runtime process")
    run(ip, "%gateway in")
    with pytest.raises(Exception, match=message):
        run(ip, cell)


def test_without_swarm_new_the_swarm_is_named_after_the_notebook(
    ip: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import bytewax_nb.notebook.magics as magics

    monkeypatch.setattr(magics, "_CURRENT", {})
    monkeypatch.setenv("JPY_SESSION_NAME", "/home/me/work/Fraud Model v2.ipynb")
    run(ip, "%gateway in")
    assert current_swarm().name == "Fraud-Model-v2"  # type: ignore[union-attr]
    run(ip, "%swarm status")
    assert "swarm 'Fraud-Model-v2' (auto): stopped" in capsys.readouterr().out


def test_swarm_magic_alone_gives_the_live_graph(ip: Any) -> None:
    from bytewax_nb import SwarmWidget

    run(ip, "%swarm new drawn --runtime process")
    run(ip, "%gateway in")
    run(ip, HELLO.replace("hello-world", "in"))
    w = run(ip, "%swarm")
    try:
        assert isinstance(w, SwarmWidget)
        assert [n["id"] for n in w.nodes] == ["in", "hello"]
        assert w.running and w.nodes[1]["status"] == "ready"  # a %%bee cell starts the swarm
        assert run(ip, "%swarm") is w
    finally:
        w.close()


def test_bee_timeout_from_the_cell_magic(ip: Any) -> None:
    run(ip, "%swarm new mg-timeout --runtime process")
    run(ip, "%gateway in --timeout 30")
    run(ip, "%%bee --input in --timeout 0.5\ndef nap(p):\n    import time\n    time.sleep(p)\n    return p\n")
    swarm = current_swarm()
    assert swarm is not None and swarm.topology.bees["nap"].timeout == 0.5
    assert run(ip, "%send in 0") == 0
    with pytest.raises(RemoteError) as err:
        run(ip, "%send in 3600")
    assert err.value.ename == "BeeTimeout" and "time.sleep(p)" in err.value.traceback
    run(ip, "%%bee --input in --retries 0\ndef plain(p):\n    return None\n")
    run(ip, "%%bee --input in --no-timeout\ndef patient(p):\n    return None\n")
    bees = swarm.topology.bees
    assert (bees["plain"].timeout, bees["plain"].retries) == ("auto", 0)  # the default limit
    assert swarm.topology.call_timeout(bees["plain"]) == 25.0  # 5/6 of its gateway's 30 s
    assert bees["patient"].timeout is None


def test_an_autoscaled_bee_from_the_cell_magic(ip: Any) -> None:
    run(ip, "%swarm new mg-auto --runtime process")
    run(ip, "%gateway in")
    run(ip, "%%bee --input in --replicas 0:3 --idle-s 5 --target-in-flight 4\ndef f(p):\n    return p\n")
    swarm = current_swarm()
    assert swarm is not None
    spec = swarm.topology.bees["f"]
    assert (spec.min_replicas, spec.max_replicas, spec.replicas) == (0, 3, 1)  # starts with one
    assert (spec.idle_s, spec.target_in_flight, spec.autoscaled) == (5.0, 4.0, True)
    run(ip, "%%bee --input in --replicas 2\ndef g(p):\n    return p\n")
    fixed = swarm.topology.bees["g"]
    assert (fixed.replicas, fixed.autoscaled, fixed.replica_range) == (2, False, (2, 2))


def test_a_refused_bee_cell_leaves_the_swarm_as_it_was(ip: Any) -> None:
    run(ip, "%swarm new typo --runtime process")
    run(ip, "%gateway in")
    with pytest.raises(Exception, match="'nosuch', which is neither a gateway nor a bee"):
        run(ip, "%%bee --input nosuch\ndef first(p):\n    return p\n")
    swarm = current_swarm()
    assert swarm is not None and "first" not in swarm.topology.bees and not swarm.running
    run(ip, "%%bee --input in\ndef echo(p):\n    return p\n")  # the corrected cell starts the swarm
    assert run(ip, "%send in 5") == 5
    with pytest.raises(Exception, match="'nosuch', which is neither"):  # refused on a running swarm too
        run(ip, "%%bee --input nosuch\ndef echo(p):\n    return -p\n")
    assert run(ip, "%send in 5") == 5 and list(swarm.topology.bees) == ["echo"]


def test_a_bee_capturing_a_lock_is_refused_with_the_line_that_uses_it(ip: Any) -> None:
    run(ip, "%swarm new locked --runtime process")
    run(ip, "%gateway in")
    run(ip, "%%bee --input in\ndef echo(p):\n    return p\n")
    run(ip, "import threading\nguard = threading.Lock()")
    cell = "%%bee --input in\ndef echo(p):\n    with guard:\n        return p * 2\n"
    with pytest.raises(Exception, match=r"it uses `guard`, a _thread\.lock") as info:
        run(ip, cell)
    assert "with guard:" in str(info.value) and "inside the bee" in str(info.value)
    assert run(ip, "%send in 4") == 4  # the running version serves on, the swarm answers
    swarm = current_swarm()
    assert swarm is not None and swarm.status()["bees"]["echo"]["ready"] == 1


def test_bee_rm_takes_a_bee_out_of_the_running_swarm(ip: Any) -> None:
    run(ip, "%swarm new rm --runtime process")
    run(ip, "%gateway in")
    run(ip, "%%bee --input in\ndef first(p):\n    return p + 1\n")
    run(ip, "%%bee --input in\ndef second(p):\n    return None\n")
    run(ip, "%%bee --input first\ndef tail(p):\n    return p * 10\n")
    with pytest.raises(Exception, match="'tail' listen to it"):
        run(ip, "%bee rm first")
    assert run(ip, "%send in 1") == 20
    run(ip, "%bee rm tail")
    assert run(ip, "%send in 1") == 2
    swarm = current_swarm()
    assert swarm is not None and sorted(swarm.status()["bees"]) == ["first", "second"]


def test_send_stream_prints_the_chunks(ip: Any, capsys: pytest.CaptureFixture[str]) -> None:
    run(ip, "%swarm new magic-stream --runtime process")
    run(ip, "%gateway words")
    run(ip, "%%bee --input words\ndef split(text):\n    yield from text.split()\n")
    capsys.readouterr()
    assert run(ip, '%send --stream words "a b c"') is None
    assert capsys.readouterr().out.splitlines() == ['"a"', '"b"', '"c"', "(3 chunks)"]
    assert run(ip, '%%send --stream words\n"d"') is None
    assert capsys.readouterr().out.splitlines() == ['"d"', "(1 chunk)"]
