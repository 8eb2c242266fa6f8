"""The supervisor: launches a swarm's processes, proves the bus is wired, keeps it alive.

It runs in one thread of the owner (kernel or CLI) and owns the control ROUTER, so
every socket is used by the thread that made it. Other threads talk to it through its
mailbox and wait on events, never on sleeps. It launches the hub first (the gateways);
bee replicas get their configuration once the hub's link socket has an address.

It is a few parts around one loop, each in its own module: the channel (the control
socket and the swarm's keys), `configure` (what each process is told), `lifecycle`
(launches, deaths, restarts), `readiness` (when the swarm serves, what the hub hears),
`applier` (changes, one at a time, undone if they cannot settle), `stopping`, and, in a
deployed stack's controller, `adoption` (the engine starts the processes, and they
register with it: see `bytewax_nb.stack`). What they share is the `Book`.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, cast

import zmq

from ..model.protocol import (
    Beat,
    BeeStats,
    Busy,
    Bye,
    HubStats,
    Linked,
    MemberState,
    Msg,
    Role,
    StatusOk,
    SwarmStatus,
    Up,
)
from ..model.spec import BeeSpec, GatewaySpec, Topology
from ..runtime.base import Launcher
from . import reports, state
from .adoption import Adopt, Adoption, BeatHandle
from .applier import Applier
from .book import Book
from .changes import Change
from .channel import ControlChannel
from .commands import CommandSocket, swarm_actions
from .configure import Configurator
from .lifecycle import Lifecycle
from .logbook import LogBook, LogCallback
from .mailbox import Mailbox
from .readiness import Readiness
from .scaling import Resize, Scaling, cores_cap
from .stopping import Stopping
from .wiring import Member

__all__ = ["LogCallback", "Supervisor"]


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
        self.book = Book.of(swarm, topology, fuse)
        self.launcher = launcher
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        if adopt is not None:  # a stack's controller: its keys and port are the stack's
            self.channel = ControlChannel(
                self.ctx, launcher.bind_host, key=adopt.key, bus_keys=adopt.curve, port=adopt.port
            )
        else:
            self.channel = ControlChannel(self.ctx, launcher.bind_host)
        self.mailbox = Mailbox(self.ctx)
        self.ports = self.book.ports  # gateway -> port (the same dict, updated as gateways start)
        # what `swarm.request` shows the gateways to get bees' tracebacks (see `gateway.http`)
        self.traceback_token = self.channel.traceback_token
        # what the bytewax-nb command sees: a record, log files, a socket for `stop`
        self.record = state.Record(swarm, os.getpid(), time.time(), launcher.name)
        self.logs = LogBook(self.record.log_dir, on_log)
        self.adoption = Adoption(adopt, self.book, self.logs.add) if adopt is not None else None
        journal = adopt.journal if adopt is not None else str(self.record.log_dir / "journal.sqlite")
        self.configurator = Configurator(self.book, launcher, self._send, journal, stack=adopt is not None)
        self.lifecycle = Lifecycle(
            self.book, self.channel, launcher, self.logs, self._after_change, launches=adopt is None
        )
        self.readiness = Readiness()
        self.applier = Applier(
            self.book,
            launcher,
            self.mailbox,
            self._replanned,
            self._settle,
            self._send_hub,
            lambda: reports.not_ready_report(self.book.wiring, self.logs.lines),
        )
        self.stopping = Stopping()
        # an owner's supervisor scales autoscaled bees itself (a stack's, the engine does)
        self.scaling = (
            Scaling(self.book, cores_cap(str(launcher.name)), self.applier.resize, self._say)
            if adopt is None
            else None
        )
        self._commands = CommandSocket(self.ctx, self.record.control)
        self._cli_actions = swarm_actions(
            status=self.status,
            bees=lambda: self.book.topology.bees,
            scale=self.scale,
            redeploy=self.deploy,
            runtime=str(launcher.name),
        )
        self._stop_lock = threading.Lock()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=f"bytewax-nb-{swarm}", daemon=True)
        self._thread.start()

    # -- what others read ------------------------------------------------------------

    @property
    def unprocessed(self) -> int:
        """Accepted submits no bee had taken when the swarm stopped."""
        return self.book.unprocessed

    @property
    def stopped(self) -> bool:
        """Stopping or stopped, by the owner or by `bytewax-nb stop`."""
        return self.stopping.stopping or self._closed

    def log_lines(self, name: str) -> list[str]:
        return self.logs.of(name)

    # -- public API (any thread) -----------------------------------------------------

    def prepare(self) -> None:
        """Get every process-level bee's image ready (builds happen here, in the caller's
        thread, before anything starts)."""
        self.applier.prepare()

    def start(self, timeout: float) -> None:
        """Launch everything and wait until the swarm serves (or raise StartError)."""
        self.applier.run(Change("start"), self.lifecycle.launch_all, timeout)
        self.readiness.started.set()

    def deploy(self, spec: BeeSpec, timeout: float) -> None:
        """Add a bee, or replace a running one (see `Applier.deploy`)."""
        self.applier.deploy(spec, timeout)

    def scale(self, name: str, replicas: int, timeout: float) -> None:
        """Start or retire replicas of a running bee (see `Applier.scale`)."""
        self.applier.scale(name, replicas, timeout)

    def remove(self, name: str, timeout: float) -> None:
        """Take a bee out: its replicas ask for nothing more, finish what they hold, exit."""
        self.applier.remove(name, timeout)

    def add_gateway(self, spec: GatewaySpec, timeout: float) -> None:
        """Serve one more gateway from the running hub."""
        self.applier.add_gateway(spec, timeout)

    def status(self, fresh: float = 0.5) -> SwarmStatus:
        """The swarm's state; first asks every replica for its counters (up to `fresh` s)."""

        def ask() -> threading.Event:
            up = [m for m in self.book.wiring.members.values() if m.state == MemberState.UP]
            return self.readiness.ask(up, lambda m: self._send(m, Msg.REPORT, None))

        self.mailbox.call(ask).wait(fresh)
        return self.mailbox.call(self._snapshot)

    def stop(self, drain_timeout: float | None = None) -> None:
        """Drain the gateways, stop the bees, reap everything, close every socket."""
        with self._stop_lock:
            if self._closed:
                return
            if drain_timeout is None:
                drain_timeout = max((g.timeout for g in self.book.topology.gateways.values()), default=5.0)
            if self._thread.is_alive():
                drain, hub = drain_timeout, self.book.wiring.hub
                self.mailbox.post(lambda: self._begin_stopping(drain, hub()))
                self.stopping.stopped.wait(drain_timeout + 15)
            self._end(kill=True)

    def _begin_stopping(self, drain: float, hub: Member | None) -> None:
        """No change goes on while the swarm stops: the one under way (the user's or the
        autoscaler's) ends with an error now, and launches nothing more."""
        if self.scaling is not None:
            self.scaling.stop()
        change = self.applier.current
        if change is not None and not change.done.is_set():
            change.error = "the swarm is stopping"
            change.done.set()
        self.stopping.begin(time.monotonic(), drain, hub, self._send)

    def serve(self) -> None:
        """A controller's start: nothing to launch, the swarm registers as it comes."""
        self.readiness.started.set()

    def detach(self) -> None:
        """A controller's end: close our sockets and leave every task running (the engine
        owns them; a new controller adopts them)."""
        with self._stop_lock:
            if not self._closed:
                self._end(kill=False)

    def _end(self, kill: bool) -> None:
        if self._thread.is_alive():
            self.mailbox.post(lambda: setattr(self, "_closed", True))
            self._thread.join(timeout=10)
        self._closed = True
        if kill:
            for m in list(self.book.wiring.members.values()):
                if m.handle is not None:
                    m.handle.kill()
                    m.handle.close()
            self.book.wiring.members.clear()
            self.launcher.close()
        self.logs.close()
        state.remove(self.record, logs=True)
        self.channel.close()
        self.ctx.destroy(linger=0)

    # -- the loop (supervisor thread only) -------------------------------------------

    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self.channel.router, zmq.POLLIN)
        poller.register(self.mailbox.socket, zmq.POLLIN)
        cli = self._commands
        if cli.socket is not None:
            poller.register(cli.socket, zmq.POLLIN)
        busy = True
        while not self._closed:
            events = dict(poller.poll(10 if busy else 100))
            if self.mailbox.socket in events:
                self.mailbox.run_all(self._guarded)
            if self.channel.router in events:
                self._guarded("reading the control channel", self._read_channel)
            if cli.socket in events and cli.ready:
                self._guarded("answering the command line", self._answer_cli)
            busy = self._guarded("watching the processes", self._tick) is not False
        self.mailbox.close()
        cli.close()

    def _guarded(self, what: str, step: Callable[[], Any]) -> Any:
        """Run one step of the loop; whatever it raises is reported, and the loop goes on.

        The supervisor thread must outlive any mistake (a bee that cannot be pickled, a
        bug of ours): if it died, every later call would hang on its mailbox. The change
        in progress, if any, fails at once with the error, and is undone.
        """
        try:
            return step()
        except Exception as exc:  # noqa: BLE001 - reported to the caller of the change, never fatal
            text = "".join(traceback.format_exception(exc)).rstrip()
            self.logs.add("hub:hub:0:0", f"bytewax-nb: supervisor error while {what}:\n{text}")
            change = self.applier.current
            if change is not None and not change.done.is_set():
                change.error = f"{type(exc).__name__}: {exc} (while {what})"
                if change.undo is not None:
                    with contextlib.suppress(Exception):  # the error above is what the caller sees
                        change.undo()
                change.done.set()
            return None

    def _answer_cli(self) -> None:
        self._commands.handle(
            stopping=self.stopping.stopping, stop=self.stop, actions=self._cli_actions, post=self.mailbox.post
        )

    def autoscale_with(self, cap: Callable[[BeeSpec], int | None], resize: Resize) -> None:
        """A stack's controller: its autoscaled bees are scaled by the engine (`resize`),
        `cap` replicas at most each (see `bytewax_nb.stack.scaler`)."""
        self.scaling = Scaling(self.book, cap, resize, self._say)

    def _say(self, bee: str, line: str) -> None:
        """A line of the swarm's own into a bee's log (what the autoscaler decided)."""
        self.logs.add(f"{Role.BEE}:{bee}:0:0", line)

    def _send(self, m: Member, kind: Msg, body: Any) -> None:
        self.channel.send(m.identity, kind, body)

    def _send_hub(self, kind: Msg, body: Any) -> None:
        hub = self.book.wiring.hub()
        if hub is not None and (kind not in (Msg.STATUS, Msg.SNAPSHOT) or hub.state == MemberState.UP):
            self.channel.send(hub.identity, kind, body)

    def _read_channel(self) -> None:
        wiring = self.book.wiring
        for identity, kind, body in self.channel.receive():
            m = wiring.members.get(identity)
            if m is None and self.adoption is not None:  # a stack's task registers
                m = self.adoption.register(identity, kind, body)
            if m is not None:
                self._on_message(m, kind, body)

    def _on_message(self, m: Member, kind: Msg, body: Any) -> None:
        """One verified control message from `m`; `body` is what `protocol` names for it."""
        book = self.book
        if kind == Msg.HELLO:
            self.configurator.hello(m)
        elif kind == Msg.UP:
            self.configurator.up(m, cast(Up, body))
            self._after_change()
        elif kind == Msg.LINKED:
            linked = cast(Linked, body)
            m.linked, m.revoked = frozenset(linked["producers"]), linked["revoked"]
            self._after_change()
        elif kind == Msg.STATUS_OK:
            m.status_ok = cast(StatusOk, body)["version"]
            self._settle()
        elif kind == Msg.STATS:
            m.stats = cast("BeeStats | HubStats", body)
            if m.role == Role.HUB:
                book.hub_stats = cast(HubStats, body)
            self.readiness.heard(m.identity)
        elif kind == Msg.BUSY:
            busy = cast(Busy, body)
            m.busy = busy if busy else None
            self.readiness.push(book, self._send_hub, force=True)
        elif kind == Msg.BEAT and self.adoption is not None:
            if self.adoption.beat(m, cast(Beat, body)):
                self._after_change()
        elif kind == Msg.BYE:
            if isinstance(m.handle, BeatHandle):  # a stack's task: drained, it exits now
                m.handle.bye()
            m.state = MemberState.STOPPING
            if m.role == Role.HUB and self.stopping.stopping:
                book.unprocessed = cast(Bye, body).get("journal", 0)

    def _tick(self) -> bool:
        """Reap, refill, report; True while there is something to hurry for."""
        now = time.monotonic()
        for m, code in self.lifecycle.reap():
            if self.adoption is not None:
                self.adoption.ended(m)
            if not self.stopping.stopping:
                self.lifecycle.died(m, code, now, self.applier.current)
        if not self.stopping.stopping:
            self.lifecycle.refill(now, self.applier.current)
        self.readiness.push(self.book, self._send_hub)
        if self.adoption is not None:
            self.adoption.tick(
                now,
                self._after_change,
                self.lifecycle.died_unseen,
                lambda: self._send_hub(Msg.SNAPSHOT, self._snapshot()),
            )
        if self.stopping.stopping:
            wiring = self.book.wiring
            self.stopping.step(now, list(wiring.members.values()), wiring.hub(), self._send)
        elif (
            self.scaling is not None
            and self.readiness.started.is_set()
            and not (self.adoption is not None and self.adoption.quiet())  # learning the swarm
        ):
            self.scaling.tick(now, busy=self.applier.current is not None)
        return self.stopping.stopping or self.applier.current is not None

    # -- after every change (supervisor thread) --------------------------------------

    def _after_change(self) -> None:
        """Tell every process what changed for it, retire what is replaced, report."""
        book = self.book
        if self.adoption is not None and self.adoption.quiet():  # learning the swarm: listen only
            book.wiring.note_ready()
            self.readiness.push(book, self._send_hub, force=True)
            return
        self.configurator.rewire()
        self.readiness.push(book, self._send_hub, force=True)
        self._settle()
        if not self.stopping.stopping:  # what `bytewax-nb list` shows
            state.update(self.record, *reports.record_fields(book.topology, book.wiring, book.ports))

    def _settle(self) -> None:
        if not self.stopping.stopping:
            self.readiness.settle(self.book, self.applier.current)

    def _replanned(self, kill: list[Member]) -> None:
        """A change was planned: kill what it drops, launch what it wants, rewire."""
        self.lifecycle.kill(kill)
        if not self.stopping.stopping:
            self.lifecycle.refill(time.monotonic(), self.applier.current)
        self._after_change()

    def _snapshot(self) -> SwarmStatus:
        """`status()`; a stack's controller sends it to the hub for `/swarm`."""
        since = self.adoption.since if self.adoption is not None else None
        # a controller is ready once its quiet start is over: until then a replica that
        # already serves may not have beaten yet, and would show as starting
        learning = self.adoption is not None and self.adoption.quiet()
        return reports.snapshot(self.book, self.readiness.started.is_set() and not learning, since)
