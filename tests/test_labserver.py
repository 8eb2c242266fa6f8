"""JupyterLab's side panel, its server half: a real Jupyter server (the extension
enabled by the config file the package installs) answering for swarms another process
owns, over real HTTP. The panel itself is driven in Chromium in test_lab_panel."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import textwrap
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser import free_port, server
from conftest import hello_swarm, other_owner

from bytewax_nb.engine import state


class Lab:
    """A Jupyter server in its own process, and requests to the panel's routes."""

    def __init__(self, port: int, token: str) -> None:
        self.root = f"http://127.0.0.1:{port}/bytewax-nb/swarms"
        self.token = token

    def call(
        self, path: str, body: Any = None, token: str | None = "", raw: bytes | None = None
    ) -> tuple[int, Any]:
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        req = urllib.request.Request(self.root + path, data=data, method="GET" if data is None else "POST")
        if token is not None:
            req.add_header("Authorization", f"token {token or self.token}")
        try:
            with urllib.request.urlopen(req, timeout=90) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as err:
            text = err.read()
            try:
                return err.code, json.loads(text)
            except ValueError:
                return err.code, text.decode(errors="replace")

    def get(self, path: str = "") -> Any:
        status, body = self.call(path)
        assert status == 200, (path, status, body)
        return body


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    port, token = free_port(), secrets.token_hex(16)
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime")}
    args = ["--no-browser", "--allow-root", f"--port={port}", "--ip=127.0.0.1"]
    args += [f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp_path}"]
    cmd = [sys.executable, "-m", "jupyter_server", *args]
    with server(cmd, tmp_path, f"http://127.0.0.1:{port}/api/status?token={token}", env):
        yield Lab(port, token)


def test_the_panel_lists_draws_changes_and_stops_a_swarm_another_process_owns(
    make_swarm: Any, lab: Lab
) -> None:
    swarm = hello_swarm(make_swarm, name="paneltest").start()
    sid = f"local/paneltest.{os.getpid()}"
    (row,) = [r for r in lab.get() if r["id"] == sid]
    assert (row["name"], row["kind"], row["owner"], row["state"]) == (
        "paneltest",
        "swarm",
        os.getpid(),
        "ready",
    )
    assert row["gateways"] == [{"name": "hello-world", "url": swarm.url("hello-world")}]
    assert {b["name"]: (b["ready"], b["wanted"], b["state"]) for b in row["bees"]} == {
        "hello": (1, 1, "ready"),
        "goodbye": (1, 1, "ready"),
    }
    assert swarm.request("hello-world", {"name": "Bee"}) == "goodbye Bee"
    # the tab's graph: the widget's own traits, the bee's detail when one is picked
    view = lab.get(f"/{sid}/view?selected=hello")
    assert view["swarm"] == "paneltest" and view["running"] is True
    assert sorted(n["id"] for n in view["nodes"]) == ["goodbye", "hello", "hello-world"]
    assert {(e["source"], e["target"]) for e in view["edges"]} == {
        ("hello-world", "hello"),
        ("hello", "goodbye"),
    }
    hello = next(n for n in view["nodes"] if n["id"] == "hello")
    assert (hello["ready"], hello["wanted"], "spark" in hello) == (1, 1, True)
    assert "[hello/0] hello Bee" in view["detail"]["lines"]
    # an edit from the tab: the owner's swarm is changed, and says so
    said = lab.call(f"/{sid}/edit", {"type": "replicas", "bee": "goodbye", "replicas": 2})
    assert said[0] == 200 and said[1]["level"] == "info" and said[1]["text"] == "done: goodbye: 2 replicas"
    assert swarm.topology.bees["goodbye"].replicas == 2 and swarm.status()["bees"]["goodbye"]["ready"] == 2
    # what only the owner can do is refused in words, and the swarm serves on
    status, refused = lab.call(f"/{sid}/edit", {"type": "disconnect", "source": "hello", "target": "goodbye"})
    assert status == 200 and refused["level"] == "error"
    assert "only the notebook or script that runs swarm 'paneltest'" in refused["text"]
    status, refused = lab.call(f"/{sid}/edit", {"type": "replicas", "bee": "goodbye", "replicas": 0})
    assert refused["level"] == "error" and "replicas must be an integer >= 1" in refused["text"]
    # a test payload, and a typing mistake in it
    probe = lab.call(f"/{sid}/probe", {"gateway": "hello-world", "payload": '{"name": "Lab"}'})
    assert probe[0] == 200 and (probe[1]["state"], json.loads(probe[1]["answer"])) == ("done", "goodbye Lab")
    status, typo = lab.call(f"/{sid}/probe", {"gateway": "hello-world", "payload": '{"name": '})
    assert status == 200 and typo["state"] == "error" and typo["error"].startswith("the payload is not JSON")
    assert lab.get(f"/{sid}/traces") == {"slow": [], "failed": []}  # tracing is off: nothing kept
    assert "[hello/0] hello Lab" in lab.get(f"/{sid}/logs/hello?lines=5")["lines"]
    # mistakes in requests: each a clear error, nothing disturbed
    assert lab.call(f"/{sid}/logs/nosuch")[0] == 409
    assert lab.call(f"/{sid}/logs/hello?lines=many")[0] == 400
    assert lab.call(f"/{sid}/edit", raw=b"{not json")[0] == 400
    assert lab.call("/local/nosuch.1/view")[0] == 404
    assert lab.call("", token="wrong")[0] == 403
    assert swarm.request("hello-world", {"name": "Still"}) == "goodbye Still"
    # stop: the owner drains and stops it, its record goes, the list no longer has it
    status, stopped = lab.call(f"/{sid}/stop", {})
    assert status == 200 and stopped["text"] == "swarm 'paneltest' stopped"
    assert not swarm.running
    assert sid not in [r["id"] for r in lab.get()]
    assert lab.call(f"/{sid}/view")[0] == 404


_THEIRS = textwrap.dedent(
    """
    import sys
    from bytewax_nb import Swarm

    swarm = Swarm("theirs", runtime="process", on_log=None)
    swarm.gateway("hello-world")

    @swarm.bee(input="hello-world")
    def hi(payload):
        return "hi from the other owner"

    swarm.start()
    print("serving", flush=True)
    sys.stdin.read()  # until the test closes it
    swarm.stop()
    """
)


def test_a_second_owners_swarm_is_drawn_and_stopped_and_the_first_serves_on(
    make_swarm: Any, lab: Lab, tmp_path: Path
) -> None:
    mine = hello_swarm(make_swarm, name="mine").start()
    with other_owner(tmp_path, _THEIRS) as (other, said):
        assert said == "serving"
        rows = {r["id"]: r["owner"] for r in lab.get()}
        assert rows == {f"local/mine.{os.getpid()}": os.getpid(), f"local/theirs.{other.pid}": other.pid}
        theirs = lab.get(f"/local/theirs.{other.pid}/view")
        assert sorted(n["id"] for n in theirs["nodes"]) == ["hello-world", "hi"]
        # stopping theirs leaves mine serving
        status, stopped = lab.call(f"/local/theirs.{other.pid}/stop", {})
        assert status == 200 and stopped["text"] == "swarm 'theirs' stopped"
        assert [r["id"] for r in lab.get()] == [f"local/mine.{os.getpid()}"]
        assert mine.request("hello-world", {"name": "Bee"}) == "goodbye Bee"
    assert not [r for r in state.read_all() if r.owner == other.pid]


def test_an_owner_that_died_is_listed_as_such_and_not_opened(lab: Lab, tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record = state.Record(
        swarm="gone", owner=dead.pid, started=0.0, gateways={"g": "http://127.0.0.1:9/gateways/g"}
    )
    state.write(record)
    try:
        (row,) = [r for r in lab.get() if r["name"] == "gone"]
        assert row["state"] == "owner dead" and "bytewax-nb gc" in row["error"]
        assert lab.call(f"/{row['id']}/view")[0] == 404
    finally:
        state.remove(record)
