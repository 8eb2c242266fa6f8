"""The supervisor's parts, each on its own, without a process or a socket of the swarm's:
readiness, stopping, deaths and restarts, what a process is told, and the typed
messages and specs they pass around."""

from __future__ import annotations

import time
from typing import Any

import pytest

from bytewax_nb.engine.book import Book
from bytewax_nb.engine.changes import Change
from bytewax_nb.engine.configure import Configurator
from bytewax_nb.engine.lifecycle import Lifecycle
from bytewax_nb.engine.readiness import Readiness
from bytewax_nb.engine.stopping import Stopping
from bytewax_nb.engine.wiring import Member
from bytewax_nb.model.errors import TopologyError
from bytewax_nb.model.protocol import (
    MemberState,
    Msg,
    Role,
    Route,
    StopPhase,
    bee_error,
    http_error_body,
    routes_from,
    routes_to,
)
from bytewax_nb.model.spec import BeeSpec, GatewaySpec, Topology
from bytewax_nb.runtime.base import Handle, Launcher


def _book() -> Book:
    top = Topology()
    top.add_gateway(GatewaySpec("gw"))
    top.add_bee(BeeSpec("a", lambda p: p, ("gw",), replicas=2, fuse=False))
    return Book.of("parts", top, fuse=False)


def _up(book: Book, identity: str, role: Role, name: str, replica: int) -> Member:
    m = Member(identity, role, name, replica, state=MemberState.UP, address=f"tcp://h:{len(identity)}")
    book.wiring.add(m)
    return m


class _Sent:
    """Records what a part sends, as (identity, kind, body)."""

    def __init__(self) -> None:
        self.items: list[tuple[str, Msg, Any]] = []

    def __call__(self, m: Member, kind: Msg, body: Any) -> None:
        self.items.append((m.identity, kind, body))

    def kinds(self) -> list[tuple[str, Msg]]:
        return [(i, k) for i, k, _ in self.items]


def test_readiness_tells_the_hub_when_something_changed_and_settles_a_change_once_acked() -> None:
    book = _book()
    book.wiring.want()
    hub = _up(book, "hub:hub:0:1", Role.HUB, "hub", 0)
    told: list[tuple[Msg, Any]] = []
    readiness = Readiness()
    readiness.push(book, lambda kind, body: told.append((kind, body)), force=True)
    ((kind, status),) = told
    assert kind == Msg.STATUS and status["serving"] is False and status["not_ready"] == ["a"]
    readiness.push(book, lambda kind, body: told.append((kind, body)))  # nothing changed
    assert len(told) == 1
    a0, a1 = _up(book, "bee:a:0:1", Role.BEE, "a", 0), _up(book, "bee:a:1:1", Role.BEE, "a", 1)
    for m in (a0, a1):
        m.linked = frozenset({hub.identity})
    book.wiring.note_ready()
    change = Change("start")
    readiness.push(book, lambda kind, body: told.append((kind, body)), force=True)
    assert told[-1][1]["serving"] and told[-1][1]["healthy"]
    readiness.settle(book, change)
    assert not change.done.is_set()  # wired, but the hub has not applied the status yet
    hub.status_ok = readiness.version
    readiness.settle(book, change)
    assert change.done.is_set()


def test_readiness_waits_for_every_asked_member_then_says_so() -> None:
    book = _book()
    a0, a1 = _up(book, "bee:a:0:1", Role.BEE, "a", 0), _up(book, "bee:a:1:1", Role.BEE, "a", 1)
    readiness, asked = Readiness(), []
    reported = readiness.ask([a0, a1], asked.append)
    assert asked == [a0, a1] and not reported.is_set()
    readiness.heard(a0.identity)
    assert not reported.is_set()
    readiness.heard(a1.identity)
    assert reported.is_set()
    assert readiness.ask([], asked.append).is_set()  # nobody to ask: nothing to wait for


class _Handle(Handle):
    def __init__(self) -> None:
        self.identity, self.pid = "", 1
        self.code: int | None = None
        self.signals: list[str] = []

    def exit_code(self) -> int | None:
        return self.code

    def terminate(self) -> None:
        self.signals.append("term")

    def kill(self) -> None:
        self.signals.append("kill")

    def close(self) -> None:
        pass


def test_stopping_goes_through_its_phases_and_ends_early_when_nothing_is_left() -> None:
    hub, bee = (
        Member("hub:hub:0:1", Role.HUB, "hub", 0, _Handle()),
        Member("bee:a:0:1", Role.BEE, "a", 0, _Handle()),
    )
    sent, stopping = _Sent(), Stopping()
    assert not stopping.stopping
    stopping.begin(100.0, drain=5.0, hub=hub, send=sent)
    assert stopping.phase == StopPhase.GATEWAYS and sent.kinds() == [(hub.identity, Msg.STOP)]
    stopping.step(101.0, [hub, bee], hub, sent)  # the hub drains: nothing else yet
    assert stopping.phase == StopPhase.GATEWAYS
    stopping.step(101.0, [bee], None, sent)  # the hub is gone: the bees are told
    assert stopping.phase == StopPhase.BEES and sent.kinds()[-1] == (bee.identity, Msg.STOP)
    stopping.step(200.0, [bee], None, sent)  # still there past their time: SIGTERM
    assert stopping.phase == StopPhase.TERMINATE and bee.handle.signals == ["term"]  # type: ignore[union-attr]
    stopping.step(300.0, [bee], None, sent)
    assert bee.handle.signals == ["term", "kill"] and stopping.stopped.is_set()  # type: ignore[union-attr]
    quick = Stopping()
    quick.begin(0.0, drain=1.0, hub=None, send=sent)
    quick.step(0.0, [], None, sent)
    assert quick.stopped.is_set()  # nothing was running


class _Launcher(Launcher):
    name = "fake"

    def __init__(self) -> None:
        self.launched: list[str] = []

    def launch(
        self, identity: str, module: str, boot: Any, env: Any, on_line: Any, spec: Any = None
    ) -> Handle:
        self.launched.append(identity)
        return _Handle()


class _Channel:
    address = "tcp://127.0.0.1:1"

    def __init__(self) -> None:
        self.sent: list[tuple[str, Msg, Any]] = []

    def boot(self, identity: str, control: str) -> Any:
        return {"identity": identity, "control": control}

    def send(self, identity: str, kind: Msg, body: Any = None) -> None:
        self.sent.append((identity, kind, body))


class _Logs:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def add(self, identity: str, line: str) -> None:
        self.lines.append(line)

    def tail(self, m: Member, count: int = 10) -> list[str]:
        return ["last words"]


def test_a_death_is_told_to_the_others_restarted_after_a_back_off_and_fails_a_change_that_never_served() -> (
    None
):
    book = _book()
    launcher, channel, logs, changed = _Launcher(), _Channel(), _Logs(), []
    life = Lifecycle(book, channel, launcher, logs, lambda: changed.append(1))  # type: ignore[arg-type]
    life.launch_all()
    assert len(launcher.launched) == 3 and all(i.count(":") == 3 for i in launcher.launched)
    # identities are unguessable: the launch number, then 64 random bits
    assert all(len(i.rsplit(".", 1)[1]) == 16 for i in launcher.launched)
    members = list(book.wiring.members.values())
    for m in members:
        m.state = MemberState.UP
    bee = next(m for m in members if m.role == Role.BEE)
    bee.handle.code = -9  # type: ignore[union-attr]
    (ended,) = life.reap()
    assert ended == (bee, -9) and bee.identity not in book.wiring.members
    change = Change("start", undo=lambda: changed.append(0))
    for _ in range(3):  # it never served: the third death fails the change, and undoes it
        life.died(bee, -9, time.monotonic(), change)
    told = [(i, k) for i, k, _ in channel.sent]
    assert (next(m.identity for m in members if m.role == Role.HUB), Msg.LOST) in told
    lost = next(body for _, k, body in channel.sent if k == Msg.LOST)
    assert lost["message"] == "replica 0 of bee 'a' was killed by SIGKILL" and lost["tail"] == ["last words"]
    assert change.done.is_set() and "exited 3 times" in (change.error or "") and 0 in changed
    slot = book.wiring.slots[bee.slot_key]
    assert slot.failures == 3 and slot.restart_at > time.monotonic()  # backed off
    assert book.wiring.past["a"].deaths == 3
    before = len(launcher.launched)
    life.refill(slot.restart_at + 1, None)  # the back-off has passed: a new process
    assert len(launcher.launched) == before + 1


def test_a_bee_replica_that_says_hello_before_the_hub_listens_is_configured_once_it_does() -> None:
    book = _book()
    book.wiring.want()
    sent = _Sent()
    launcher = _Launcher()
    configure = Configurator(book, launcher, sent, journal="j.sqlite", stack=False)
    hub = Member("hub:hub:0:1", Role.HUB, "hub", 0)
    bee = Member("bee:a:0:1", Role.BEE, "a", 0)
    book.wiring.add(hub)
    book.wiring.add(bee)
    configure.hello(bee)
    assert sent.items == []  # nothing to dial yet
    configure.hello(hub)
    assert sent.kinds() == [(hub.identity, Msg.CONFIG)] and sent.items[0][2]["journal"] == "j.sqlite"
    configure.up(hub, {"address": "tcp://h:9", "ports": {"gw": 8080}})
    assert sent.kinds()[-1] == (bee.identity, Msg.CONFIG) and book.ports == {"gw": 8080}
    config = sent.items[-1][2]
    assert config["links"] == {"links": {hub.identity: "tcp://h:9"}, "hub": hub.identity}
    assert config["timeout"] == 25.0 and config["routes"] == {"a": []}  # "auto": 5/6 of 30 s
    assert bee.state == MemberState.CONFIGURED


def test_messages_that_cross_processes_round_trip_and_errors_keep_their_shape() -> None:
    routes = {"gw": [Route("a", join=True, retries=0), Route("b")]}
    assert routes_from(routes_to(routes)) == routes
    err = bee_error("a", "ValueError", "bad", "Traceback ...", "rid1")
    assert http_error_body(err, "rid1", tracebacks=False) == {
        "error": "bad",
        "request_id": "rid1",
        "bee": "a",
        "type": "ValueError",
    }
    assert http_error_body(err, "rid1", tracebacks=True)["traceback"] == "Traceback ..."


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"inputs": ()}, "needs at least one input"),
        ({"inputs": ("x", "x")}, "lists an input twice"),
        ({"join": True}, "join=True needs at least two inputs"),
        ({"replicas": 0}, "replicas must be an integer >= 1"),
        ({"batch_size": 0}, "batch_size must be an integer >= 1"),
        ({"timeout": -1.0}, "timeout must be a positive number"),
        ({"retries": -1}, "retries must be an integer >= 0"),
        ({"inputs": ("x", "y"), "join": True, "batch_size": 2}, "a join bee cannot batch"),
        ({"name": "bad name"}, "invalid bee name"),
    ],
)
def test_a_bee_spec_refuses_what_cannot_run(kw: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"name": "b", "fn": len, "inputs": ("x",)} | kw
    with pytest.raises(TopologyError, match=message):
        BeeSpec(**args)


def test_a_topology_refuses_cycles_and_unknown_inputs_and_orders_producers_first() -> None:
    top = Topology()
    top.add_gateway(GatewaySpec("gw"))
    top.add_bee(BeeSpec("b", len, ("a",)))
    top.add_bee(BeeSpec("a", len, ("gw",)))
    assert top.order().index("a") < top.order().index("b")
    top.add_bee(BeeSpec("a", len, ("gw", "b")), replace=True)
    with pytest.raises(TopologyError, match="cycle"):
        top.order()
    top.add_bee(BeeSpec("a", len, ("nowhere",)), replace=True)
    with pytest.raises(TopologyError, match="neither a gateway nor a bee"):
        top.validate()
    with pytest.raises(TopologyError, match="already used"):
        top.add_gateway(GatewaySpec("a"))
