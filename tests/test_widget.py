"""The Swarm widget's kernel side, without a browser: a recording comm stands in for
the front-end, and real processes, sockets and HTTP stand behind the swarm."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import comm
import pytest
from conftest import wait_until
from prometheus_client import generate_latest

from bytewax_nb import Swarm, SwarmWidget
from bytewax_nb.gateway.metrics import GatewayMetrics, HubMetrics
from bytewax_nb.model.spec import BeeSpec, GatewaySpec, Topology
from bytewax_nb.widget.graph import Errors, Rates, bee_detail, graph
from bytewax_nb.widget.history import History


class RecordingComm:
    """What ipywidgets talks to in place of a kernel comm: keeps every message sent."""

    kernel = "recording"

    def __init__(self, **kwargs: Any) -> None:
        self.comm_id = uuid.uuid4().hex
        self.opened_with = kwargs.get("data", {})
        self.messages: list[dict[str, Any]] = []
        self._handler: Callable[[dict[str, Any]], None] | None = None

    def send(self, data: Any = None, metadata: Any = None, buffers: Any = None) -> None:
        self.messages.append(data)

    def on_msg(self, handler: Callable[[dict[str, Any]], None]) -> None:
        self._handler = handler

    def on_close(self, handler: Any) -> None:
        pass

    def close(self, *args: Any, **kwargs: Any) -> None:
        pass

    def deliver(self, data: dict[str, Any]) -> None:
        """A message from the front-end, as the kernel would hand it over."""
        assert self._handler is not None
        self._handler({"content": {"data": data}, "buffers": []})

    def edit(self, **content: Any) -> None:
        self.deliver({"method": "custom", "content": content})

    def updates(self) -> list[dict[str, Any]]:
        return [m["state"] for m in list(self.messages) if m and m.get("method") == "update"]


@pytest.fixture
def recording() -> Iterator[list[RecordingComm]]:
    made: list[RecordingComm] = []
    original = comm.create_comm

    def create(**kwargs: Any) -> RecordingComm:
        c = RecordingComm(**kwargs)
        made.append(c)
        return c

    comm.create_comm = create
    yield made
    comm.create_comm = original


def _path(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    def step(p: dict[str, Any]) -> dict[str, Any]:
        return {**p, "path": [*p["path"], name]}

    step.__name__ = name
    return step


def chain(make_swarm: Callable[..., Swarm], name: str = "w", **kw: Any) -> Swarm:
    """in -> a -> b -> c; c says where each message came from and answers its path."""
    swarm = make_swarm(name, **kw)
    swarm.gateway("in")
    swarm.bee(_path("a"), input="in", name="a")
    swarm.bee(_path("b"), input="a", name="b")

    @swarm.bee(input="b")
    def c(p: dict[str, Any]) -> list[str]:
        print("c saw", "/".join(p["path"]) or "gateway", p["n"])
        return [*p["path"], "c"]

    return swarm


def open_widget(swarm: Swarm, recording: list[RecordingComm]) -> tuple[SwarmWidget, RecordingComm]:
    w = SwarmWidget.of(swarm)
    return w, recording[-1]


def node(w: SwarmWidget, name: str) -> dict[str, Any]:
    return next(n for n in w.nodes if n["id"] == name)


def pids(swarm: Swarm, bee: str) -> dict[int, int]:
    return {r["replica"]: r["pid"] for r in swarm.status()["bees"][bee]["replicas"] if r["state"] == "up"}


# -- pure: what the front-end receives -------------------------------------------------


def test_graph_lists_nodes_edges_and_figures_of_a_snapshot() -> None:
    topo = Topology()
    topo.add_gateway(GatewaySpec("in"))
    topo.add_bee(BeeSpec("a", _path("a"), ("in",)))
    topo.add_bee(BeeSpec("j", _path("j"), ("in", "a"), join=True, replicas=2))
    status: dict[str, Any] = {
        "running": True,
        "gateways": {"in": {"url": "http://127.0.0.1:1/gateways/in", "requests": 5, "errors": 0}},
        "bees": {
            "a": {"state": "ready", "ready": 1, "handled": 10, "errors": 1, "p50_ms": 0.25, "p99_ms": 2.0},
            "j": {"state": "redeploying", "ready": 1, "handled": 0},
        },
    }
    rates = Rates()
    graph(topo, status, rates, now=100.0)
    status["bees"]["a"]["handled"] = 30
    status["gateways"]["in"].update(requests=45, errors=2)
    nodes, edges = graph(topo, status, rates, now=102.0)
    by = {n["id"]: n for n in nodes}
    assert by["in"] == {
        "id": "in",
        "kind": "gateway",
        "status": "ready",
        "url": "http://127.0.0.1:1/gateways/in",
        "rps": 20.0,
        "errors": 2,
        "streams": 0,
        "chunk_rate": 0.0,
    }
    assert by["a"]["rate"] == 10.0 and by["a"]["errors"] == 1 and by["a"]["p50_ms"] == 0.25
    assert by["j"]["status"] == "redeploying" and by["j"]["wanted"] == 2 and by["j"]["join"] is True
    # an edge's rate: what its one-input bee handles, else what its producer sends
    assert edges == [
        {"source": "in", "target": "a", "join": False, "rate": 10.0},
        {"source": "in", "target": "j", "join": True, "rate": 20.0},
        {"source": "a", "target": "j", "join": True, "rate": 10.0},
    ]
    stopped, _ = graph(topo, {"running": False}, Rates(), now=0.0)
    assert {n["status"] for n in stopped} == {"stopped"}


def test_each_gateway_serves_only_its_own_counters_and_the_bees_it_reaches() -> None:
    hub = HubMetrics()
    open_gw = GatewayMetrics(hub, "open", lambda: 0)
    closed_gw = GatewayMetrics(hub, "private", lambda: 3)
    open_gw.count(200)
    closed_gw.count(200)
    closed_gw.count(500)
    hub.snapshot = {  # type: ignore[typeddict-item]  # only what /metrics reads
        "hub_restarts": 0,
        "bees": {
            "a": {"input": ["open"], "handled": 4, "dropped_by": {"replayed": 2}},
            "b": {"input": ["a"], "handled": 4},
            "secret": {"input": ["private"], "handled": 9},
        },
    }
    hub.drop("signature")
    shown = generate_latest(open_gw.registry).decode()
    assert 'bytewax_nb_gateway_requests_total{code="200",gateway="open"} 1.0' in shown
    assert "private" not in shown and "secret" not in shown
    assert 'bytewax_nb_bee_handled_total{bee="b"} 4.0' in shown
    assert 'bytewax_nb_dropped_frames_total{process="bee:a",reason="replayed"} 2.0' in shown
    assert 'bytewax_nb_dropped_frames_total{process="hub",reason="signature"} 1.0' in shown
    assert hub.counts() == {
        "open": {"requests": 1, "errors": 0, "streams": 0, "chunks": 0},
        "private": {"requests": 2, "errors": 1, "streams": 0, "chunks": 0},
    }


def test_bee_detail_keeps_the_tail_of_the_log_the_errors_and_the_replicas() -> None:
    err = {"type": "KeyError", "message": "'x'", "traceback": "Traceback...", "request_id": "r1", "time": 1}
    replicas = [{"replica": 0, "pid": 11, "state": "up", "handled": 5, "queued": 1, "p50_ms": 0.1}]
    status = {"bees": {"a": {"last_error": err, "replicas": replicas}}}
    detail = bee_detail("a", status, [f"line {i}" for i in range(100)], [])
    assert detail["lines"][0] == "line 60" and len(detail["lines"]) == 40
    assert detail["last_error"] == {
        **{k: str(err[k]) for k in ("type", "message", "traceback", "request_id")},
        "time": 1.0,
    }
    assert detail["replicas"] == [{"replica": 0, "pid": 11, "state": "up", "handled": 5, "queued": 1}]
    assert bee_detail("a", {}, [], [])["last_error"] is None


def test_recent_errors_are_each_kept_once_newest_first_and_bounded() -> None:
    errors = Errors(keep=3)

    def seen(t: int) -> dict[str, Any]:
        err = {"type": "E", "message": str(t), "time": t, "request_id": f"r{t}"}
        return {"running": True, "bees": {"a": {"last_error": err}, "b": {}}}

    for t in range(5):
        for _ in range(2):  # the same last error read twice: kept once
            errors.note(seen(t))
    errors.note(seen(3))  # an older error again (its newer one's replica died): not kept twice
    assert [e["message"] for e in errors.of("a")] == ["4", "3", "2"]
    assert errors.of("b") == []
    errors.note({"running": True, "bees": {"b": {}}})  # bee a was removed: its errors go
    assert errors.of("a") == []


def test_history_keeps_the_last_samples_of_each_node_and_forgets_removed_ones() -> None:
    history = History(samples=4)
    gw = {"id": "in", "kind": "gateway", "rps": 0.0, "errors": 0}
    bee = {"id": "a", "kind": "bee", "rate": 0.0, "p50_ms": 1.0, "p99_ms": 2.0, "errors": 0}
    for t in range(6):
        history.add([{**gw, "rps": float(t), "errors": 2 * t}, {**bee, "rate": float(t)}], now=100.0 + t)  # type: ignore[list-item]
    assert history.of("in") == {
        "ago": [3.0, 2.0, 1.0, 0.0],
        "rate": [2.0, 3.0, 4.0, 5.0],
        "p50": [0.0] * 4,
        "p99": [0.0] * 4,
        "errors": [2.0] * 4,  # two more errors each second
    }
    a = history.of("a")
    assert a is not None and a["p99"] == [2.0] * 4 and a["rate"] == [2.0, 3.0, 4.0, 5.0]
    history.add([gw], now=107.0)  # type: ignore[list-item]  # bee a left the graph
    assert history.of("a") is None and history.of("in") is not None


def test_a_nodes_sparklines_are_its_last_minutes_in_sixty_points_at_most() -> None:
    history = History()  # 120 samples
    bee = {"id": "a", "kind": "bee", "rate": 0.0, "p50_ms": 1.0, "p99_ms": 2.0, "errors": 0}
    assert history.spark("a") == {"rate": [], "p99": [], "errors": []}
    for t in range(3):
        history.add([{**bee, "rate": t / 3}], now=100.0 + t)  # type: ignore[list-item]
    assert history.spark("a") == {"rate": [0.0, 0.333, 0.667], "p99": [2.0] * 3, "errors": [0.0] * 3}
    for t in range(3, 300):
        history.add([{**bee, "rate": float(t), "errors": t}], now=100.0 + t)  # type: ignore[list-item]
    spark = history.spark("a")
    assert len(spark["rate"]) == len(spark["p99"]) == len(spark["errors"]) == 60
    assert spark["rate"][-1] == 299.0 and spark["rate"][0] == 181.0  # every other of the last 120
    assert spark["errors"][-1] == 1.0  # one more error each second


# -- live: a recording comm in front, real processes behind ---------------------------


@pytest.mark.slow
def test_widget_syncs_the_running_graph_with_live_figures(
    make_swarm: Callable[..., Swarm], recording: list[RecordingComm]
) -> None:
    swarm = chain(make_swarm).start()
    w, front = open_widget(swarm, recording)
    try:
        # an anywidget: the front-end's module travels in the comm's state, not in an extension
        state = front.opened_with["state"]
        assert state["_model_module"] == "anywidget" and "export" in state["_esm"]
        assert w.running and w.swarm == "w"
        assert [(e["source"], e["target"]) for e in w.edges] == [("in", "a"), ("a", "b"), ("b", "c")]
        for i in range(20):
            assert swarm.request("in", {"n": i, "path": []}) == ["a", "b", "c"]
        wait_until(lambda: node(w, "a")["rate"] > 0 and node(w, "in")["rps"] > 0, what="rates in the widget")
        a, gw = node(w, "a"), node(w, "in")
        assert a["status"] == "ready" and (a["ready"], a["wanted"]) == (1, 1) and a["p50_ms"] > 0
        assert gw["url"] == swarm.url("in") and gw["errors"] == 0
        # each refresh is one message: figures of several nodes change together
        assert any(len(u.get("nodes", [])) == 4 for u in front.updates())
        assert SwarmWidget.of(swarm) is w  # one widget per swarm
    finally:
        w.close()


@pytest.mark.slow
def test_front_end_edits_change_the_running_swarm_and_leave_other_bees_alone(
    make_swarm: Callable[..., Swarm], recording: list[RecordingComm]
) -> None:
    # a bee each in its own processes: an edit restarts only the bee it edits (in a fused
    # group it regroups the group: see test_fusion)
    swarm = chain(make_swarm, fuse=False).start()
    w, front = open_widget(swarm, recording)
    try:
        before = {b: pids(swarm, b) for b in ("a", "b")}
        front.edit(type="connect", source="in", target="c")
        wait_until(lambda: w.message.get("text") == "done: connect in -> c", what="connect applied")
        assert swarm.topology.bees["c"].inputs == ("b", "in")
        assert ("in", "c") in {(e["source"], e["target"]) for e in w.edges}
        swarm.request("in", {"n": 7, "path": []})
        wait_until(lambda: any("c saw gateway 7" in x for x in swarm.logs("c")), what="the new edge used")
        assert {b: pids(swarm, b) for b in ("a", "b")} == before  # untouched bees kept running

        front.edit(type="disconnect", source="b", target="c")
        wait_until(lambda: w.message.get("text") == "done: disconnect b -> c", what="disconnect applied")
        assert swarm.topology.bees["c"].inputs == ("in",)
        # b has no listener left, so it is a sink now and answers too: the first answer wins
        assert swarm.request("in", {"n": 8, "path": []}) in (["c"], {"n": 8, "path": ["a", "b"]})
        wait_until(lambda: any("c saw gateway 8" in x for x in swarm.logs("c")), what="c fed by in alone")
        assert not any("c saw a/b 8" in x for x in swarm.logs("c"))

        front.edit(type="replicas", bee="a", replicas=2)
        wait_until(lambda: w.message.get("text") == "done: a: 2 replicas", what="scaled up")
        assert len(pids(swarm, "a")) == 2 and pids(swarm, "a")[0] == before["a"][0]
        wait_until(lambda: node(w, "a")["ready"] == 2, what="two replicas shown")
        front.edit(type="replicas", bee="a", replicas=1)
        wait_until(lambda: w.message.get("text") == "done: a: 1 replicas", what="scaled down")
        assert pids(swarm, "a") == before["a"]
        assert swarm.status()["bees"]["a"]["wanted"] == 1

        front.edit(type="remove", bee="c")
        wait_until(lambda: w.message.get("text") == "done: remove bee c", what="removed")
        assert "c" not in swarm.topology.bees and all(n["id"] != "c" for n in w.nodes)
        assert swarm.request("in", {"n": 9, "path": []}) == {"n": 9, "path": ["a", "b"]}
        assert {b: pids(swarm, b) for b in ("a", "b")} == before
    finally:
        w.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("edit", "why"),
    [
        ({"type": "connect", "source": "c", "target": "a"}, "cycle"),
        ({"type": "connect", "source": "a", "target": "in"}, "gateway 'in' has no inputs"),
        ({"type": "disconnect", "source": "b", "target": "c"}, "needs at least one input"),
        ({"type": "disconnect", "source": "a", "target": "j"}, "join=True needs at least two inputs"),
        ({"type": "replicas", "bee": "a", "replicas": 0}, "replicas must be an integer >= 1"),
        ({"type": "replicas", "bee": "a", "replicas": "2"}, "replicas must be an integer"),
        ({"type": "remove", "bee": "b"}, "'c', 'j' listen to it"),
        ({"type": "remove", "bee": "nosuch"}, "has no bee 'nosuch'"),
        ({"type": "drop-table"}, "unknown edit"),
    ],
)
def test_invalid_edits_are_refused_with_a_message_and_change_nothing(
    make_swarm: Callable[..., Swarm], recording: list[RecordingComm], edit: dict[str, Any], why: str
) -> None:
    swarm = chain(make_swarm)
    swarm.bee(lambda parts: None, input=["a", "b"], join=True, name="j")  # answers nothing
    swarm.start()
    w, front = open_widget(swarm, recording)
    try:
        before = {n: (s.inputs, s.replicas) for n, s in swarm.topology.bees.items()}
        pids_before = {b: pids(swarm, b) for b in swarm.topology.bees}
        front.edit(**edit)
        wait_until(lambda: w.message.get("level") == "error", what="a refusal")
        assert why in w.message["text"]
        assert {n: (s.inputs, s.replicas) for n, s in swarm.topology.bees.items()} == before
        assert {b: pids(swarm, b) for b in swarm.topology.bees} == pids_before
        assert swarm.request("in", {"n": 1, "path": []}) == ["a", "b", "c"]
    finally:
        w.close()


@pytest.mark.slow
def test_changes_from_python_appear_in_the_widget(
    make_swarm: Callable[..., Swarm], recording: list[RecordingComm]
) -> None:
    swarm = chain(make_swarm).start()
    w, _ = open_widget(swarm, recording)
    try:
        swarm.connect("a", "c")
        wait_until(lambda: ("a", "c") in {(e["source"], e["target"]) for e in w.edges}, what="edge in widget")
        swarm.bee(_path("d"), input="c", name="d")
        wait_until(lambda: any(n["id"] == "d" for n in w.nodes), what="new bee in widget")
        swarm.stop()
        wait_until(lambda: not w.running and node(w, "a")["status"] == "stopped", what="stopped shown")
    finally:
        w.close()


@pytest.mark.slow
def test_clicking_a_bee_shows_its_logs_and_last_error(
    make_swarm: Callable[..., Swarm], recording: list[RecordingComm]
) -> None:
    swarm = make_swarm("err")
    swarm.gateway("in")

    @swarm.bee(input="in")
    def picky(p: dict[str, Any]) -> str:
        print("picky got", p)
        return str(p["must"])

    swarm.start()
    w, front = open_widget(swarm, recording)
    try:
        assert swarm.request("in", {"must": "ok"}) == "ok"
        with pytest.raises(Exception, match="must"):
            swarm.request("in", {"nope": 1})
        front.deliver({"method": "update", "state": {"selected": "picky"}, "buffer_paths": []})
        detail = wait_until(
            lambda: w.detail if (w.detail.get("last_error") and w.detail.get("bee") == "picky") else None,
            what="detail of the clicked bee",
        )
        assert detail["last_error"]["type"] == "KeyError"
        assert 'str(p["must"])' in detail["last_error"]["traceback"]
        assert [e["type"] for e in detail["errors"]] == ["KeyError"]
        assert [(r["replica"], r["state"]) for r in detail["replicas"]] == [(0, "up")]
        assert detail["replicas"][0]["handled"] >= 1
        # the node's last minutes, for its sparklines: a sample a refresh, bounded
        hist = wait_until(
            lambda: (h := w.detail.get("history")) and len(h["ago"]) >= 2 and h, what="the bee's last minutes"
        )
        assert set(hist) == {"ago", "rate", "p50", "p99", "errors"} and hist["ago"][-1] == 0.0
        assert any("picky got {'must': 'ok'}" in line for line in detail["lines"])
        assert node(w, "picky")["errors"] == 1
    finally:
        w.close()


@pytest.mark.slow
def test_secrets_never_reach_the_front_end(
    make_swarm: Callable[..., Swarm], recording: list[RecordingComm]
) -> None:
    swarm = make_swarm("secret")
    swarm.gateway("in", token="gateway-token-123")

    @swarm.bee(input="in", env={"API_KEY": "bee-secret-456"})
    def echo(p: Any) -> Any:
        return p

    swarm.start()
    w, front = open_widget(swarm, recording)
    try:
        swarm.request("in", {"x": 1})
        front.deliver({"method": "update", "state": {"selected": "echo"}, "buffer_paths": []})
        wait_until(lambda: node(w, "in")["rps"] > 0 or w.detail.get("bee") == "echo", what="a few updates")
        sent = json.dumps([front.opened_with, *front.messages])
        assert "gateway-token-123" not in sent and "bee-secret-456" not in sent
    finally:
        w.close()


def test_a_widget_that_cannot_read_its_swarm_says_so(
    make_swarm: Callable[..., Swarm], recording: list[RecordingComm], monkeypatch: pytest.MonkeyPatch
) -> None:
    swarm = chain(make_swarm)  # declared only: the widget reads its topology
    w = SwarmWidget(swarm, interval=0.02)
    try:
        assert [n["status"] for n in w.nodes] == ["stopped"] * 4

        def broken() -> None:
            raise RuntimeError("supervisor gone")

        monkeypatch.setattr(w, "_refresh", broken)
        wait_until(lambda: w.message.get("level") == "error", what="the error shown")
        assert w.message["text"] == "could not read the swarm: RuntimeError: supervisor gone"
    finally:
        w.close()


def test_the_front_ends_types_are_made_from_the_kernels() -> None:
    """labextension/src/state.ts is what bytewax_nb/widget/state.py's TypedDicts say;
    and the kernel's graph gives exactly their fields."""
    from pathlib import Path

    from bytewax_nb.widget import state

    made = state.typescript()
    ts = Path(__file__).resolve().parents[1] / "labextension" / "src" / "state.ts"
    assert ts.read_text() == made, "run: python -m bytewax_nb.widget > labextension/src/state.ts"
    top = Topology(
        {"in": GatewaySpec("in")}, {"b": BeeSpec("b", len, ("in",)), "c": BeeSpec("c", len, ("b", "in"))}
    )
    nodes, edges = graph(top, {"running": False}, Rates(), 0.0)
    sparks = History()
    sparks.add(nodes, now=0.0)
    for node in nodes:  # as the widget sends them: each with its sparklines
        node["spark"] = sparks.spark(node["id"])
        kind = state.GatewayNode if node["kind"] == "gateway" else state.BeeNode
        only_autoscaled = {"autoscale"} if kind is state.BeeNode else set()
        assert set(node) == set(kind.__annotations__) - only_autoscaled, node
        assert set(node["spark"]) == set(state.Spark.__annotations__)
    assert all(set(e) == set(state.SwarmEdge.__annotations__) for e in edges)
    bees = {"b": {"last_error": {"type": "E", "message": "m"}, "replicas": [{"replica": 0, "pid": 1}]}}
    errors = Errors()
    errors.note({"bees": bees})
    history = History()
    history.add(nodes, now=1.0)
    detail = bee_detail("b", {"bees": bees}, ["x"], errors.of("b"), history.of("b"))
    assert set(detail) == set(state.BeeDetail.__annotations__)
    assert set(detail["last_error"] or {}) == set(state.LastError.__annotations__)
    assert all(set(e) == set(state.LastError.__annotations__) for e in detail["errors"])
    assert all(set(r) == set(state.ReplicaInfo.__annotations__) for r in detail["replicas"])
    assert set(detail["history"] or {}) == set(state.NodeHistory.__annotations__)
    # an autoscaled bee's node carries its range and its autoscaler's last word
    scale = {"min": 0, "max": 4, "target": 2.0, "in_flight": 3, "desired": 2, "reason": "why"}
    scale |= {"decided": 1.0, "cold_start_s": 0.4}
    bees = {"b": {"state": "ready", "ready": 2, "autoscale": scale}}
    nodes, _ = graph(top, {"running": True, "bees": bees}, Rates(), 0.0)
    b = next(n for n in nodes if n["id"] == "b")
    assert set(b["autoscale"]) == set(state.Autoscaled.__annotations__)  # type: ignore[typeddict-item]
    assert (b["autoscale"]["max"], b["autoscale"]["reason"]) == (4, "why")  # type: ignore[typeddict-item]


@pytest.mark.slow
def test_a_test_payload_from_the_widget_comes_back_with_its_answer_and_its_trace(
    make_swarm: Callable[..., Swarm], recording: list[RecordingComm]
) -> None:
    swarm = chain(make_swarm)
    swarm.gateway("div")
    swarm.bee(lambda p: 1 / p["n"], input="div", name="inverse")  # a bee that can fail
    swarm.start()
    w, front = open_widget(swarm, recording)
    try:
        front.edit(type="probe", gateway="in", payload='{"n": 4, "path": []}')
        wait_until(lambda: w.probe.get("state") == "done", what="the probe answered")
        assert json.loads(w.probe["answer"]) == ["a", "b", "c"]
        spans = w.probe["trace"]["spans"]
        assert [s["bee"] for s in spans if s["kind"] == "running"] == ["a", "b", "c"]
        assert w.probe["trace"]["status"] == 200 and w.probe["gateway"] == "in"
        seq = w.probe["seq"]

        # a typing mistake is an answer too: nothing is sent, the kernel does not raise
        front.edit(type="probe", gateway="in", payload="{oops")
        wait_until(lambda: w.probe["seq"] > seq and w.probe["state"] == "error", what="bad JSON refused")
        assert "not JSON" in w.probe["error"] and w.probe["trace"] is None
        front.edit(type="probe", gateway="in", payload="NaN")
        wait_until(lambda: "NaN is not a JSON value" in w.probe["error"], what="NaN refused")
        front.edit(type="probe", gateway="nosuch", payload="{}")
        wait_until(lambda: "no gateway 'nosuch'" in w.probe["error"], what="unknown gateway refused")

        # a request that fails comes back with its error and the trace of where it failed
        front.edit(type="probe", gateway="div", payload='{"n": 0}')
        wait_until(lambda: "ZeroDivisionError" in w.probe["error"], what="the failed probe")
        assert w.probe["trace"]["status"] == 500
        assert [s["bee"] for s in w.probe["trace"]["spans"] if s["kind"] == "running"] == ["inverse"]

        front.edit(type="traces")
        wait_until(lambda: w.kept.get("failed"), what="the kept traces")
        assert [t["gateway"] for t in w.kept["failed"]] == ["div"]
        assert {t["gateway"] for t in w.kept["slow"]} == {"in"}
        assert swarm.request("in", {"n": 2, "path": []}) == ["a", "b", "c"]  # nothing disturbed
    finally:
        w.close()
