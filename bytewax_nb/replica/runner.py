"""What runs inside one bee replica (a subprocess or a container).

A single-threaded loop: poll, take what arrived on the links (verified before
anything is unpickled), call the bee, send results to the consumers with room and
answers to the hub, then tell each producer which messages are done. A fused group
(see `fusion`) runs its bees as stages of one replica: what a stage produces is the
next stage's call, and only the last stage's results leave the process. The watchdog
thread (see `watchdog`) steps in while a call runs long: it hands the queue back so
nothing waits behind a busy replica, and past the bee's timeout it answers the
call's callers and ends the process.
"""

from __future__ import annotations

import importlib
import logging
import pickle
import signal
import sys
import time
import traceback
from collections import deque
from collections.abc import Iterable
from typing import Any, cast

import zmq

from ..bus.child import Child, read_boot
from ..bus.consumer import InLink, Intake
from ..bus.producer import Dispatcher, died_answer
from ..bus.sockio import readable, recv_routed, send_frames, send_routed
from ..bus.wire import Enc, Header, Kind, Message, dump_json, next_seq, pickled
from ..model.errors import BadRequest
from ..model.fusion import handoff
from ..model.invoke import Context, Invoker
from ..model.protocol import (
    Beat,
    BeeConfig,
    BeeError,
    BeeStats,
    Busy,
    CallStyle,
    LinksBody,
    Lost,
    Msg,
    RoutesBody,
    bee_error,
    routes_from,
    routes_to,
)
from ..model.settings import HEARTBEAT
from ..model.source import restore, user_traceback
from ..model.spec import BeeSpec
from ..model.stagelog import Tagger
from .watchdog import STUCK_AFTER, Watchdog

__all__ = ["Replica", "main"]

_JOIN_TTL = 60.0  # seconds a partial join lives when its request has no deadline
_STATS_EVERY = 0.5
_DRAIN_MAX = 64  # messages handled before what they produced is sent
_HOLD_MAX = 0.0002  # seconds a finished result may wait for the rest of its drain
WINDOW = 128  # messages each producer may send before this replica says which are done
BUNDLE = "/opt/bytewax-nb/bee.pkl"  # in a stack's bee image: the bee's code (see `bytewax_nb.stack`)
# seconds a stopped stack's task waits for producers that may be gone (the whole stack
# is stopping) to confirm they send nothing more, once it holds nothing
_LEAVE_WAIT = 5.0
READY = "/tmp/bytewax-nb-ready"  # a stack's task: made once wired (its healthcheck: start-first updates)

Ack = tuple[InLink, int]  # the link a message came on, and its sequence number there


class _Stage:
    """One bee of the replica (the only one, unless fused) and its own figures."""

    __slots__ = ("errors", "handled", "index", "invoke", "last", "last_error", "latencies", "name")

    def __init__(self, spec: BeeSpec, index: int, last: bool) -> None:
        self.name = spec.name
        self.invoke = Invoker(spec.fn)
        self.index = index
        self.last = last  # its results leave the process
        self.handled = 0
        self.errors = 0
        self.latencies: deque[float] = deque(maxlen=1024)
        self.last_error: BeeError | None = None  # what the widget shows of a bee's last failure


class _ReplicaContext(Context):
    """A context bound to one message and stage; no closures are built per message."""

    __slots__ = ("_header", "_replica", "_stage")

    def __init__(self, replica: Replica, stage: _Stage, header: Header) -> None:
        self.request_id = header.request_id
        self.gateway = header.origin
        self.bee = stage.name
        self._replica = replica
        self._stage = stage
        self._header = header

    def publish(self, data: Any, context: Any = None) -> None:
        if self._stage.last:
            self._replica._publish(self._header, data)
        else:
            self._replica._pass_on(self._stage, self._header, data)

    def respond(self, data: Any, context: Any = None) -> None:
        self._replica._respond(self._header, data, self._stage.name)


class Replica:
    """One replica of one bee, linked to its producers, its consumers and the supervisor."""

    def __init__(self, child: Child, config: BeeConfig) -> None:
        self.child = child
        self.signer = child.signer
        spec: BeeSpec = config["spec"]
        members = spec.stages or (spec,)
        _check_imports(spec.name, config["imports"])
        for member in members:
            restore(member.fn, config["sources"][member.name])
        self.spec = spec
        self.name = spec.name  # what producers send to (a fused group's: its first bee's)
        self.topic = members[-1].name  # what its consumers listen to: its last bee's results
        self.me = child.boot.identity
        self.replica: int = config["replica"]
        self.stages = [_Stage(m, i, i == len(members) - 1) for i, m in enumerate(members)]
        self.pending: deque[tuple[_Stage, Header, Any]] = deque()  # stages' results for the next
        self.current = self.stages[0]  # the stage whose code runs (or ran last)
        # who prints: the output of a fused group's bees is marked with their names
        for t in (sys.stdout, sys.stderr):
            if isinstance(t, Tagger):
                t.who = lambda: self.current.name
        # consumers dial this ROUTER; producers are dialled by the intake's DEALERs
        self.router, self.address = child.link_router(config["peer_host"])
        self.bursts: dict[str, list[Any]] = {}  # consumer identity -> frames of this round
        self.to_hub: list[Any] = []  # answers, to the hub's link
        self.dispatcher = Dispatcher(self.me, self.signer, self._to_consumer)
        self.dispatcher.set_routes(routes_from(config["routes"]))
        self.intake = Intake(child.ctx, self.me, self.name, self.signer, WINDOW)
        self.hub_id: str | None = None
        # what the supervisor knows: the producers that welcomed us, and whether all of
        # them have stopped sending (after a RETIRE)
        self._linked: tuple[set[str], bool] = (set(), False)
        self._set_links(config["links"])
        self.joins: dict[str, tuple[float, dict[str, tuple[Ack, Any]]]] = {}
        self.batch: list[tuple[Ack, Header, Any]] = []
        self.batch_due = 0.0
        self.unreachable = 0
        self.batch_sizes: deque[int] = deque(maxlen=256)
        self._last_stats: tuple[Any, ...] = ()
        self.running = True
        self.out_since = 0.0
        self.leaving = False  # a stack's task the engine stops (SIGTERM): drain, then exit
        self.leave_by = 0.0
        self.beat_every = float(HEARTBEAT.get()) if child.boot.stack else 0.0
        beat = self.beat if self.beat_every else None
        self.watchdog = Watchdog(
            child, config["timeout"], self.give_up, self.give_back, beat, self.beat_every, self.stuck
        )

    @property
    def sink(self) -> bool:
        """Nothing listens to this bee: its return value is the answer."""
        return not self.dispatcher.consumers(self.topic)

    # -- links -----------------------------------------------------------------------

    def _set_links(self, body: LinksBody) -> None:
        self.intake.set_links(body["links"], self.child.secure_client)
        self.hub_id = body["hub"]

    def _to_consumer(self, identity: str, frames: list[Any]) -> None:
        if not self.out_since:
            self.out_since = time.perf_counter()
        self.bursts.setdefault(identity, []).extend(frames)

    def _flush(self) -> None:
        """Send what this round produced, one burst per link, then say what is done.

        A message is acknowledged only once what it produced has left: while results
        wait here for a consumer with room, the producers' windows close and the
        backpressure travels upstream to the gateway."""
        self.out_since = 0.0
        if self.bursts:
            for identity, frames in self.bursts.items():
                try:
                    send_routed(self.router, identity, frames)
                except zmq.ZMQError:  # that consumer is gone: its parcels are retried on LOST
                    self.unreachable += 1
            self.bursts.clear()
        if self.to_hub:
            hub = self.intake.links.get(self.hub_id or "")
            if hub is not None:
                send_frames(hub.sock, self.to_hub)
            else:
                self.unreachable += 1  # the hub is restarting: its callers are gone with it
            self.to_hub = []
        if self.dispatcher.idle:
            self.intake.flush_acks()

    # -- the loop ------------------------------------------------------------------

    def run(self) -> None:
        self.watchdog.start()
        try:
            self._loop()
        finally:
            self.watchdog.stop()

    def _poller(self) -> zmq.Poller:
        poller = zmq.Poller()
        for sock in (*self.intake.sockets(), self.router, self.child.control):
            poller.register(sock, zmq.POLLIN)
        if self.child.stdin_fd is not None:
            poller.register(self.child.stdin_fd, zmq.POLLIN)
        self.intake.changed = False
        return poller

    def _loop(self) -> None:
        poller = self._poller()
        self.child.send(Msg.UP, {"address": self.address})
        next_tick = time.monotonic() + _STATS_EVERY
        next_beat = 0.0
        while self.running:
            if self.intake.changed:
                poller = self._poller()
            now = time.monotonic()
            wait = next_tick - now
            if self.batch:
                wait = min(wait, self.batch_due - now)
            if self.intake.queue:
                wait = 0
            events = dict(poller.poll(max(0, int(wait * 1000) + 1) if wait > 0 else 0))
            clock = time.time()
            for sock in events:
                if sock is self.router:
                    self._drain_router()
                elif sock is self.child.control:
                    self._drain_control()
                elif sock == self.child.stdin_fd:
                    if self.child.owner_gone():
                        return
                else:
                    link = self.intake.link_of(sock)
                    if link is not None:
                        self.intake.read(link, clock)
            if self.leaving and not self.intake.retiring:  # as a RETIRE, with nobody to ask
                self.intake.revoke()
                self.leave_by = now + _LEAVE_WAIT
                next_beat = 0.0  # the controller hears it at once
            if self.intake.news:  # a link was welcomed or revoked: the supervisor counts them
                self.intake.news = False
                linked = (self.intake.welcomed, self.intake.revoked)
                if linked != self._linked:
                    self._linked = linked
                    self.child.send(Msg.LINKED, {"producers": sorted(linked[0]), "revoked": linked[1]})
                    if self.beat_every and self.hub_id and set(self.intake.links) <= linked[0]:
                        open(READY, "w").close()  # the engine may now stop the task it replaces
            if self.beat_every and now >= next_beat:
                next_beat = now + self.beat_every
                self.beat()
            self._work()
            now = time.monotonic()
            if self.batch and now >= self.batch_due:
                self._flush_batch()
            if self.intake.paused:  # a long call (a batch's, say) is over: ask for work again
                self.intake.resume()
            self._flush()
            if now >= next_tick:
                next_tick = now + _STATS_EVERY
                self._purge_joins()
                self.dispatcher.expire(time.time())
                self._send_stats()
            if self.intake.retiring and self._retired(self.leaving and now > self.leave_by):
                break
        self._flush_batch()
        self._flush()
        self.intake.flush_acks()
        self._send_stats(force=True)
        self.child.send(Msg.BYE, {})

    def _work(self) -> None:
        """Handle what waits, in order; send results in bursts, but never sit on them."""
        queue = self.intake.queue
        for _ in range(_DRAIN_MAX):
            if not queue:
                return
            link, msg = queue.popleft()
            self._on_message(link, msg)
            if self.intake.paused:  # the watchdog handed the queue back during a long call
                self.intake.resume()
            if self.out_since and time.perf_counter() - self.out_since > _HOLD_MAX:
                self._flush()  # a slow bee must not sit on finished results

    def _drain_router(self) -> None:
        """Consumers' credits, acknowledgements, returns and revocations."""
        while readable(self.router):
            identity, burst = recv_routed(self.router)
            for frames in burst:
                msg = self.signer.open(frames)
                if msg is None:
                    self.intake.guard.drop("signature")
                    continue
                if not self.intake.guard.admit(msg.header, time.time(), identity):
                    continue
                self.dispatcher.on_frame(identity, msg.header, msg.payload)

    def _drain_control(self) -> None:
        ctl = self.child.control
        while readable(ctl):
            msg = self.child.codec.unpack(ctl.recv_multipart())
            if msg is None:
                self.intake.guard.drop("signature")
                continue
            kind, body = msg
            if kind == Msg.LINKS:
                self._set_links(cast(LinksBody, body))
            elif kind == Msg.ROUTES:
                self.dispatcher.set_routes(routes_from(cast(RoutesBody, body)))
            elif kind == Msg.LOST:
                self._lost(cast(Lost, body))
            elif kind == Msg.REPORT:
                self._send_stats(force=True)
            elif kind == Msg.RETIRE:
                self.intake.revoke()
            elif kind == Msg.STOP:
                self.running = False

    def beat(self) -> None:
        """A stack's heartbeat: alive, and what this replica runs with (for a restarted
        controller, which learns the swarm again from these)."""
        linked, revoked = self._linked
        body = Beat(
            address=self.address,
            links=LinksBody(links={i: k.address for i, k in self.intake.links.items()}, hub=self.hub_id),
            routes=routes_to(self.dispatcher.routes),
            linked=sorted(linked),
            revoked=revoked,
            leaving=self.leaving or self.intake.retiring,
            holding=self.dispatcher.unsettled(),
        )
        self.child.send(Msg.BEAT, body)

    def _lost(self, body: Lost) -> None:
        """A process died: retry what it held of ours, or answer its callers."""
        if body["clean"]:  # retired and drained: everything it held was done
            self.dispatcher.drop(body["identity"])
            return
        text = "\n".join(body["tail"])
        for parcel in self.dispatcher.lost(body["identity"]):
            why = died_answer(body["message"], parcel)
            self.to_hub += self._error_frames(parcel.header, bee_error(parcel.bee, "ReplicaDied", why, text))

    def _retired(self, late: bool = False) -> bool:
        """Retiring, and everything sent to it before its producers' last word is handled
        (`late`: once it holds nothing, whatever they said): parts of joins it cannot
        finish go back to be sent to another replica."""
        drained = not self.intake.queue if late else self.intake.drained(self.intake.links)
        if not drained or self.batch or not self.dispatcher.idle:
            return False
        for _, parts in self.joins.values():
            for (link, seq), _ in parts.values():
                self.intake.giving_back(link, seq)
        self.joins.clear()
        self.intake.flush_returns()
        return True

    # -- one message -----------------------------------------------------------------

    def _on_message(self, link: InLink, msg: Message) -> None:
        header = msg.header
        ack = (link, header.seq)
        try:
            payload = msg.load()
        except Exception as exc:  # noqa: BLE001 - a bad payload is the caller's error
            self._fail(header, exc, self.stages[0])
            self.intake.done(link, header.seq)
            return
        if self.spec.join:
            self._join(ack, header, payload)
        elif self.spec.batch_size > 1:
            if not self.batch:
                self.batch_due = time.monotonic() + self.spec.batch_timeout_ms / 1000
            self.batch.append((ack, header, payload))
            if len(self.batch) >= self.spec.batch_size:
                self._flush_batch()
        else:
            self._call(header, payload, [ack])

    def _call(self, header: Header, payload: Any, acks: list[Ack]) -> None:
        """The first stage's call, then every call it leads to within the process."""
        self._invoke(self.stages[0], header, payload, acks)
        self._run_pending(acks)
        for link, seq in acks:
            self.intake.done(link, seq)

    def _run_pending(self, acks: list[Ack]) -> None:
        pending = self.pending
        while pending:
            stage, header, value = pending.popleft()
            self._invoke(stage, header, value, acks)

    def _invoke(self, stage: _Stage, header: Header, payload: Any, acks: list[Ack]) -> None:
        t = time.perf_counter()
        self.current = stage
        self.watchdog.enter(t, [header], acks)
        try:
            ctx = None if stage.invoke.style == CallStyle.PAYLOAD else _ReplicaContext(self, stage, header)
            result = stage.invoke(payload, ctx)
        except Exception as exc:  # noqa: BLE001 - a bee's error goes to its caller
            self._fail(header, exc, stage)
            result = None
        else:
            stage.handled += 1
        finally:
            self._leave()
            stage.latencies.append(time.perf_counter() - t)
        if result is not None:
            self._deliver(stage, header, result)

    def _deliver(self, stage: _Stage, header: Header, result: Any) -> None:
        if not stage.last:
            self._pass_on(stage, header, result)
        elif self.sink:
            self._respond(header, result, stage.name)
        else:
            self._publish(header, result)

    def _pass_on(self, stage: _Stage, header: Header, data: Any) -> None:
        """A fused stage's result: the next stage's call, on a value no other bee can change."""
        self.pending.append((self.stages[stage.index + 1], header, handoff(data)))

    def _publish(self, header: Header, data: Any) -> None:
        payload, buffers = pickled(data)
        out = Header(Kind.DATA, header.request_id, header.origin, self.topic, header.t0, header.deadline)
        self.dispatcher.publish(self.topic, out, payload, buffers)

    def _respond(self, header: Header, data: Any, bee: str) -> None:
        try:
            body = dump_json(data)
        except TypeError as exc:
            msg = f"the response of bee {bee!r} is not JSON serializable: {exc}"
            self._send_error(header, bee, TypeError(msg), "")
            return
        except ValueError:
            msg = f"the response of bee {bee!r} holds NaN or Infinity, which JSON cannot carry"
            self._send_error(header, bee, ValueError(msg + " (use None, or a string)"), "")
            return
        self.to_hub += self._hub_frames(Kind.RESPONSE, header, bee, body)

    def _hub_frames(self, kind: int, header: Header, bee: str, body: bytes) -> list[Any]:
        out = Header(kind, header.request_id, header.origin, bee, header.t0, enc=Enc.JSON)
        out.seq, out.src, out.dst = next_seq(), self.me, self.hub_id or ""
        if not self.out_since:
            self.out_since = time.perf_counter()
        return self.signer.frames(out, body)

    def _error_frames(self, header: Header, err: BeeError) -> list[Any]:
        err["request_id"] = header.request_id
        return self._hub_frames(Kind.ERROR, header, err["bee"], dump_json(err))

    def _fail(self, header: Header, exc: BaseException, stage: _Stage) -> None:
        if isinstance(exc, BadRequest):  # the caller's mistake, not the bee's: a 400, no traceback
            self.to_hub += self._error_frames(
                header, bee_error(stage.name, "BadRequest", str(exc), status=400)
            )
            return
        stage.errors += 1
        text = "".join(traceback.format_exception(type(exc), exc, user_traceback(exc.__traceback__)))
        print(f"[{stage.name}] request {header.request_id} failed:\n{text}", file=sys.stderr, end="")
        stage.last_error = bee_error(stage.name, type(exc).__name__, str(exc), text, header.request_id)
        self._send_error(header, stage.name, exc, text)

    def _send_error(self, header: Header, bee: str, exc: BaseException, text: str) -> None:
        self.to_hub += self._error_frames(header, bee_error(bee, type(exc).__name__, str(exc), text))

    # -- while a call runs long (the watchdog's thread, holding the sockets) ------------

    def stuck(self, since: float, headers: list[Header], where: str) -> None:
        """A call runs far past its usual time: the supervisor shows it, and counts this
        replica as taking no work until it returns."""
        rid = headers[0].request_id if headers else ""
        self.child.send(Msg.BUSY, Busy(since=since, request_id=rid, bee=self.current.name, where=where))

    def _leave(self) -> None:
        """The bee's code returned: the loop holds its sockets again."""
        if self.watchdog.leave():  # it had been said stuck: it takes work again
            self.child.send(Msg.BUSY, Busy())

    def give_back(self) -> int:
        """A call runs long: hand every message not yet started back to its producer,
        which sends it to a free replica; this one asks again once the call is done."""
        return self.intake.give_back(time.time())

    def give_up(self, stuck: list[Header], acks: list[Ack], timeout: float, stack: str) -> None:
        """The watchdog's last act, past the bee's timeout: answer the stuck call's
        callers, send what is already made, hand back what waits, then the process ends."""
        bee = self.current.name
        why = f"bee {bee!r} did not return within its timeout of {timeout:g} s; replica restarted"
        text = stack + f"BeeTimeout: {why}\n"
        for header in stuck:
            self.to_hub += self._error_frames(header, bee_error(bee, "BeeTimeout", why, text))
            print(f"[{bee}] request {header.request_id}: {why}", file=sys.stderr)
        print(text, file=sys.stderr, end="")
        # what a fused stage made for the next stages of this process dies with it
        gone = f"not processed: bee {bee!r}, in the same process, hung on another request; replica restarted"
        for stage, header, _ in self.pending:
            self.to_hub += self._error_frames(header, bee_error(stage.name, "BeeTimeout", gone))
        self.pending.clear()
        for link, seq in acks:  # answered: no producer may send them again
            self.intake.done(link, seq)
        self.give_back()
        self._flush()
        self.intake.flush_acks()

    # -- join and batch -------------------------------------------------------------

    def _join(self, ack: Ack, header: Header, payload: Any) -> None:
        rid = header.request_id
        expires = header.deadline or (time.time() + _JOIN_TTL)
        _, parts = self.joins.setdefault(rid, (expires, {}))
        if header.sender in parts:  # the same part again (a retry): the newer one stands
            old, _ = parts[header.sender]
            self.intake.done(*old)
        parts[header.sender] = (ack, payload)
        if len(parts) == len(self.spec.inputs):
            del self.joins[rid]
            joined = {src: parts[src][1] for src in self.spec.inputs}
            self._call(header, joined, [a for a, _ in parts.values()])

    def _purge_joins(self) -> None:
        now = time.time()
        stale = [rid for rid, (expires, _) in self.joins.items() if expires < now]
        for rid in stale:
            for ack, _ in self.joins.pop(rid)[1].values():
                self.intake.done(*ack)  # nobody waits for it: free the producers' windows

    def _flush_batch(self) -> None:
        if not self.batch:
            return
        batch, self.batch = self.batch, []
        headers = [h for _, h, _ in batch]
        payloads = [p for _, _, p in batch]
        acks = [a for a, _, _ in batch]
        self.batch_sizes.append(len(batch))
        stage = self.stages[0]  # only a group's first bee may batch
        t = time.perf_counter()
        self.current = stage
        self.watchdog.enter(t, headers, acks)
        results: list[Any] | None = None
        try:
            invoke = stage.invoke
            if invoke.style == CallStyle.PAYLOAD:
                out = invoke.fn(payloads)
            else:
                out = invoke.fn(payloads, [_ReplicaContext(self, stage, h) for h in headers])
            results = list(out)
            if len(results) != len(payloads):
                raise ValueError(
                    f"batch bee {stage.name!r} returned {len(results)} results for {len(payloads)} payloads"
                )
        except Exception as exc:  # noqa: BLE001
            for h in headers:
                self._fail(h, exc, stage)
            results = None
        finally:
            self._leave()
            stage.latencies.append(time.perf_counter() - t)
        if results is not None:
            stage.handled += len(batch)
            for h, r in zip(headers, results, strict=True):
                if r is not None:
                    self._deliver(stage, h, r)
        self._run_pending(acks)
        for link, seq in acks:
            self.intake.done(link, seq)

    # -- reporting ------------------------------------------------------------------

    def _dropped(self) -> dict[str, int]:
        out = dict(self.intake.guard.dropped)
        if self.dispatcher.expired:
            out["expired"] = out.get("expired", 0) + self.dispatcher.expired
        if self.unreachable:
            out["unreachable"] = self.unreachable
        return out

    def _send_stats(self, force: bool = False) -> None:
        dropped = self._dropped()
        key = (
            [(st.handled, st.errors) for st in self.stages],
            sum(dropped.values()),
            len(self.joins),
            len(self.intake.queue),
        )
        if key == self._last_stats and not force:
            return
        self._last_stats = key
        sizes = self.batch_sizes
        head = _stage_stats(self.stages[0])
        head["dropped"] = sum(dropped.values())
        head["dropped_by"] = dropped
        head["retried"] = dict(self.dispatcher.retried)
        head["queued"] = len(self.intake.queue)
        head["batch"] = (sum(sizes) / len(sizes)) if sizes else 1.0
        head["pending_joins"] = len(self.joins)
        p99 = head["p99_ms"]
        if len(self.stages) > 1:
            rest = {st.name: _stage_stats(st) for st in self.stages[1:]}
            head["stages"] = {self.stages[0].name: BeeStats(**head)} | rest
            p99 = max(p99, *(st["p99_ms"] for st in rest.values()))
        self.watchdog.busy_after = max(0.5, 4 * p99 / 1000)
        self.watchdog.stuck_after = max(STUCK_AFTER, 4 * p99 / 1000)
        self.child.send(Msg.STATS, head)


def _stage_stats(stage: _Stage) -> BeeStats:
    """One bee's figures; what the replica counts as a whole is added to its first bee's."""
    lat = sorted(stage.latencies)
    return BeeStats(
        handled=stage.handled,
        errors=stage.errors,
        dropped=0,
        dropped_by={},
        retried={},
        queued=0,
        p50_ms=lat[len(lat) // 2] * 1000 if lat else 0.0,
        p99_ms=lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else 0.0,
        batch=1.0,
        pending_joins=0,
        last_error=stage.last_error,
    )


def _check_imports(bee: str, modules: Iterable[str]) -> None:
    """Import what the bee's code imports, before saying UP: a module missing here fails
    the start (or the redeploy, which is rolled back), not the bee's first caller."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise SystemExit(
                f"bytewax-nb: bee {bee!r} imports {module!r}, which this replica cannot import "
                f"({type(exc).__name__}: {exc}); add the package to the bee's requirements=[...]"
            ) from None


def _from_image(config: BeeConfig) -> BeeConfig:
    """A stack's replica runs the code its image holds (the controller has none to send):
    the image is what the deployer built, trusted as any code in it."""
    with open(BUNDLE, "rb") as f:
        bundle = pickle.load(f)
    spec: BeeSpec = bundle["spec"]
    if spec.name != config["spec"].name:
        raise SystemExit(f"bytewax-nb: this image runs bee {spec.name!r}, not {config['spec'].name!r}")
    return BeeConfig(
        replica=config["replica"],
        spec=spec,
        routes=config["routes"],
        links=config["links"],
        peer_host=config["peer_host"],
        timeout=config["timeout"],
        sources=bundle["sources"],
        imports=bundle["imports"],
    )


def main() -> None:
    child = Child(read_boot())
    try:
        config = cast(BeeConfig, child.recv_config())
        if child.boot.stack:
            config = _from_image(config)
        if config["spec"].stages:  # a fused group: each line says which bee printed it
            sys.stdout, sys.stderr = Tagger(sys.stdout), Tagger(sys.stderr)
        # a bee's logging goes where its prints go: the owner's live output and `logs`
        logging.basicConfig(
            level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stdout
        )
        replica = Replica(child, config)
        if child.boot.stack:  # the engine stops a task (scale down, update) with SIGTERM
            signal.signal(signal.SIGTERM, lambda *_: setattr(replica, "leaving", True))
        try:
            replica.run()
        finally:
            replica.intake.close()
    finally:
        child.close()
