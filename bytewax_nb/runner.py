"""What runs inside one bee replica (a subprocess or a container).

A single-threaded loop: poll, drain the bus socket without blocking, call the bee,
publish or respond. Frames are filtered by shard before they are verified, and
verified before anything is unpickled.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
import traceback
import zlib
from collections import deque
from typing import Any

import zmq

from .child import Child, read_boot
from .control import Msg
from .errors import BadRequest
from .invoke import Context, Invoker
from .sockio import readable, recv_burst, send_frames
from .source import restore, user_traceback
from .spec import BeeSpec
from .watchdog import Watchdog
from .wire import (
    Enc,
    Header,
    Kind,
    Message,
    dump_json,
    error_frames,
    pack,
    peek,
    received_at,
    response_topic,
    topic_of,
)

__all__ = ["Replica", "main"]

_JOIN_TTL = 60.0  # seconds a partial join lives when its request has no deadline
_STATS_EVERY = 0.5
_DRAIN_MAX = 64  # messages handled per drain before their results are sent
_HOLD_MAX = 0.0002  # seconds a finished result may wait for the rest of its drain
_EARLIER_KEPT = 60.0  # seconds between two narrows within which the first's shares still apply


class _ReplicaContext(Context):
    """A context bound to one message; no closures are built per message."""

    __slots__ = ("_header", "_replica")

    def __init__(self, replica: Replica, header: Header) -> None:
        self.request_id = header.request_id
        self.gateway = header.origin
        self.bee = replica.name
        self._replica = replica
        self._header = header

    def publish(self, data: Any, context: Any = None) -> None:
        self._replica._publish(self._header, data)

    def respond(self, data: Any, context: Any = None) -> None:
        self._replica._respond(self._header, data)


class Replica:
    """One replica of one bee, wired to the bus and the supervisor."""

    def __init__(self, child: Child, config: dict[str, Any]) -> None:
        self.child = child
        self.signer = child.signer
        spec: BeeSpec = config["spec"]
        restore(spec.fn, config.get("source", {}))
        self.spec = spec
        self.name = spec.name
        self.topic = topic_of(spec.name)
        self.invoke = Invoker(spec.fn)
        self.sink: bool = config["sink"]
        self.replica: int = config["replica"]
        # gateway requests come through the hub's proxy, and answers go back through it;
        # messages between bees go straight from producer to consumer (one hop, no proxy)
        self.pub, self.sub = child.bus_sockets(config["bus"])
        self.peer_pub, self.peer_sub, self.peer_address = child.peer_sockets(
            config.get("peer_host", "127.0.0.1")
        )
        self.peers: set[str] = set()
        from_bees = set(config.get("bee_inputs", ()))
        for src in spec.inputs:
            sock = self.peer_sub if src in from_bees else self.sub
            sock.setsockopt(zmq.SUBSCRIBE, topic_of(src))
        # sharding: handle a message iff crc32(request id) % n == position for one of
        # the (n, position) shares held; two while a new set is taken over (see _shard)
        self.shares: frozenset[tuple[int, int]] = frozenset()
        self.take_all = False
        # after a narrow: the widened shares still apply to requests received before it
        self.earlier: frozenset[tuple[int, int]] = frozenset()
        self.narrowed_at = 0.0
        self.joins: dict[str, tuple[float, dict[str, Any]]] = {}
        self.batch: list[tuple[Header, Any]] = []
        self.batch_due = 0.0
        self.handled = 0
        self.errors = 0
        self.dropped = 0
        self.latencies: deque[float] = deque(maxlen=1024)
        self.batch_sizes: deque[int] = deque(maxlen=256)
        self._last_stats: tuple[int, ...] = ()
        self.last_error: dict[str, Any] | None = None  # what the widget shows of a bee's last failure
        self.running = True
        self.outbox: list[list[Any]] = []  # answers, to the hub
        self.peer_outbox: list[list[Any]] = []  # results, to consumer bees
        self.out_since = 0.0
        self.watchdog = Watchdog(child, spec.timeout, self.give_up)

    # -- the loop ------------------------------------------------------------------

    def run(self) -> None:
        self.watchdog.start()
        try:
            self._loop()
        finally:
            self.watchdog.stop()

    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self.sub, zmq.POLLIN)
        poller.register(self.peer_sub, zmq.POLLIN)
        poller.register(self.child.control, zmq.POLLIN)
        poller.register(self.child.stdin_fd, zmq.POLLIN)
        self.child.send(Msg.UP, {"peer": self.peer_address})
        next_tick = time.monotonic() + _STATS_EVERY
        while self.running:
            now = time.monotonic()
            wait = next_tick - now
            if self.batch:
                wait = min(wait, self.batch_due - now)
            events = dict(poller.poll(max(0, int(wait * 1000) + 1)))
            if self.sub in events:
                self._drain_bus(self.sub)
            if self.peer_sub in events:
                self._drain_bus(self.peer_sub)
            if self.child.control in events:
                self._drain_control()
            if self.child.stdin_fd in events and self.child.owner_gone():
                return
            now = time.monotonic()
            if self.batch and now >= self.batch_due:
                self._flush_batch()
                self._flush_out()
            if now >= next_tick:
                next_tick = now + _STATS_EVERY
                self._purge_joins()
                self._send_stats()
        self._flush_batch()
        self._flush_out()
        self._send_stats()
        self.child.send(Msg.BYE, {})

    def _drain_bus(self, sub: zmq.Socket[bytes]) -> None:
        try:
            for _ in range(_DRAIN_MAX):
                if not readable(sub):
                    return
                for frames in recv_burst(sub):
                    self._on_frames(frames)
                if self.out_since and time.perf_counter() - self.out_since > _HOLD_MAX:
                    self._flush_out()  # a slow bee must not sit on finished results
        finally:
            self._flush_out()

    def _send_bus(self, frames: list[Any], *, to_peers: bool = False) -> None:
        if not self.out_since:
            self.out_since = time.perf_counter()
        (self.peer_outbox if to_peers else self.outbox).append(frames)

    def _flush_out(self) -> None:
        # one burst per drained batch: the socket's I/O thread is woken once, not per message
        self.out_since = 0.0
        for pub, out in ((self.pub, self.outbox), (self.peer_pub, self.peer_outbox)):
            if not out:
                continue
            if len(out) == 1:
                send_frames(pub, out[0])
            else:
                for frames in pack(out).values():
                    send_frames(pub, frames)
            out.clear()

    def _drain_control(self) -> None:
        ctl = self.child.control
        while True:
            try:
                raw = ctl.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            msg = self.child.codec.unpack(raw)
            if msg is None:
                self.dropped += 1
                continue
            kind, body = msg
            if kind == Msg.PROBE:
                # each probe leaves where that topic's messages do, after them: results
                # to consumer bees directly, answers through the hub
                self._flush_out()
                own = self.topic.decode("latin-1")
                for pub, topics in (
                    (self.peer_pub, [t for t in body["topics"] if t == own]),
                    (self.pub, [t for t in body["topics"] if t != own]),
                ):
                    if topics:
                        self.child.probe(pub, {**body, "topics": topics}, self.name)
            elif kind == Msg.PEERS:
                self._set_peers(set(body["addresses"]))
            elif kind == Msg.SHARD:
                self._shard(body)
            elif kind == Msg.REPORT:
                self._send_stats(force=True)
            elif kind == Msg.SINK:
                self.sink = bool(body["sink"])
            elif kind == Msg.STOP:
                self.running = False

    def _shard(self, body: dict[str, Any]) -> None:
        """Widen: take the new set's share on top of what is held. Narrow: keep only it.

        The supervisor narrows nobody before every replica has widened, so at every
        moment each message has a replica that takes it (at worst two do, and the
        first response wins), whatever order the replicas switch in.
        """
        members: list[str] = body["members"]
        me = self.child.boot.identity
        share = frozenset([(len(members), members.index(me))]) if me in members else frozenset()
        if body["widen"]:
            self.shares = self.shares | share
        else:
            # a request the gateway took before every replica had widened may still be
            # on its way here while its new owner saw it too early: keep it ours (and
            # those of a narrow just before, if changes come back to back)
            since = float(body["since"])
            recent = self.earlier if since - self.narrowed_at < _EARLIER_KEPT else frozenset()
            self.earlier, self.narrowed_at = self.shares | recent, since
            self.shares = share
        self.take_all = (1, 0) in self.shares
        self.child.send(Msg.SHARD_OK, {"version": body["version"], "widen": body["widen"]})

    def _set_peers(self, addresses: set[str]) -> None:
        """Read from exactly these producers (replicas come and go, ports change)."""
        for address in self.peers - addresses:
            with contextlib.suppress(zmq.ZMQError):
                self.peer_sub.disconnect(address)
        for address in addresses - self.peers:
            self.peer_sub.connect(address)
        self.peers = addresses

    # -- one message -----------------------------------------------------------------

    def _verified(self, frames: list[Any]) -> Message | None:
        """The message if it is ours to handle (or a probe) and its signature holds."""
        kind, rid = peek(frames[0])
        if kind == Kind.DATA:
            # cheap shard filter on the unverified id: a forged id can only make us skip
            if not self.take_all and not self._mine(frames[0], rid):
                return None
        elif kind != Kind.PROBE:
            self.dropped += 1
            return None
        msg = self.signer.open(frames)
        if msg is None:
            self.dropped += 1
        return msg

    def _on_frames(self, frames: list[Any]) -> None:
        msg = self._verified(frames)
        if msg is None:
            return
        header = msg.header
        if header.kind == Kind.PROBE:
            self.child.saw(frames[0], header)
            return
        try:
            payload = msg.load()
        except Exception as exc:  # noqa: BLE001 - a bad payload is the caller's error
            self._fail(header, exc)
            return
        if self.spec.join:
            self._join(header, payload)
        elif self.spec.batch_size > 1:
            if not self.batch:
                self.batch_due = time.monotonic() + self.spec.batch_timeout_ms / 1000
            self.batch.append((header, payload))
            if len(self.batch) >= self.spec.batch_size:
                self._flush_batch()
        else:
            self._call(header, payload)

    def _mine(self, frame0: bytes, rid: bytes) -> bool:
        crc = zlib.crc32(rid)
        if any(crc % n == pos for n, pos in self.shares):
            return True
        return (
            bool(self.earlier)
            and received_at(frame0) < self.narrowed_at
            and any(crc % n == pos for n, pos in self.earlier)
        )

    def _context(self, header: Header) -> Context:
        return _ReplicaContext(self, header)

    def _call(self, header: Header, payload: Any) -> None:
        t = time.perf_counter()
        self.watchdog.enter(t, [header])
        try:
            result = self.invoke(payload, self._context(header))
        except Exception as exc:  # noqa: BLE001 - a bee's error goes to its caller
            self._fail(header, exc)
            return
        finally:
            self.watchdog.leave()
            self.latencies.append(time.perf_counter() - t)
        self.handled += 1
        self._deliver(header, result)

    def _deliver(self, header: Header, result: Any) -> None:
        if result is None:
            return
        if self.sink:
            self._respond(header, result)
        else:
            self._publish(header, result)

    def _publish(self, header: Header, data: Any) -> None:
        out = Header(Kind.DATA, header.request_id, header.origin, self.name, header.t0, header.deadline)
        self._send_bus(self.signer.encode(self.topic, out, data), to_peers=True)

    def _respond(self, header: Header, data: Any) -> None:
        try:
            body = dump_json(data)
        except TypeError as exc:
            msg = f"the response of bee {self.name!r} is not JSON serializable: {exc}"
            self._send_error(header, TypeError(msg), "")
            return
        except ValueError:
            msg = f"the response of bee {self.name!r} holds NaN or Infinity, which JSON cannot carry"
            self._send_error(header, ValueError(msg + " (use None, or a string)"), "")
            return
        out = Header(Kind.RESPONSE, header.request_id, header.origin, self.name, header.t0, enc=Enc.JSON)
        self._send_bus(self.signer.frames(response_topic(header.origin), out, body))

    def _fail(self, header: Header, exc: BaseException) -> None:
        if isinstance(exc, BadRequest):  # the caller's mistake, not the bee's: a 400, no traceback
            self._send_bus(error_frames(self.signer, header, self.name, "BadRequest", str(exc), "", 400))
            return
        self.errors += 1
        text = "".join(traceback.format_exception(type(exc), exc, user_traceback(exc.__traceback__)))
        print(f"[{self.name}] request {header.request_id} failed:\n{text}", file=sys.stderr, end="")
        self.last_error = {
            "type": type(exc).__name__,
            "message": str(exc),
            "traceback": text,
            "request_id": header.request_id,
            "time": time.time(),
        }
        self._send_error(header, exc, text)

    def _send_error(self, header: Header, exc: BaseException, text: str) -> None:
        self._send_bus(error_frames(self.signer, header, self.name, type(exc).__name__, str(exc), text))

    def give_up(self, stuck: list[Header], timeout: float, stack: str) -> None:
        """The watchdog's last act, holding the sockets while a call is stuck past its
        timeout: answer the call's callers, send the results already made, and tell the
        callers whose messages wait in this replica's sockets that they were not handled."""
        why = f"bee {self.name!r} did not return within its timeout of {timeout:g} s; replica restarted"
        text = stack + f"BeeTimeout: {why}\n"
        for header in stuck:
            self._send_bus(error_frames(self.signer, header, self.name, "BeeTimeout", why, text))
            print(f"[{self.name}] request {header.request_id}: {why}", file=sys.stderr)
        print(text, file=sys.stderr, end="")
        queued = f"not handled: replica {self.replica} of bee {self.name!r} restarted after a stuck call"
        for sub in (self.sub, self.peer_sub):
            for _ in range(_DRAIN_MAX * 16):
                if not readable(sub):
                    break
                for frames in recv_burst(sub):
                    msg = self._verified(frames)
                    if msg is not None and msg.header.kind == Kind.DATA:
                        self._send_bus(
                            error_frames(self.signer, msg.header, self.name, "ReplicaRestarted", queued, "")
                        )
        self._flush_out()

    # -- join and batch -------------------------------------------------------------

    def _join(self, header: Header, payload: Any) -> None:
        rid = header.request_id
        expires = header.deadline or (time.time() + _JOIN_TTL)
        _, parts = self.joins.setdefault(rid, (expires, {}))
        parts[header.sender] = payload
        if len(parts) == len(self.spec.inputs):
            del self.joins[rid]
            self._call(header, {src: parts[src] for src in self.spec.inputs})

    def _purge_joins(self) -> None:
        now = time.time()
        stale = [rid for rid, (expires, _) in self.joins.items() if expires < now]
        for rid in stale:
            del self.joins[rid]

    def _flush_batch(self) -> None:
        if not self.batch:
            return
        batch, self.batch = self.batch, []
        headers = [h for h, _ in batch]
        payloads = [p for _, p in batch]
        self.batch_sizes.append(len(batch))
        t = time.perf_counter()
        self.watchdog.enter(t, headers)
        try:
            if self.invoke.style == 1:
                results = self.invoke.fn(payloads)
            else:
                results = self.invoke.fn(payloads, [self._context(h) for h in headers])
            results = list(results)
            if len(results) != len(payloads):
                raise ValueError(
                    f"batch bee {self.name!r} returned {len(results)} results for {len(payloads)} payloads"
                )
        except Exception as exc:  # noqa: BLE001
            for h in headers:
                self._fail(h, exc)
            return
        finally:
            self.watchdog.leave()
            self.latencies.append(time.perf_counter() - t)
        self.handled += len(batch)
        for h, r in zip(headers, results, strict=True):
            self._deliver(h, r)

    # -- reporting ------------------------------------------------------------------

    def _send_stats(self, force: bool = False) -> None:
        key = (self.handled, self.errors, self.dropped, len(self.joins))
        if key == self._last_stats and not force:
            return
        self._last_stats = key
        lat = sorted(self.latencies)
        p50 = lat[len(lat) // 2] * 1000 if lat else 0.0
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else 0.0
        sizes = self.batch_sizes
        self.child.send(
            Msg.STATS,
            {
                "handled": self.handled,
                "errors": self.errors,
                "dropped": self.dropped,
                "dropped_by": {"signature": self.dropped} if self.dropped else {},
                "p50_ms": p50,
                "p99_ms": p99,
                "batch": (sum(sizes) / len(sizes)) if sizes else 1.0,
                "pending_joins": len(self.joins),
                "last_error": self.last_error,
            },
        )


def main() -> None:
    # a bee's logging goes where its prints go: the owner's live output and `logs`
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stdout)
    child = Child(read_boot())
    try:
        config = child.recv_config()
        Replica(child, config).run()
    finally:
        child.close()


if __name__ == "__main__":
    main()
