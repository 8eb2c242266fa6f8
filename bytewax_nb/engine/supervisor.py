"""The supervisor: launches a swarm's processes, proves the bus is wired, keeps it alive.

It runs in one thread of the owner (kernel or CLI) and owns the control ROUTER, so
every socket is used by the thread that made it. The API thread talks to it through
a command queue and waits on events, never on sleeps. It launches the hub first (the
gateways); bee replicas get their configuration once the hub's link socket has an
address.

Readiness is proven, not assumed (see `wiring`): each bee replica dials its producers
and reports which of them welcomed it; `start()` and every live change return once
every bee has its wanted replicas linked to all their producers and the hub has
heard the new status. No message is lost to a slow joiner: a producer sends to a
replica only once it has its window.

Processes run the graph of `fusion.plan` (a fused group of bees is one process-level
bee); every change to the user's graph is planned anew and applied as the difference
between the two plans, so a regrouping is a redeploy like any other.

In a deployed stack the same class is the controller (`adopt`): the engine starts the
processes, and they register with it (see `bytewax_nb.stack`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import secrets
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar, cast

import zmq

from ..bus.child import CONTROLLER, Boot
from ..bus.control import ControlCodec
from ..bus.curve import BusKeys, Curve
from ..bus.wire import Signer, traceback_token
from ..model import fusion
from ..model.errors import StartError
from ..model.protocol import (
    Beat,
    BeeConfig,
    BeeState,
    BeeStats,
    Busy,
    Bye,
    HubConfig,
    HubStats,
    Linked,
    LinksBody,
    Lost,
    MemberState,
    Msg,
    Role,
    Status,
    StatusOk,
    StopOrder,
    StopPhase,
    SwarmStatus,
    Tally,
    Up,
)
from ..model.source import capture, imported_modules
from ..model.spec import BeeSpec, GatewaySpec, Topology
from ..model.stagelog import untag
from ..runtime.base import Handle, Launcher, NeverStarted
from . import changes, reports, state
from .adoption import Adopt, BeatHandle, Beats
from .changes import Change
from .commands import Action, CommandSocket
from .policy import RESTARTS
from .wiring import NO_HEARTBEAT, Member, Past, Wiring, death_error, describe, exit_cause

__all__ = ["Supervisor"]

T = TypeVar("T")
LogCallback = Callable[[str, str, int, str], None]  # (role, name, replica, line)
_LOG_LINES = 2000
_STATUS_EVERY = 0.25  # seconds between status pushes for counters alone
_CLI_CHANGE_TIMEOUT = 60.0  # seconds a scale or restart asked by the command line may take
_STATUS_REFRESH = 5.0  # an unchanged status is still re-sent this often (latency figures)


class Supervisor:
    """Runs one swarm's processes; every public method is safe from any thread."""

    def __init__(
        self,
        swarm: str,
        topology: Topology,
        launcher: Launcher,
        on_log: LogCallback | None = None,
        *,
        fuse: bool = True,
        adopt: Adopt | None = None,
    ) -> None:
        self.swarm = swarm
        self.adopt = adopt  # a stack's controller: processes register, none is launched
        self.topology = topology  # the user's graph (the Swarm's own object)
        self.fuse = fuse
        self.units = fusion.plan(topology, fuse)  # the graph of processes
        self.launcher = launcher
        self.on_log = on_log
        self.wiring = Wiring(self.units, topology)
        self.logs: dict[str, deque[tuple[float, int, str]]] = {}
        self.ports: dict[str, int] = {}
        self.hub_stats: HubStats | None = None  # the gateways' counters, as the hub last reported them
        self.hub_restarts = 0
        self.unprocessed = 0  # accepted submits no bee had taken when the swarm stopped
        self._launches = 0  # processes launched so far: the last part of each identity
        self._unconfigured: list[Member] = []  # bee replicas that said hello before the hub was up
        self._key = adopt.key if adopt is not None else secrets.token_bytes(32)
        # named afresh: nothing addressed to an earlier supervisor is taken by this one,
        # and a restarted controller's sequence numbers start anew under its own name
        fresh = secrets.token_hex(8)
        if adopt is not None:
            self._codec = ControlCodec(Signer(self._key), CONTROLLER, f"{CONTROLLER}:{fresh}")
        else:
            self._codec = ControlCodec(Signer(self._key), f"supervisor:{fresh}")
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self._bus_keys = adopt.curve if adopt is not None else BusKeys.make(local=True)
        self._curve = Curve(self.ctx, self._bus_keys)
        self._router = self.ctx.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.LINGER, 0)
        self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        # a task that dials again (its controller restarted) takes its identity back
        self._router.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self._curve.server(self._router)
        if adopt is not None:
            self._router.bind(f"tcp://{launcher.bind_host}:{adopt.port}")
            port = adopt.port
        else:
            port = self._router.bind_to_random_port(f"tcp://{launcher.bind_host}")
        self.control_address = f"tcp://{launcher.bind_host}:{port}"
        self._beats = Beats(adopt) if adopt is not None else None
        wake = f"inproc://bytewax-nb-wake-{id(self)}"
        self._wake_in = self.ctx.socket(zmq.PULL)
        self._wake_in.bind(wake)
        self._wake_out = self.ctx.socket(zmq.PUSH)
        self._wake_out.connect(wake)
        self._wake_lock = threading.Lock()
        self._commands: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._status_version = 0
        self._status_sent = 0.0
        self._status_key: Any = None
        self._ready = threading.Event()
        self._change: Change | None = None
        self._change_lock = threading.RLock()
        self._stats_wanted: tuple[set[str], threading.Event] = (set(), threading.Event())
        self._stopping = False
        self._stop_phase = StopPhase.RUNNING
        self._stop_deadline = 0.0
        self._stopped = threading.Event()
        self._stop_lock = threading.Lock()
        self._closed = False
        # what the bytewax-nb command sees: a record, log files, a socket for `stop`
        self.record = state.Record(swarm, os.getpid(), time.time(), launcher.name)
        self._log_files = state.LogFiles(self.record.log_dir)
        self._commands_socket = CommandSocket(self.ctx, self.record.control)
        self._thread = threading.Thread(target=self._loop, name=f"bytewax-nb-{swarm}", daemon=True)
        self._thread.start()

    # -- public API (any thread) -----------------------------------------------------

    def call(self, fn: Callable[[], T]) -> T:
        """Run `fn` on the supervisor thread and return its result."""
        fut: Future[T] = Future()

        def run() -> None:
            try:
                fut.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                fut.set_exception(exc)

        self._post(run)
        return fut.result(timeout=30)

    def prepare(self) -> None:
        """Get every process-level bee's image ready (builds happen here, in the caller's
        thread, before anything starts)."""
        for spec in self.units.bees.values():
            self.launcher.prepare(spec, self.units.upstream(spec))

    def start(self, timeout: float) -> None:
        """Launch everything and wait until the swarm serves (or raise StartError)."""
        self._await(Change("start"), self._launch_all, timeout)
        self._ready.set()

    def deploy(self, spec: BeeSpec, timeout: float) -> None:
        """Add a bee, or replace a running one with new code or options (its processes
        are replaced even if nothing changed: a restart).

        New replicas are proven wired before the old ones give up their share, so no
        message goes unhandled; a new version that cannot start is rolled back and the
        old replicas go on serving.
        """
        with self._change_lock:  # what it replaces must be what the change started from
            bees = dict(self.topology.bees)
            bees[spec.name] = spec
            self._replan(f"deploy of bee {spec.name!r}", bees, timeout, restart=spec.name)

    def scale(self, name: str, replicas: int, timeout: float) -> None:
        """Start or retire replicas of a running bee; the others serve on untouched.

        New replicas take a share once wired; removed ones give theirs up first (the
        same gap-free hand-over as a redeploy), then drain and stop. A bee of a fused
        group leaves it (the group is redeployed), as its processes differ now.
        """
        with self._change_lock:
            bees = dict(self.topology.bees)
            bees[name] = dataclasses.replace(bees[name], replicas=replicas)
            self._replan(f"scaling bee {name!r} to {replicas}", bees, timeout)

    def remove(self, name: str, timeout: float) -> None:
        """Take a bee out: its replicas ask for nothing more, finish what they hold, exit."""
        with self._change_lock:
            bees = {n: b for n, b in self.topology.bees.items() if n != name}
            self._replan(f"removing bee {name!r}", bees, timeout)

    def _replan(self, what: str, bees: dict[str, BeeSpec], timeout: float, restart: str = "") -> None:
        """Apply a new user's graph: plan its processes, build what they need, then go
        from the running plan to the new one (or back, if it cannot settle)."""
        old_bees, old_units = dict(self.topology.bees), dict(self.units.bees)
        units = fusion.plan(Topology(self.topology.gateways, bees), self.fuse)
        forced = {n for n, spec in units.bees.items() if restart in fusion.members(spec)}
        for name, spec in units.bees.items():
            if name in forced or old_units.get(name) != spec:
                self.launcher.prepare(spec, units.upstream(spec))
        change = Change(what, undo=lambda: self._unset_plan(old_bees, old_units, units.bees, forced))
        self._await(change, lambda: self._set_plan(bees, units.bees, forced), timeout)

    def add_gateway(self, spec: GatewaySpec, timeout: float) -> None:
        """Serve one more gateway from the running hub."""
        self._await(Change(f"gateway {spec.name!r}"), lambda: self._add_gateway(spec), timeout)

    def _await(self, change: Change, apply: Callable[[], None], timeout: float) -> None:
        with self._change_lock:  # one change at a time, whichever thread asks
            self._await_one(change, apply, timeout)

    def _await_one(self, change: Change, apply: Callable[[], None], timeout: float) -> None:
        def begin() -> None:
            self._change = change
            apply()
            self._check_change()

        self.call(begin)
        change.done.wait(timeout)
        self.call(lambda: setattr(self, "_change", None))
        if change.error or not change.done.is_set():
            why = change.error or f"not ready after {timeout:g} s"
            report = self.call(self._not_ready_report)
            raise StartError(f"swarm {self.swarm!r}: {change.what} failed: {why}\n{report}")

    def stop(self, drain_timeout: float | None = None) -> None:
        """Drain the gateways, stop the bees, reap everything, close every socket."""
        with self._stop_lock:
            self._stop(drain_timeout)

    def _stop(self, drain_timeout: float | None) -> None:
        if self._closed:
            return
        if drain_timeout is None:
            drain_timeout = max((g.timeout for g in self.topology.gateways.values()), default=5.0)
        if self._thread.is_alive():
            self._post(lambda: self._begin_stop(drain_timeout))
            self._stopped.wait(drain_timeout + 15)
            self._post(lambda: setattr(self, "_closed", True))
            self._thread.join(timeout=10)
        self._closed = True
        for m in list(self.wiring.members.values()):
            if m.handle is not None:
                m.handle.kill()
                m.handle.close()
        self.wiring.members.clear()
        self.launcher.close()
        self._log_files.close()
        state.remove(self.record, logs=True)
        self._curve.close()
        self.ctx.destroy(linger=0)

    @property
    def traceback_token(self) -> str:
        """What `swarm.request` shows the gateways to get bees' tracebacks (see http.py)."""
        return traceback_token(self._key).decode()

    def serve(self) -> None:
        """A controller's start: nothing to launch, the swarm registers as it comes."""
        self._ready.set()

    def detach(self) -> None:
        """A controller's end: close our sockets and leave every task running (the engine
        owns them; a new controller adopts them)."""
        with self._stop_lock:
            if self._closed:
                return
            self._post(lambda: setattr(self, "_closed", True))
            self._thread.join(timeout=10)
            self._closed = True
            self._log_files.close()
            state.remove(self.record, logs=True)
            self._curve.close()
            self.ctx.destroy(linger=0)

    def status(self, fresh: float = 0.5) -> SwarmStatus:
        """The swarm's state; first asks every replica for its counters (up to `fresh` s)."""
        reported = threading.Event()
        self.call(lambda: self._ask_stats(reported))
        reported.wait(fresh)
        return self.call(self._snapshot)

    def _ask_stats(self, reported: threading.Event) -> None:
        members = [m for m in self.wiring.members.values() if m.state == MemberState.UP]
        self._stats_wanted = ({m.identity for m in members}, reported)
        for m in members:
            self._send(m, Msg.REPORT)
        if not members:
            reported.set()

    @property
    def stopped(self) -> bool:
        """Stopping or stopped, by the owner or by `bytewax-nb stop`."""
        return self._stopping or self._closed

    def log_lines(self, name: str) -> list[str]:
        return [f"[{name}/{r}] {line}" for _, r, line in list(self.logs.get(name, ()))]

    # -- the loop (supervisor thread only) -------------------------------------------

    def _post(self, fn: Callable[[], None]) -> None:
        self._commands.put(fn)
        with self._wake_lock:
            self._wake_out.send(b"", zmq.NOBLOCK)

    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._wake_in, zmq.POLLIN)
        cli = self._commands_socket
        if cli.socket is not None:
            poller.register(cli.socket, zmq.POLLIN)
        busy = True
        while not self._closed:
            events = dict(poller.poll(10 if busy else 100))
            if self._wake_in in events:
                with contextlib.suppress(zmq.Again):
                    while True:
                        self._wake_in.recv(zmq.NOBLOCK)
            while True:
                try:
                    command = self._commands.get_nowait()
                except queue.Empty:
                    break
                self._guarded("running a command", command)
            if self._router in events:
                self._guarded("reading the control channel", self._drain_router)
            if cli.socket in events and cli.ready:
                self._guarded(
                    "answering the command line",
                    lambda: cli.handle(
                        stopping=self._stopping, stop=self.stop, actions=self._cli_actions, post=self._post
                    ),
                )
            busy = self._guarded("watching the processes", self._tick) is not False
        for sock in (self._router, self._wake_in, self._wake_out):
            sock.close(linger=0)
        cli.close()

    def _guarded(self, what: str, step: Callable[[], Any]) -> Any:
        """Run one step of the loop; whatever it raises is reported, and the loop goes on.

        The supervisor thread must outlive any mistake (a bee that cannot be pickled, a
        bug of ours): if it died, every later call would hang on its queue. The change in
        progress, if any, fails at once with the error, and is undone.
        """
        try:
            return step()
        except Exception as exc:  # noqa: BLE001 - reported to the caller of the change, never fatal
            text = "".join(traceback.format_exception(exc)).rstrip()
            self._on_line("hub:hub:0:0", f"bytewax-nb: supervisor error while {what}:\n{text}")
            change = self._change
            if change is not None and not change.done.is_set():
                change.error = f"{type(exc).__name__}: {exc} (while {what})"
                if change.undo is not None:
                    with contextlib.suppress(Exception):  # the error above is what the caller sees
                        change.undo()
                change.done.set()
            return None

    @property
    def _cli_actions(self) -> dict[str, Action]:
        """What `bytewax-nb status|scale|restart SWARM ...` does to this swarm."""
        return {
            "status": lambda _: {"status": self.status(), "runtime": str(self.launcher.name)},
            "scale": lambda r: self._cli_scale(str(r.get("bee")), r.get("replicas")),
            "restart": lambda r: self._cli_restart(str(r.get("bee"))),
        }

    def _known(self, bee: str) -> BeeSpec:
        spec = self.topology.bees.get(bee)
        if spec is None:
            raise StartError(f"swarm {self.swarm!r} has no bee {bee!r}")
        return spec

    def _cli_scale(self, bee: str, replicas: Any) -> dict[str, Any]:
        self._known(bee)
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1:
            raise ValueError(f"replicas must be an integer >= 1, not {replicas!r}")
        self.scale(bee, replicas, _CLI_CHANGE_TIMEOUT)
        return {}

    def _cli_restart(self, bee: str) -> dict[str, Any]:
        """Replace every replica of a bee, the same way a redeploy does: no request lost."""
        self.deploy(self._known(bee), _CLI_CHANGE_TIMEOUT)
        return {}

    def _send(self, m: Member, kind: Msg, body: Any = None, *, pickled: bool = False) -> None:
        # not connected yet, or gone: it says hello again, or its death is noticed
        with contextlib.suppress(zmq.ZMQError):
            frames = self._codec.pack(kind, body, dst=m.identity, pickled=pickled)
            self._router.send_multipart([m.identity.encode(), *frames])

    def _drain_router(self) -> None:
        while True:
            try:
                frames = self._router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            identity = frames[0].decode(errors="replace")
            m = self.wiring.members.get(identity)
            msg = self._codec.unpack(frames[1:], peer=identity)
            if msg is None:
                continue
            if m is None and self._beats is not None:  # a stack's task registers
                m = self._beats.member(identity, *msg, self.wiring, self.units)
                if m is not None:
                    self._on_line(identity, f"bytewax-nb: {identity} registered ({msg[0]})")
            if m is not None:
                self._on_message(m, *msg)

    def _on_message(self, m: Member, kind: Msg, body: Any) -> None:
        """One verified control message from `m`; `body` is what `protocol` names for it."""
        if kind == Msg.HELLO:
            hub = self.wiring.hub()
            if m.role == Role.BEE and (hub is None or hub.address is None):
                self._unconfigured.append(m)  # configured once the hub's address is known
            else:
                self._configure(m)
        elif kind == Msg.UP:
            self._up(m, cast(Up, body))
        elif kind == Msg.LINKED:
            linked = cast(Linked, body)
            m.linked, m.revoked = frozenset(linked["producers"]), linked["revoked"]
            self._after_change()
        elif kind == Msg.STATUS_OK:
            m.status_ok = cast(StatusOk, body)["version"]
            self._check_change()
        elif kind == Msg.STATS:
            m.stats = cast("BeeStats | HubStats", body)
            if m.role == Role.HUB:
                self.hub_stats = cast(HubStats, body)
            wanted, reported = self._stats_wanted
            wanted.discard(m.identity)
            if not wanted:
                reported.set()
        elif kind == Msg.BUSY:
            busy = cast(Busy, body)
            m.busy = busy if busy else None
            self._push_status(force=True)
        elif kind == Msg.BEAT and self._beats is not None:
            beat = cast(Beat, body)
            if m.role == Role.HUB and beat.get("ports"):
                self.ports.update(beat.get("ports", {}))
            if m.role == Role.HUB and "tally" in beat:  # this controller may be a restarted one
                self._carry_on(beat["tally"])
            if self._beats.on_beat(m, beat, self.wiring, self.units):
                self._after_change()
        elif kind == Msg.BYE:
            if isinstance(m.handle, BeatHandle):  # a stack's task: drained, it exits now
                m.handle.bye()
            m.state = MemberState.STOPPING
            if m.role == Role.HUB and self._stopping:
                self.unprocessed = cast(Bye, body).get("journal", 0)

    def _carry_on(self, tally: Tally) -> None:
        """Counts as the hub last heard them from a controller (counts only grow)."""
        self.hub_restarts = max(self.hub_restarts, tally["hub_restarts"])
        for bee, deaths in tally["deaths"].items():
            if bee in self.units.bees or bee in self.topology.bees:
                past = self.wiring.past.setdefault(bee, Past())
                past.deaths = max(past.deaths, deaths)

    def _up(self, m: Member, up: Up) -> None:
        m.state = MemberState.UP
        m.address = up["address"]
        if m.role == Role.HUB:
            self.ports.update(up.get("ports", {}))
            waiting, self._unconfigured = self._unconfigured, []
            for w in waiting:
                if w.identity in self.wiring.members:
                    self._configure(w)
        self._after_change()

    def _configure(self, m: Member) -> None:
        self._send(m, Msg.CONFIG, self._config_for(m), pickled=True)
        m.routes_sent = self.wiring.routes_for(m)
        if m.role == Role.BEE:
            m.links_sent = self._links_for(m)
        m.state = MemberState.CONFIGURED

    def _config_for(self, m: Member) -> HubConfig | BeeConfig:
        routes = self.wiring.routes_for(m)
        if m.role == Role.HUB:
            # a restarted hub takes the same ports: URLs hold
            return HubConfig(
                gateways=list(self.topology.gateways.values()),
                bus_host=self.launcher.peer_host if self.adopt else self.launcher.bind_host,
                ports=dict(self.ports),
                routes=routes,
                journal=self.adopt.journal if self.adopt else str(self.record.log_dir / "journal.sqlite"),
            )
        spec = self.units.bees[m.name]
        stages = spec.stages or (spec,)
        stack = self.adopt is not None  # a stack's replica has its code in its image
        return BeeConfig(
            replica=m.replica,
            spec=spec,
            routes=routes,
            links=self._links_for(m),
            peer_host=self.launcher.peer_host,
            timeout=self.units.call_timeout(spec),
            sources={} if stack else {s.name: capture(s.fn) for s in stages},
            imports=[] if stack else sorted(set().union(*(imported_modules(s.fn) for s in stages))),
        )

    def _links_for(self, m: Member) -> LinksBody:
        """The LINKS body of a bee replica; the hub's address as this runtime's replicas dial it."""
        body = self.wiring.links_for(m)
        hub = self.wiring.hub()
        if hub is not None and hub.identity in body["links"]:
            spec = self.units.bees.get(m.name)
            body["links"][hub.identity] = self.launcher.advertise(body["links"][hub.identity], spec)
        return body

    # -- readiness -------------------------------------------------------------------

    def _after_change(self) -> None:
        """Tell every process what changed for it, retire what is replaced, report."""
        if self._beats is not None and self._beats.quiet():  # learning the swarm: listen only
            self.wiring.note_ready()
            self._push_status(force=True)
            return
        for m in list(self.wiring.members.values()):
            if m.state != MemberState.UP:
                continue
            routes = self.wiring.routes_for(m)
            # a replaced replica keeps its routes: what it still makes goes where it did
            # (after a regroup, the bees it fed may exist only inside the new group)
            if routes != m.routes_sent and not m.retiring:
                m.routes_sent = routes
                self._send(m, Msg.ROUTES, routes)
            if m.role == Role.BEE:
                links = self._links_for(m)
                if links != m.links_sent:
                    m.links_sent = links
                    self._send(m, Msg.LINKS, links)
        self.wiring.note_ready()
        for m in self.wiring.to_retire():
            m.retire_sent = True
            self._send(m, Msg.RETIRE)
        self._push_status(force=True)
        self._check_change()
        self._write_record()

    def _write_record(self) -> None:
        r = self.record
        fields = reports.record_fields(self.topology, self.wiring, self.ports)
        if fields != (r.gateways, r.bees, r.pids) and not self._stopping:
            r.gateways, r.bees, r.pids = fields
            state.write(r)

    def _push_status(self, force: bool = False) -> None:
        bees = self.wiring.bee_stats()
        # a bee whose every ready replica is stuck in a call takes no work: not ready
        not_ready = sorted(n for n, st in bees.items() if st["ready"] == 0 or st["state"] == BeeState.STUCK)
        short = sorted(
            n for n, st in bees.items() if st["ready"] < st["wanted"] or st["state"] == BeeState.STUCK
        )
        bee_figures = [
            (
                st["handled"],
                st["errors"],
                st["deaths"],
                st["retried"],
                st["dropped"],
                st["state"],
                st["failing"],
            )
            for _, st in sorted(bees.items())
        ]
        key = (not_ready, short, self.hub_restarts, bee_figures)
        now = time.monotonic()
        since = now - self._status_sent
        if key == self._status_key:
            if since < _STATUS_REFRESH:
                return
        elif not force and since < _STATUS_EVERY:
            return
        self._status_key = key
        self._status_sent = now
        self._status_version += 1
        body = Status(
            version=self._status_version,
            serving=not not_ready,
            healthy=not short,
            not_ready=short,
            bees=bees,
            hub_restarts=self.hub_restarts,
        )
        hub = self.wiring.hub()
        if hub is not None and hub.state == MemberState.UP:
            self._send(hub, Msg.STATUS, body)

    def _check_change(self) -> None:
        change = self._change
        if change is None or change.done.is_set() or self._stopping:
            return
        if self.wiring.settled() and self.wiring.hub_acked(self._status_version):
            change.done.set()

    def _set_plan(self, bees: dict[str, BeeSpec], units: dict[str, BeeSpec], forced: set[str]) -> None:
        self.topology.bees = bees
        self._kill(changes.replan(self.units, self.wiring, units, forced))
        self._refill(time.monotonic())
        self._after_change()

    def _unset_plan(
        self,
        bees: dict[str, BeeSpec],
        units: dict[str, BeeSpec],
        tried: dict[str, BeeSpec],
        forced: set[str],
    ) -> None:
        self.topology.bees = bees
        self._kill(changes.unplan(self.units, self.wiring, units, tried, forced))
        self._refill(time.monotonic())
        self._after_change()

    @staticmethod
    def _kill(members: list[Member]) -> None:
        for m in members:
            if m.handle is not None:
                m.handle.kill()

    def _add_gateway(self, spec: GatewaySpec) -> None:
        self.topology.gateways[spec.name] = spec
        hub = self.wiring.hub()
        if hub is not None:
            self._send(hub, Msg.GATEWAYS, list(self.topology.gateways.values()), pickled=True)

    # -- processes -------------------------------------------------------------------

    def _launch_all(self) -> None:
        for key in self.wiring.want():
            self._launch(*key)

    def _launch(self, role: Role, name: str, replica: int) -> None:
        slot = self.wiring.slots[(role, name, replica)]
        # never reused within the swarm, even by a slot made again after a scale down:
        # every process remembers the sequence numbers it saw from each identity, and a
        # newcomer under an old name would be taken for a replay of it. Unguessable: the
        # sockets hand an identity over to whoever dials with it (a replica that dials
        # again takes its place back), so a local process that guessed one could take a
        # replica's place on its links and control channel when the bus is not encrypted
        self._launches += 1
        slot.generation = self._launches
        identity = f"{role}:{name}:{replica}:{self._launches}.{secrets.token_hex(8)}"
        spec = self.units.bees[name] if role == Role.BEE else None
        control = self.launcher.advertise(self.control_address, spec)
        boot = Boot(self._key, control, identity, self._bus_keys, supervisor=self._codec.me)
        module = "bytewax_nb.replica" if role == Role.BEE else "bytewax_nb.gateway"  # the hub
        env = spec.env if spec is not None else {}
        handle: Handle
        try:
            handle = self.launcher.launch(identity, module, boot, env, self._on_line, spec)
        except Exception as exc:  # noqa: BLE001 - a launch that fails is a replica that died
            self._on_line(identity, f"bytewax-nb: could not launch: {type(exc).__name__}: {exc}")
            handle = NeverStarted(identity)
        group = tuple(fusion.members(spec)) if spec is not None and spec.stages else ()
        self.wiring.add(Member(identity, role, name, replica, handle, group=group))

    def _on_line(self, identity: str, line: str) -> None:
        # called from reader threads: deque.append is atomic; the callback is the user's
        role, name, replica, _ = identity.split(":")
        bee, line = untag(line)  # a fused group's process says which of its bees printed
        name = bee or name
        key = name if role == Role.BEE else "hub"
        self.logs.setdefault(key, deque(maxlen=_LOG_LINES)).append((time.time(), int(replica), line))
        self._log_files.write(key, f"[{key}/{replica}] {line}")
        if self.on_log is not None:
            self.on_log(role, name, int(replica), line)

    def _tick(self) -> bool:
        """Reap, refill, report; True while there is something to hurry for."""
        now = time.monotonic()
        for m in list(self.wiring.members.values()):
            code = m.handle.exit_code() if m.handle is not None else None
            if code is None:
                continue
            self.wiring.remove(m.identity)
            if m.handle is not None:
                m.handle.close()
            if self._beats is not None:  # seen to end: not one that died unseen
                self._beats.told.add(m.identity)
            if not self._stopping:
                self._on_death(m, code, now)
        self._refill(now)
        self._push_status()
        if self._beats is not None:
            self._stack_tick(now)
        if self._stopping:
            self._stop_step(now)
        return self._stopping or self._change is not None

    def _stack_tick(self, now: float) -> None:
        """A controller's: rewire once the quiet start is over; the hub's `/swarm` view."""
        beats = self._beats
        if beats is None:
            return
        if beats.quiet_ended():
            self._after_change()
        for identity in beats.unseen_dead(self.wiring):
            self._lost_unseen(identity)
        hub = self.wiring.hub()
        if now >= beats.snapshot_at and hub is not None and hub.state == MemberState.UP:
            beats.snapshot_at = now + 1.0
            self._send(hub, Msg.SNAPSHOT, self._snapshot())

    def _on_death(self, m: Member, code: int, now: float) -> None:
        clean = m.retiring and m.retire_sent and code == 0  # retired, drained, gone as asked
        self._tell_lost(m, code, clean)
        # replaced and stopped on purpose, or dying on its way out; a stack's task that went
        # silent died unasked, whatever it was doing (one that drains says BYE)
        if m.retiring and not (code == NO_HEARTBEAT and m.role == Role.BEE):
            self._after_change()
            return
        slot = self.wiring.slots.get(m.slot_key)
        if slot is None:  # a slot removed by a redeploy with fewer replicas
            return
        slot.last_exit = code
        slot.failures += 1  # back to 0 once a replica of the slot is wired again
        slot.restart_at = now + RESTARTS.delay(slot.failures)
        if m.role == Role.HUB:
            self.hub_restarts += 1
        else:
            how = death_error(list(m.bees), m.replica, exit_cause(code), self._tail(m))
            self.wiring.note_death(m, how)
        self._on_line(m.identity, f"bytewax-nb: process exited with code {code}; restarting")
        change = self._change
        if change is not None and RESTARTS.gives_up(slot.failures, slot.ever_ready):
            change.error = (
                f"{m.role} {m.name!r} replica {m.replica} exited {slot.failures} times (last code {code})"
            )
            if change.undo is not None:
                change.undo()
            change.done.set()
        self._after_change()

    def _tail(self, m: Member, lines: int = 10) -> list[str]:
        """Its last lines (a fused group's: all its bees', in the order they came)."""
        return reports.last_lines(self.logs, m.bees if m.role == Role.BEE else ["hub"], m.replica, lines)

    def _lost_unseen(self, identity: str) -> None:
        """A task that died while no controller ran: counted as the engine restarted
        it, and what it held, if anything, is sent again."""
        role, name, replica, _ = identity.split(":")
        self._on_line(identity, "bytewax-nb: died while no controller ran")
        if role == Role.HUB:
            self.hub_restarts += 1
            return
        if name not in self.units.bees:
            return
        m = Member(identity, Role.BEE, name, int(replica), group=tuple(self.wiring.bees_of(name)))
        self.wiring.note_death(m, death_error(list(m.bees), m.replica, exit_cause(NO_HEARTBEAT), []))
        self._tell_lost(m, NO_HEARTBEAT, clean=False)
        self._after_change()

    def _tell_lost(self, m: Member, code: int, clean: bool) -> None:
        """Every process that may have sent it work hears it died: what it held is sent
        again elsewhere, or its callers are told how it died."""
        spec = self.units.bees.get(m.name) if m.role == Role.BEE else None
        body = Lost(
            identity=m.identity,
            bee=m.name,
            message=f"replica {m.replica} of {describe(list(m.bees))} {exit_cause(code)}",
            tail=self._tail(m),
            clean=clean,
            retries=spec.retries if spec is not None else 0,
        )
        for other in self.wiring.members.values():
            if other.state in (MemberState.UP, MemberState.STOPPING) and other.identity != m.identity:
                self._send(other, Msg.LOST, body)

    def _refill(self, now: float) -> None:
        """Launch a process for every empty slot whose back-off has passed."""
        change = self._change
        if self._stopping or (change is not None and change.error is not None and change.what == "start"):
            return
        if self.adopt is not None:  # the engine fills a stack's slots
            return
        filled = {m.slot_key for m in self.wiring.members.values() if not m.retiring}
        for key, slot in self.wiring.slots.items():
            if key not in filled and slot.restart_at <= now:
                self._launch(*key)

    # -- stopping --------------------------------------------------------------------

    def _begin_stop(self, drain_timeout: float) -> None:
        if self._stopping:
            return
        self._stopping = True
        self._stop_phase = StopPhase.GATEWAYS
        self._stop_deadline = time.monotonic() + drain_timeout + 2
        hub = self.wiring.hub()
        if hub is not None:
            self._send(hub, Msg.STOP, StopOrder(drain=drain_timeout))

    def _stop_step(self, now: float) -> None:
        members = self.wiring.members.values()
        if self._stop_phase == StopPhase.GATEWAYS:
            if self.wiring.hub() is not None and now < self._stop_deadline:
                return
            self._stop_phase, self._stop_deadline = StopPhase.BEES, now + 5
            for m in members:
                self._send(m, Msg.STOP)
        elif self._stop_phase == StopPhase.BEES:
            if members and now < self._stop_deadline:
                return
            self._stop_phase, self._stop_deadline = StopPhase.TERMINATE, now + 3
            for m in members:
                if m.handle is not None:
                    m.handle.terminate()
        elif self._stop_phase == StopPhase.TERMINATE:
            if members and now < self._stop_deadline:
                return
            for m in members:
                if m.handle is not None:
                    m.handle.kill()
            self._stop_phase = StopPhase.DONE
        if self._stop_phase == StopPhase.DONE or not members:
            self._stopped.set()

    # -- reports ---------------------------------------------------------------------

    def _snapshot(self) -> SwarmStatus:
        """`status()`; a stack's controller sends it to the hub for `/swarm`."""
        status = reports.snapshot(
            self.swarm,
            self._ready.is_set(),
            self.topology,
            self.wiring,
            self.ports,
            self.hub_stats,
            self.hub_restarts,
        )
        if self._beats is not None:
            status["controller_since"] = self._beats.since
        return status

    def _not_ready_report(self) -> str:
        return reports.not_ready_report(self.wiring, self.logs)
