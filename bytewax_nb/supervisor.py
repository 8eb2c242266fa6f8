"""The supervisor: launches a swarm's processes, proves the bus is wired, keeps it alive.

It runs in one thread of the owner (kernel or CLI) and owns the control ROUTER, so
every socket is used by the thread that made it. The API thread talks to it through
a command queue and waits on events, never on sleeps.

Readiness is proven, not assumed: for every edge (producer replica -> consumer
replica, and every bee -> gateway for responses) the producer publishes probe frames
until the consumer reports one arrived. Only then is a replica given a shard of its
bee's messages, and only when every gateway has heard that the swarm serves does
`start()` return: no slow-joiner loss.
"""

from __future__ import annotations

import contextlib
import queue
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

import zmq

from .bus import BusProxy
from .child import Boot
from .control import ControlCodec, Msg
from .errors import StartError
from .runtime.base import Handle, Launcher
from .spec import Topology
from .wire import Signer, response_topic, topic_of

__all__ = ["Supervisor"]

T = TypeVar("T")
_LOG_LINES = 2000
_MAX_START_FAILURES = 3
_STATUS_EVERY = 0.25


@dataclass
class Member:
    """One running replica (role "bee") or gateway process."""

    identity: str
    role: str
    name: str
    replica: int
    handle: Handle
    state: str = "starting"  # starting -> configured -> up -> stopping
    port: int | None = None
    shard_ok: int = -1
    status_ok: int = -1
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Slot:
    """A wanted (name, replica) position; survives the processes that fill it."""

    failures: int = 0
    restart_at: float = 0.0
    generation: int = 0
    ever_ready: bool = False
    last_exit: int | None = None


class Supervisor:
    """Runs one swarm's processes; every public method is safe from any thread."""

    def __init__(
        self,
        swarm: str,
        topology: Topology,
        launcher: Launcher,
        on_log: Callable[[str, str, int, str], None] | None = None,
    ) -> None:
        self.swarm = swarm
        self.topology = topology
        self.launcher = launcher
        self.on_log = on_log
        self._key = secrets.token_bytes(32)
        self._codec = ControlCodec(Signer(self._key))
        self.ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.bus = BusProxy(self.ctx)
        self._router = self.ctx.socket(zmq.ROUTER)
        self._router.setsockopt(zmq.LINGER, 0)
        self._router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        port = self._router.bind_to_random_port("tcp://127.0.0.1")
        self.control_address = f"tcp://127.0.0.1:{port}"
        wake = f"inproc://bytewax-nb-wake-{id(self)}"
        self._wake_in = self.ctx.socket(zmq.PULL)
        self._wake_in.bind(wake)
        self._wake_out = self.ctx.socket(zmq.PUSH)
        self._wake_out.connect(wake)
        self._wake_lock = threading.Lock()
        self._commands: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self.members: dict[str, Member] = {}
        self.slots: dict[tuple[str, str, int], _Slot] = {}
        self.verified: set[tuple[str, str]] = set()
        self.logs: dict[str, deque[tuple[float, int, str]]] = {}
        self.ports: dict[str, int] = {}
        self._shard_version: dict[str, int] = {}
        self._shard_members: dict[str, list[int]] = {}
        self._status_version = 0
        self._status_sent = 0.0
        self._status_key: Any = None
        self._ready = threading.Event()
        self._start_error: str | None = None
        self._failed = threading.Event()
        self._settled = threading.Event()  # ready or failed: what start() waits for
        self._stopping = False
        self._stopped = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=f"bytewax-nb-{swarm}", daemon=True)
        self._thread.start()

    # -- public API (any thread) ------------------------------------------------------

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

    def start(self, timeout: float) -> None:
        """Launch everything and wait until the swarm serves (or raise StartError)."""
        self.call(self._launch_all)
        self._settled.wait(timeout)
        if not self._ready.is_set():
            why = self._start_error or f"not ready after {timeout:g} s"
            report = self.call(self._not_ready_report)
            raise StartError(f"swarm {self.swarm!r} did not start: {why}\n{report}")

    def stop(self, drain_timeout: float | None = None) -> None:
        """Drain the gateways, stop the bees, reap everything, close every socket."""
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
        for m in list(self.members.values()):
            m.handle.kill()
            m.handle.close()
        self.members.clear()
        self.bus.close()
        self.launcher.close()
        self.ctx.destroy(linger=0)

    def status(self) -> dict[str, Any]:
        return self.call(self._snapshot)

    def log_lines(self, name: str) -> list[str]:
        return [f"[{name}/{r}] {line}" for _, r, line in list(self.logs.get(name, ()))]

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stopping

    # -- the loop (supervisor thread only) ------------------------------------------

    def _post(self, fn: Callable[[], None]) -> None:
        self._commands.put(fn)
        with self._wake_lock:
            self._wake_out.send(b"", zmq.NOBLOCK)

    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self._router, zmq.POLLIN)
        poller.register(self._wake_in, zmq.POLLIN)
        while not self._closed:
            busy = self._unverified() or self._stopping
            events = dict(poller.poll(10 if busy else 100))
            if self._wake_in in events:
                while True:
                    try:
                        self._wake_in.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
            while True:
                try:
                    self._commands.get_nowait()()
                except queue.Empty:
                    break
            if self._router in events:
                self._drain_router()
            self._tick()
        for sock in (self._router, self._wake_in, self._wake_out):
            sock.close(linger=0)

    def _send(self, m: Member, kind: str, body: Any = None, *, pickled: bool = False) -> None:
        # not connected yet, or gone: probes are retried and deaths are noticed
        with contextlib.suppress(zmq.ZMQError):
            self._router.send_multipart([m.identity.encode(), *self._codec.pack(kind, body, pickled=pickled)])

    def _drain_router(self) -> None:
        while True:
            try:
                frames = self._router.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            m = self.members.get(frames[0].decode(errors="replace"))
            msg = self._codec.unpack(frames[1:])
            if m is None or msg is None:
                continue
            self._on_message(m, *msg)

    def _on_message(self, m: Member, kind: str, body: Any) -> None:
        if kind == Msg.HELLO:
            self._send(m, Msg.CONFIG, self._config_for(m), pickled=True)
            m.state = "configured"
        elif kind == Msg.UP:
            m.state = "up"
            if m.role == "gateway":
                m.port = int(body["port"])
                self.ports[m.name] = m.port
            self._probe(only=m.identity)
            self._after_change()
        elif kind == Msg.SAW:
            producer = str(body["producer"])
            if producer in self.members:
                self.verified.add((producer, m.identity))
                self._after_change()
        elif kind == Msg.SHARD_OK:
            m.shard_ok = int(body["version"])
            self._after_change()
        elif kind == Msg.STATUS_OK:
            m.status_ok = int(body["version"])
            self._after_change()
        elif kind == Msg.STATS:
            m.stats = body
        elif kind == Msg.BYE:
            m.state = "stopping"

    # -- wiring and readiness --------------------------------------------------------

    def _config_for(self, m: Member) -> dict[str, Any]:
        config: dict[str, Any] = {"bus": self.bus.addresses, "replica": m.replica}
        if m.role == "bee":
            config["spec"] = self.topology.bees[m.name]
            config["sink"] = self.topology.is_sink(m.name)
        else:
            spec = self.topology.gateways[m.name]
            if m.name in self.ports:  # a restarted gateway keeps its URL
                spec = type(spec)(**{**spec.__dict__, "port": self.ports[m.name]})
            config["spec"] = spec
        return config

    def _edges(self) -> list[tuple[Member, Member, bytes]]:
        """Every (producer, consumer, topic) between processes that are up."""
        up = [m for m in self.members.values() if m.state == "up"]
        edges = []
        for c in up:
            if c.role == "bee":
                inputs = self.topology.bees[c.name].inputs
                edges += [(p, c, topic_of(p.name)) for p in up if p.name in inputs]
            else:
                edges += [(p, c, response_topic(c.name)) for p in up if p.role == "bee"]
        return edges

    def _unverified(self) -> bool:
        return any((p.identity, c.identity) not in self.verified for p, c, _ in self._edges())

    def _probe(self, only: str | None = None) -> None:
        by_producer: dict[str, tuple[Member, set[bytes]]] = {}
        for p, c, topic in self._edges():
            if (p.identity, c.identity) in self.verified:
                continue
            if only is not None and only not in (p.identity, c.identity):
                continue
            by_producer.setdefault(p.identity, (p, set()))[1].add(topic)
        for p, topics in by_producer.values():
            token = secrets.token_hex(4)
            self._send(p, Msg.PROBE, {"token": token, "topics": [t.decode("latin-1") for t in topics]})

    def _is_wired(self, m: Member, edges: list[tuple[Member, Member, bytes]]) -> bool:
        if m.state != "up":
            return False
        return all((p.identity, c.identity) in self.verified for p, c, _ in edges if m in (p, c))

    def _after_change(self) -> None:
        """Recompute shards and gateway status after anything that may change them."""
        edges = self._edges()
        for name in self.topology.bees:
            active = sorted(
                m.replica
                for m in self.members.values()
                if m.role == "bee" and m.name == name and self._is_wired(m, edges)
            )
            if active != self._shard_members.get(name):
                self._shard_members[name] = active
                version = self._shard_version[name] = self._shard_version.get(name, 0) + 1
                for m in self._bee_members(name):
                    self._send(m, Msg.SHARD, {"members": active, "version": version})
        for m in self.members.values():
            if self._is_wired(m, edges):
                slot = self.slots.get((m.role, m.name, m.replica))
                if slot is not None and not slot.ever_ready:
                    slot.ever_ready = True
                    slot.failures = 0
        self._push_status(force=True)
        self._check_ready()

    def _bee_members(self, name: str) -> list[Member]:
        return [m for m in self.members.values() if m.role == "bee" and m.name == name and m.state == "up"]

    def _serving_bees(self) -> dict[str, int]:
        """Replicas that own a shard and have acknowledged it, per bee."""
        out = {}
        for name in self.topology.bees:
            version = self._shard_version.get(name, 0)
            members = set(self._shard_members.get(name, []))
            out[name] = sum(
                1 for m in self._bee_members(name) if m.replica in members and m.shard_ok == version
            )
        return out

    def _push_status(self, force: bool = False) -> None:
        serving_by_bee = self._serving_bees()
        bees = self._bee_stats(serving_by_bee)
        not_ready = sorted(n for n, k in serving_by_bee.items() if k == 0)
        unhealthy = sorted(n for n, st in bees.items() if st["ready"] < st["wanted"])
        key = (not_ready, unhealthy, [(n, st["handled"], st["errors"]) for n, st in sorted(bees.items())])
        now = time.monotonic()
        since = now - self._status_sent
        if key == self._status_key:
            if since < 5:  # unchanged: refresh now and then for the latency figures
                return
        elif not force and since < _STATUS_EVERY:
            return
        self._status_key = key
        self._status_sent = now
        self._status_version += 1
        body = {
            "version": self._status_version,
            "serving": not not_ready,
            "healthy": not unhealthy and not not_ready,
            "not_ready": not_ready or unhealthy,
            "bees": bees,
        }
        for m in self.members.values():
            if m.role == "gateway" and m.state == "up":
                self._send(m, Msg.STATUS, body)

    def _bee_stats(self, serving: dict[str, int]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, spec in self.topology.bees.items():
            reps = [m.stats for m in self.members.values() if m.role == "bee" and m.name == name]
            handled = sum(s.get("handled", 0) for s in reps)
            out[name] = {
                "handled": handled,
                "errors": sum(s.get("errors", 0) for s in reps),
                "dropped": sum(s.get("dropped", 0) for s in reps),
                "p50_ms": max((s.get("p50_ms", 0.0) for s in reps), default=0.0),
                "p99_ms": max((s.get("p99_ms", 0.0) for s in reps), default=0.0),
                "batch": max((s.get("batch", 1.0) for s in reps), default=1.0),
                "pending_joins": sum(s.get("pending_joins", 0) for s in reps),
                "ready": serving.get(name, 0),
                "wanted": spec.replicas,
            }
        return out

    def _check_ready(self) -> None:
        if self._stopping:
            return
        serving = self._serving_bees()
        bees_ok = all(serving[n] == b.replicas for n, b in self.topology.bees.items())
        gateways = [m for m in self.members.values() if m.role == "gateway"]
        gateways_ok = len(gateways) == len(self.topology.gateways) and all(
            g.state == "up" and g.status_ok == self._status_version for g in gateways
        )
        if bees_ok and gateways_ok:
            self._ready.set()
            self._settled.set()

    # -- processes ------------------------------------------------------------------

    def _launch_all(self) -> None:
        for name in self.topology.gateways:
            self.slots[("gateway", name, 0)] = _Slot()
        for name, bee in self.topology.bees.items():
            for r in range(bee.replicas):
                self.slots[("bee", name, r)] = _Slot()
        for key in self.slots:
            self._launch(*key)

    def _launch(self, role: str, name: str, replica: int) -> None:
        slot = self.slots[(role, name, replica)]
        slot.generation += 1
        identity = f"{role}:{name}:{replica}:{slot.generation}"
        boot = Boot(self._key, self.control_address, identity)
        module = "bytewax_nb.runner" if role == "bee" else "bytewax_nb.gateway"
        env = self.topology.bees[name].env if role == "bee" else {}
        handle = self.launcher.launch(identity, module, boot, env, self._on_line)
        self.members[identity] = Member(identity, role, name, replica, handle)

    def _on_line(self, identity: str, line: str) -> None:
        # reader threads call this: deque.append is atomic, the callback is the user's
        role, name, replica, _ = identity.split(":")
        key = name if role == "bee" else f"gateway:{name}"
        self.logs.setdefault(key, deque(maxlen=_LOG_LINES)).append((time.time(), int(replica), line))
        if self.on_log is not None:
            self.on_log(role, name, int(replica), line)

    def _tick(self) -> None:
        now = time.monotonic()
        for m in list(self.members.values()):
            code = m.handle.exit_code()
            if code is None:
                continue
            del self.members[m.identity]
            self.verified = {e for e in self.verified if m.identity not in e}
            m.handle.close()
            if self._stopping:
                continue
            slot = self.slots[(m.role, m.name, m.replica)]
            slot.last_exit = code
            slot.failures += 1
            slot.restart_at = now + min(0.1 * 2 ** (slot.failures - 1), 5.0)
            self._on_line(m.identity, f"bytewax-nb: process exited with code {code}; restarting")
            if not slot.ever_ready and slot.failures >= _MAX_START_FAILURES and not self._ready.is_set():
                self._start_error = (
                    f"{m.role} {m.name!r} replica {m.replica} exited {slot.failures} times (last code {code})"
                )
                self._failed.set()
                self._settled.set()
            self._after_change()
        if not self._stopping and not self._failed.is_set():
            filled = {(m.role, m.name, m.replica) for m in self.members.values()}
            for key, slot in self.slots.items():
                if key not in filled and slot.restart_at <= now:
                    self._launch(*key)
        if self._unverified():
            self._probe()
        self._push_status()
        if self._stopping:
            self._stop_step(now)

    # -- stopping -------------------------------------------------------------------

    def _begin_stop(self, drain_timeout: float) -> None:
        self._stopping = True
        self._stop_phase = "gateways"
        self._stop_deadline = time.monotonic() + drain_timeout + 2
        for m in self.members.values():
            if m.role == "gateway":
                self._send(m, Msg.STOP, {"drain": drain_timeout})

    def _stop_step(self, now: float) -> None:
        if self._stop_phase == "gateways":
            if any(m.role == "gateway" for m in self.members.values()) and now < self._stop_deadline:
                return
            self._stop_phase = "bees"
            self._stop_deadline = now + 5
            for m in self.members.values():
                self._send(m, Msg.STOP)
        elif self._stop_phase == "bees":
            if self.members and now < self._stop_deadline:
                return
            self._stop_phase = "kill"
            self._stop_deadline = now + 3
            for m in self.members.values():
                m.handle.terminate()
        elif self._stop_phase == "kill":
            if self.members and now < self._stop_deadline:
                return
            for m in self.members.values():
                m.handle.kill()
            self._stop_phase = "done"
        if self._stop_phase == "done" or not self.members:
            self._stopped.set()

    # -- reports --------------------------------------------------------------------

    def _snapshot(self) -> dict[str, Any]:
        serving = self._serving_bees()
        return {
            "swarm": self.swarm,
            "ready": self._ready.is_set(),
            "gateways": {
                name: {
                    "port": self.ports.get(name),
                    "host": g.host,
                    "timeout": g.timeout,
                    "pid": next(
                        (
                            m.handle.pid
                            for m in self.members.values()
                            if m.role == "gateway" and m.name == name
                        ),
                        None,
                    ),
                }
                for name, g in self.topology.gateways.items()
            },
            "bees": {
                name: {
                    **st,
                    "input": list(self.topology.bees[name].inputs),
                    "join": self.topology.bees[name].join,
                    "replicas": self._replicas(name),
                }
                for name, st in self._bee_stats(serving).items()
            },
        }

    def _replicas(self, name: str) -> list[dict[str, Any]]:
        return [
            {"replica": m.replica, "pid": m.handle.pid, "state": m.state, **m.stats}
            for m in sorted(self.members.values(), key=lambda m: m.replica)
            if m.role == "bee" and m.name == name
        ]

    def _not_ready_report(self) -> str:
        lines = []
        for (role, name, replica), slot in sorted(self.slots.items()):
            up = [m for m in self.members.values() if (m.role, m.name, m.replica) == (role, name, replica)]
            state = up[0].state if up else f"exited (code {slot.last_exit})"
            lines.append(f"  {role} {name}/{replica}: {state}")
            key = name if role == "bee" else f"gateway:{name}"
            tail = [line for _, r, line in list(self.logs.get(key, ())) if r == replica][-15:]
            lines += [f"    | {t}" for t in tail]
        return "\n".join(lines)
