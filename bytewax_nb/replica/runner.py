"""What runs inside one bee replica (a subprocess, a container, a stack's task).

A single-threaded loop: poll, take what arrived on the links (verified before anything
is unpickled: `bus.consumer`), call the bee (`stages`; joins and batches are collected
first: `collect`), send results to the consumers with room and answers to the hub
(`outbox`), then tell each producer which messages are done. The watchdog thread
(`watchdog`) steps in while a call runs long: it hands the queue back so nothing waits
behind a busy replica, says when a call is stuck, and past the bee's timeout it answers
the call's callers and ends the process.
"""

from __future__ import annotations

import sys
import time
from typing import Any, cast

import zmq

from ..bus.child import Child
from ..bus.consumer import InLink, Intake
from ..bus.producer import died_answer
from ..bus.sockio import readable
from ..bus.wire import Flag, Header, Kind, Message
from ..model.protocol import (
    Beat,
    BeeConfig,
    Busy,
    LinksBody,
    Lost,
    Msg,
    RoutesBody,
    bee_error,
    routes_from,
    routes_to,
)
from ..model.settings import HEARTBEAT
from ..model.source import restore
from ..model.spec import BeeSpec
from ..model.stagelog import Tagger
from .collect import Batch, Joins
from .figures import replica_stats, slowest_p99
from .outbox import Outbox
from .stages import Ack, Calls
from .streams import Streams
from .watchdog import STUCK_AFTER, Watchdog

__all__ = ["Replica"]

_STATS_EVERY = 0.5
_DRAIN_MAX = 64  # messages handled before what they produced is sent
_HOLD_MAX = 0.0002  # seconds a finished result may wait for the rest of its drain
WINDOW = 128  # messages each producer may send before this replica says which are done
# seconds a stopped stack's task waits for producers that may be gone (the whole stack
# is stopping) to confirm they send nothing more, once it holds nothing
_LEAVE_WAIT = 5.0
READY = "/tmp/bytewax-nb-ready"  # a stack's task: made once wired (its healthcheck: start-first updates)


class Replica:
    """One replica of one bee, linked to its producers, its consumers and the supervisor."""

    def __init__(self, child: Child, config: BeeConfig) -> None:
        self.child = child
        spec: BeeSpec = config["spec"]
        members = spec.stages or (spec,)
        for member in members:
            restore(member.fn, config["sources"][member.name])
        self.spec = spec
        me = child.boot.identity
        # producers are dialled by the intake's DEALERs; consumers dial this ROUTER
        self.intake = Intake(child.ctx, me, spec.name, child.signer, WINDOW)
        router, self.address = child.link_router(config["peer_host"])
        self.outbox = Outbox(router, me, members[-1].name, child.signer, self.intake)
        self.producer = self.outbox.producer
        self.producer.dispatcher.set_routes(routes_from(config["routes"]))
        self.calls = Calls(members, self.outbox, lambda: self.child.send(Msg.BUSY, Busy()), config["replica"])
        self.streams = Streams(self.calls, self._acknowledge)
        self.calls.streams = self.streams
        # who prints: the output of a fused group's bees is marked with their names
        for t in (sys.stdout, sys.stderr):
            if isinstance(t, Tagger):
                t.who = lambda: self.calls.current.name
        self.joins = Joins(spec.inputs, lambda ack: self.intake.done(*ack))
        self.batch = Batch(spec.batch_size, spec.batch_timeout_ms)
        # what the supervisor knows: the producers that welcomed us, and whether all of
        # them have stopped sending (after a RETIRE)
        self._linked: tuple[set[str], bool] = (set(), False)
        self._set_links(config["links"])
        self._last_stats: tuple[Any, ...] = ()
        self.running = True
        self.leaving = False  # a stack's task the engine stops (SIGTERM): drain, then exit
        self.leave_by = 0.0
        self.beat_every = float(HEARTBEAT.get()) if child.boot.stack else 0.0
        beat = self.beat if self.beat_every else None
        self.watchdog = Watchdog(
            child, config["timeout"], self.give_up, self.give_back, beat, self.beat_every, self.stuck
        )
        self.calls.watchdog = self.watchdog

    def _set_links(self, body: LinksBody) -> None:
        self.intake.set_links(body["links"], self.child.secure_client)
        self.outbox.hub_id = body["hub"]

    # -- the loop ------------------------------------------------------------------

    def run(self) -> None:
        self.watchdog.start()
        try:
            self._loop()
        finally:
            self.watchdog.stop()

    def _poller(self) -> zmq.Poller:
        poller = zmq.Poller()
        for sock in (*self.intake.sockets(), self.producer.router, self.child.control):
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
                wait = min(wait, self.batch.due - now)
            if self.intake.queue or self.streams.ready():
                wait = 0
            events = dict(poller.poll(max(0, int(wait * 1000) + 1) if wait > 0 else 0))
            if self._read(events):
                return  # the owner is gone
            if self.leaving and not self.intake.retiring:  # as a RETIRE, with nobody to ask
                self.intake.revoke()
                self.leave_by = now + _LEAVE_WAIT
                next_beat = 0.0  # the controller hears it at once
            self._say_linked()
            self._stream_orders()
            if self.beat_every and now >= next_beat:
                next_beat = now + self.beat_every
                self.beat()
            self._work()
            self.streams.step()
            now = time.monotonic()
            if self.batch and now >= self.batch.due:
                self._call_batch()
            if self.intake.paused:  # a long call (a batch's, say) is over: ask for work again
                self.intake.resume()
            self.outbox.flush()
            if now >= next_tick:
                next_tick = now + _STATS_EVERY
                self.joins.purge(time.time())
                self.producer.dispatcher.expire(time.time())
                self._send_stats()
            if self.intake.retiring and self._retired(self.leaving and now > self.leave_by):
                break
        self._call_batch()
        self.streams.close_all()
        self.outbox.flush()
        self.intake.flush_acks()
        self._send_stats(force=True)
        self.child.send(Msg.BYE, {})

    def _read(self, events: dict[Any, int]) -> bool:
        """Take what arrived; True if the owner is gone (stdin closed)."""
        clock = time.time()
        for sock in events:
            if sock is self.producer.router:  # consumers' credits, acknowledgements, returns
                self.producer.read(clock)
            elif sock is self.child.control:
                self._read_control()
            elif sock == self.child.stdin_fd:
                if self.child.owner_gone():
                    return True
            else:
                link = self.intake.link_of(sock)
                if link is not None:
                    self.intake.read(link, clock)
        return False

    def _say_linked(self) -> None:
        """A link was welcomed or revoked: the supervisor counts them."""
        if not self.intake.news:
            return
        self.intake.news = False
        linked = (self.intake.welcomed, self.intake.revoked)
        if linked != self._linked:
            self._linked = linked
            self.child.send(Msg.LINKED, {"producers": sorted(linked[0]), "revoked": linked[1]})
            if self.beat_every and self.outbox.hub_id and set(self.intake.links) <= linked[0]:
                open(READY, "w").close()  # the engine may now stop the task it replaces

    def _stream_orders(self) -> None:
        """The hub's word on the streams this replica makes: more room, or a caller gone."""
        orders, self.intake.orders = self.intake.orders, []
        for kind, rid, n in orders:
            if kind == Kind.MORE:
                self.streams.more(rid, n)
            else:
                self.streams.cancel(rid)

    def _acknowledge(self, acks: list[Ack]) -> None:
        for link, seq in acks:
            self.intake.done(link, seq)

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
            if self.outbox.overdue(_HOLD_MAX):
                self.outbox.flush()  # a slow bee must not sit on finished results

    def _read_control(self) -> None:
        ctl = self.child.control
        while readable(ctl):
            msg = self.child.codec.unpack(ctl.recv_multipart())
            if msg is None:  # counted by the codec, by reason
                continue
            kind, body = msg
            if kind == Msg.LINKS:
                self._set_links(cast(LinksBody, body))
            elif kind == Msg.ROUTES:
                self.producer.dispatcher.set_routes(routes_from(cast(RoutesBody, body)))
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
        dispatcher = self.producer.dispatcher
        body = Beat(
            address=self.address,
            links=LinksBody(
                links={i: k.address for i, k in self.intake.links.items()}, hub=self.outbox.hub_id
            ),
            routes=routes_to(dispatcher.routes),
            linked=sorted(linked),
            revoked=revoked,
            leaving=self.leaving or self.intake.retiring,
            holding=dispatcher.unsettled(),
        )
        self.child.send(Msg.BEAT, body)

    def _lost(self, body: Lost) -> None:
        """A process died: retry what it held of ours, or answer its callers."""
        dispatcher = self.producer.dispatcher
        if body["clean"]:  # retired and drained: everything it held was done
            dispatcher.drop(body["identity"])
            return
        text = "\n".join(body["tail"])
        for parcel in dispatcher.lost(body["identity"]):
            why = died_answer(body["message"], parcel)
            self.outbox.error(parcel.header, bee_error(parcel.bee, "ReplicaDied", why, text))

    def _retired(self, late: bool = False) -> bool:
        """Retiring, and everything sent to it before its producers' last word is handled
        (`late`: once it holds nothing, whatever they said): parts of joins it cannot
        finish go back to be sent to another replica."""
        drained = not self.intake.queue if late else self.intake.drained(self.intake.links)
        if not drained or self.batch or self.streams.active or not self.producer.dispatcher.idle:
            return False
        self.joins.give_back(lambda ack: self.intake.giving_back(*ack))
        self.intake.flush_returns()
        return True

    # -- one message -----------------------------------------------------------------

    def _on_message(self, link: InLink, msg: Message) -> None:
        header = msg.header
        if header.trace:
            header.received = time.time()
        ack = (link, header.seq)
        marker = header.flags & (Flag.END | Flag.SKIP)
        if marker:  # a stream's END or SKIP: on to whoever comes next, no bee called
            self.outbox.mark(header, marker, header.chunk)
            self.intake.done(link, header.seq)
            return
        try:
            payload = msg.load()
        except Exception as exc:  # noqa: BLE001 - a bad payload is the caller's error
            self.calls.fail(header, exc, self.calls.stages[0])
            self.intake.done(link, header.seq)
            return
        if self.spec.join:
            joined = self.joins.add(ack, header, payload)
            if joined is not None:
                self._call(header, *joined)
        elif self.spec.batch_size > 1:
            if self.batch.add(ack, header, payload):
                self._call_batch()
        else:
            self._call(header, payload, [ack])

    def _call(self, header: Header, payload: Any, acks: list[Ack]) -> None:
        if not self.calls.call(header, payload, acks):  # a stream acknowledges when it ends
            self._acknowledge(acks)

    def _call_batch(self) -> None:
        if not self.batch:
            return
        headers, payloads, acks = self.batch.take()
        self.calls.invoke_batch(headers, payloads, acks)
        for link, seq in acks:
            self.intake.done(link, seq)

    # -- while a call runs long (the watchdog's thread, holding the sockets) ------------

    def stuck(self, since: float, headers: list[Header], where: str) -> None:
        """A call runs far past its usual time: the supervisor shows it, and counts this
        replica as taking no work until it returns."""
        rid = headers[0].request_id if headers else ""
        busy = Busy(since=since, request_id=rid, bee=self.calls.current.name, where=where)
        self.child.send(Msg.BUSY, busy)

    def give_back(self) -> int:
        """A call runs long: hand every message not yet started back to its producer,
        which sends it to a free replica; this one asks again once the call is done."""
        return self.intake.give_back(time.time())

    def give_up(self, stuck: list[Header], acks: list[Ack], timeout: float, stack: str) -> None:
        """The watchdog's last act, past the bee's timeout: answer the stuck call's
        callers, send what is already made, hand back what waits, then the process ends."""
        bee = self.calls.current.name
        why = f"bee {bee!r} did not return within its timeout of {timeout:g} s; replica restarted"
        text = stack + f"BeeTimeout: {why}\n"
        for header in stuck:
            self.outbox.error(header, bee_error(bee, "BeeTimeout", why, text))
            print(f"[{bee}] request {header.request_id}: {why}", file=sys.stderr)
        print(text, file=sys.stderr, end="")
        # what a fused stage made for the next stages of this process dies with it
        gone = f"not processed: bee {bee!r}, in the same process, hung on another request; replica restarted"
        for stage, header, _ in self.calls.pending:
            self.outbox.error(header, bee_error(stage.name, "BeeTimeout", gone))
        self.calls.pending.clear()
        for link, seq in acks:  # answered: no producer may send them again
            self.intake.done(link, seq)
        self.give_back()
        self.outbox.flush()
        self.intake.flush_acks()

    # -- reporting ------------------------------------------------------------------

    def _dropped(self) -> dict[str, int]:
        out = dict(self.intake.guard.dropped)
        for reason, n in self.child.codec.dropped.items():
            out[reason] = out.get(reason, 0) + n
        expired = self.producer.dispatcher.expired
        if expired:
            out["expired"] = out.get("expired", 0) + expired
        return out

    def _send_stats(self, force: bool = False) -> None:
        dropped = self._dropped()
        stages = self.calls.stages
        outstanding = self.producer.dispatcher.outstanding()
        key = (
            [(st.handled, st.errors) for st in stages],
            sum(dropped.values()),
            len(self.joins),
            len(self.intake.queue),
            outstanding,
        )
        if key == self._last_stats and not force:
            return
        self._last_stats = key
        stats = replica_stats(
            stages,
            dropped,
            self.producer.dispatcher.retried,
            len(self.intake.queue),
            self.batch.mean(),
            len(self.joins),
        )
        stats["outstanding"] = outstanding
        p99 = slowest_p99(stats)
        self.watchdog.busy_after = max(0.5, 4 * p99 / 1000)
        self.watchdog.stuck_after = max(STUCK_AFTER, 4 * p99 / 1000)
        self.child.send(Msg.STATS, stats)
