"""A producer's side of its links: which consumer replica gets each message.

Every consumer replica dials its producers (the hub, or the replicas of the bees it
listens to) and tells each how many unacknowledged messages it may hold: its window.
For every bee that listens to it, a producer sends each message to one linked
replica of that bee with room, the one with the most; with none it keeps the message
until one has room. A replica therefore never has more queued than its windows, a
replica busy with a long call hands its queue back (RETURN) and gets nothing more
until it asks again, and nothing is dropped because a socket was full.

A message stays here until its consumer says DONE. So when a replica dies the
producer knows what it had taken: each such message goes to another replica (a
retry: it may then run twice if the first replica died in the middle of the call),
or, for a bee declared with fewer retries, comes back to the caller as an error.

`Dispatcher` is the pure bookkeeping (frames leave through its `send` callback);
`Producer` is the same for a process with its link socket: the hub and every bee
replica produce through one, so the socket side is written once.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from hashlib import blake2b
from typing import Any

import zmq

from ..model.protocol import Route
from .sockio import readable, recv_routed, send_routed
from .wire import Enc, Header, Kind, Message, ReplayGuard, Signer, next_seq, unpack_seqs

__all__ = ["Dispatcher", "Link", "Parcel", "Producer", "died_answer"]

Send = Callable[[str, list[Any]], None]  # (consumer identity, frames of one message)


@dataclass(slots=True)
class Parcel:
    """One message on its way to one consumer bee; kept until a replica has handled it."""

    header: Header
    payload: bytes
    buffers: list[Any]
    bee: str
    attempts: int = 0  # replicas that died while they held it
    signed: Any = None  # the MAC's state over its buffers, shared by the copies of a fan-out


@dataclass(slots=True)
class Link:
    """One consumer replica that dialled this producer."""

    identity: str
    bee: str
    window: int = 0
    revoked: bool = False
    out: dict[int, Parcel] = field(default_factory=dict)  # seq -> parcel, until DONE

    @property
    def room(self) -> int:
        return 0 if self.revoked else self.window - len(self.out)


class Dispatcher:
    """Routes a producer's messages over its links; see the module's docstring."""

    def __init__(
        self, me: str, signer: Signer, send: Send, on_done: Callable[[Parcel], None] | None = None
    ) -> None:
        self.me = me
        self._signer = signer
        self._send = send
        self._on_done = on_done  # told of each parcel a replica has handled
        self.routes: dict[str, tuple[Route, ...]] = {}  # topic (producer name) -> consumer bees
        self.links: dict[str, Link] = {}
        self.by_bee: dict[str, list[Link]] = {}  # the same links, per consumer bee
        self.waiting: dict[str, deque[Parcel]] = {}  # bee -> parcels no replica has room for
        self.retried: dict[str, int] = {}  # bee -> messages sent again after a replica died
        self.expired = 0  # waiting parcels dropped at their deadline (their callers had a 504)

    # -- what to route where ----------------------------------------------------------

    def set_routes(self, routes: Mapping[str, Iterable[Route]]) -> None:
        """The consumer bees of each topic; a bee no longer listed loses its waiting parcels."""
        self.routes = {topic: tuple(rs) for topic, rs in routes.items()}
        wanted = {r.bee for rs in self.routes.values() for r in rs}
        for bee in list(self.waiting):
            if bee not in wanted:
                del self.waiting[bee]

    def consumers(self, topic: str) -> tuple[Route, ...]:
        return self.routes.get(topic, ())

    def _route(self, bee: str) -> Route | None:
        for routes in self.routes.values():
            for r in routes:
                if r.bee == bee:
                    return r
        return None

    # -- sending ----------------------------------------------------------------------

    def publish(self, topic: str, header: Header, payload: bytes, buffers: list[Any]) -> int:
        """Send (or keep) one message for every bee listening to `topic`; how many there are."""
        routes = self.routes.get(topic, ())
        # buffers (numpy arrays) sent to several bees are hashed for the signature once
        signed = self._signer.over_buffers(buffers) if buffers and len(routes) > 1 else None
        for i, route in enumerate(routes):
            # each consumer bee's parcel carries its own header: seq and dst differ per send
            own = header if i == len(routes) - 1 else _copy(header)
            self._place(Parcel(own, payload, buffers, route.bee, signed=signed), route)
        return len(routes)

    def _place(self, parcel: Parcel, route: Route | None) -> None:
        queue = self.waiting.get(parcel.bee)
        link = None if queue else self._choose(parcel, route)  # others wait already: keep the order
        if link is not None:
            self._transmit(link, parcel)
        else:
            self.waiting.setdefault(parcel.bee, deque()).append(parcel)

    def _choose(self, parcel: Parcel, route: Route | None) -> Link | None:
        linked = self.by_bee.get(parcel.bee)
        if not linked:
            return None
        if len(linked) == 1 and not (route is not None and route.join):  # the common case, lean
            only = linked[0]
            return only if only.room > 0 else None
        candidates = [k for k in linked if not k.revoked]
        if route is not None and route.join:
            # every part of a request must reach the same replica: the one its id hashes to
            # (rendezvous hashing, so replicas coming and going move few requests); a join
            # waits for its parts, so it is not held back by the window
            rid = parcel.header.request_id.encode()
            return max(candidates, key=lambda k: _weight(rid, k.identity), default=None)
        best = max(candidates, key=lambda k: k.room, default=None)
        return best if best is not None and best.room > 0 else None

    def _transmit(self, link: Link, parcel: Parcel) -> None:
        header = parcel.header
        header.seq, header.src, header.dst = next_seq(), self.me, link.identity
        link.out[header.seq] = parcel
        self._send(link.identity, self._signer.frames(header, parcel.payload, parcel.buffers, parcel.signed))

    def _control(self, identity: str, kind: int) -> None:
        header = Header(kind, "", "", self.me, enc=Enc.RAW, seq=next_seq(), src=self.me, dst=identity)
        self._send(identity, self._signer.frames(header, b""))

    def _pump(self, bee: str) -> None:
        """Send waiting parcels of `bee` while some replica has room."""
        queue = self.waiting.get(bee)
        route = self._route(bee)
        while queue:
            parcel = queue.popleft()
            link = self._choose(parcel, route)
            if link is None:
                queue.appendleft(parcel)
                return
            self._transmit(link, parcel)

    def expire(self, now: float) -> None:
        """Drop waiting parcels whose caller has stopped waiting (their gateway's timeout)."""
        for queue in self.waiting.values():
            if queue and any(p.header.deadline and p.header.deadline < now for p in queue):
                kept = [p for p in queue if not (p.header.deadline and p.header.deadline < now)]
                self.expired += len(queue) - len(kept)
                queue.clear()
                queue.extend(kept)

    # -- what consumers say -----------------------------------------------------------

    def on_frame(self, identity: str, header: Header, payload: bytes) -> None:
        """A verified link frame from consumer `identity` (CREDIT, DONE, RETURN, REVOKE)."""
        kind = header.kind
        link = self.links.get(identity)
        if kind == Kind.DONE:
            if link is not None:
                for seq in unpack_seqs(payload):
                    parcel = link.out.pop(seq, None)
                    if parcel is not None and self._on_done is not None:
                        self._on_done(parcel)
                self._pump(link.bee)
        elif kind == Kind.CREDIT:
            body = json.loads(payload)
            if link is None:
                link = self._add(Link(identity, str(body["bee"])))
                self._control(identity, Kind.WELCOME)
            if not link.revoked:
                link.window = int(body["window"])
                self._pump(link.bee)
        elif kind == Kind.RETURN:
            if link is not None:
                link.window = 0  # busy: nothing more until it asks again
                self._requeue(link, unpack_seqs(payload), died=False)
        elif kind == Kind.REVOKE:
            if link is None:
                link = self._add(Link(identity, header.sender))
            link.revoked = True
            self._control(identity, Kind.REVOKED)  # after everything sent to it before
            self._pump(link.bee)

    def _requeue(
        self, link: Link, seqs: Iterable[int], *, died: bool, final: Callable[[Parcel], bool] | None = None
    ) -> list[Parcel]:
        """Put a replica's parcels back in front of the queue; those out of retries (or
        that may not run again: `final`) are returned."""
        route = self._route(link.bee)
        retries = route.retries if route is not None else 0
        back: list[Parcel] = []
        failed: list[Parcel] = []
        for seq in seqs:
            parcel = link.out.pop(seq, None)
            if parcel is None:
                continue
            if died:
                parcel.attempts += 1
                if parcel.attempts > retries or route is None or (final is not None and final(parcel)):
                    failed.append(parcel)
                    continue
                self.retried[link.bee] = self.retried.get(link.bee, 0) + 1
            back.append(parcel)
        queue = self.waiting.setdefault(link.bee, deque())
        queue.extendleft(reversed(back))
        self._pump(link.bee)
        return failed

    def _add(self, link: Link) -> Link:
        self.links[link.identity] = link
        self.by_bee.setdefault(link.bee, []).append(link)
        return link

    def drop(self, identity: str) -> Link | None:
        """Forget a link (its consumer is gone); returns it."""
        link = self.links.pop(identity, None)
        if link is not None:
            link.revoked = True
            self.by_bee[link.bee] = [k for k in self.by_bee.get(link.bee, ()) if k is not link]
        return link

    def lost(self, identity: str, final: Callable[[Parcel], bool] | None = None) -> list[Parcel]:
        """Consumer `identity` is gone: send its parcels elsewhere; return those that may
        not be retried (the caller answers them with an error): out of retries, or
        `final` (a stream under way: sent again, it would repeat what its caller has)."""
        link = self.drop(identity)
        if link is None:
            return []
        return self._requeue(link, list(link.out), died=True, final=final)

    # -- figures ----------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        """Nothing waits for a replica with room."""
        return not any(self.waiting.values())

    def unsettled(self) -> list[str]:
        """Consumers that may yet die holding work or unasked: all but those that
        revoked their link and handed everything back (they drained and left)."""
        return sorted(i for i, k in self.links.items() if k.out or not k.revoked)

    def in_flight(self) -> int:
        return sum(len(k.out) for k in self.links.values())

    def outstanding(self) -> dict[str, int]:
        """Per consumer bee: messages sent to its replicas and not yet done, and those
        waiting for one with room. Summed over a bee's producers, what it has to do:
        the load its autoscaler follows."""
        out = {bee: len(q) for bee, q in self.waiting.items() if q}
        for link in self.links.values():
            if link.out:
                out[link.bee] = out.get(link.bee, 0) + len(link.out)
        return out


def _weight(rid: bytes, identity: str) -> int:
    """Rendezvous weight of a replica for a request: the same in every process (unlike
    `hash`, which Python seeds per process), and spread well (unlike crc32 of similar
    strings)."""
    return int.from_bytes(blake2b(rid + identity.encode(), digest_size=8).digest(), "big")


def died_answer(how: str, parcel: Parcel) -> str:
    """What the caller of a message hears when the replicas that held it died."""
    tries = "once" if parcel.attempts == 1 else f"{parcel.attempts} times"
    return f"{how} while handling this request (sent {tries}; not sent again)"


def _copy(h: Header) -> Header:
    return Header(
        h.kind,
        h.request_id,
        h.origin,
        h.sender,
        h.t0,
        h.deadline,
        h.enc,
        h.n_buffers,
        chunk=h.chunk,
        flags=h.flags,
        trace=h.trace,
    )


class Producer:
    """A process's producer side: its link socket (consumer replicas dial it), the
    dispatcher that picks a replica for each message, and the frames of the round,
    sent in one burst per consumer (a socket then wakes its I/O thread once per burst).

    `guard` checks what consumers send (and counts what it drops, `unreachable` too);
    `answers` takes the frames that are not link traffic (the hub's: bees' answers);
    `queued` is told when a round's first frame waits (the hub schedules its flush,
    a replica notes the time: it must not sit on finished results)."""

    def __init__(
        self,
        router: zmq.Socket[bytes],
        me: str,
        signer: Signer,
        guard: ReplayGuard,
        *,
        on_done: Callable[[Parcel], None] | None = None,
        answers: Callable[[Message], None] | None = None,
        queued: Callable[[], None] | None = None,
    ) -> None:
        self.router = router
        self._signer = signer
        self._guard = guard
        self._answers = answers
        self._queued = queued
        self.dispatcher = Dispatcher(me, signer, self._add, on_done)
        self.bursts: dict[str, list[Any]] = {}  # consumer identity -> frames of this round

    def publish(self, topic: str, header: Header, payload: bytes, buffers: list[Any]) -> int:
        """Send (or keep) one message for every bee listening to `topic`; how many there are."""
        return self.dispatcher.publish(topic, header, payload, buffers)

    def _add(self, identity: str, frames: list[Any]) -> None:
        if not self.bursts and self._queued is not None:
            self._queued()
        self.bursts.setdefault(identity, []).extend(frames)

    def flush(self) -> bool:
        """Send this round's frames, one burst per consumer; whether there were any."""
        if not self.bursts:
            return False
        bursts, self.bursts = self.bursts, {}
        for identity, frames in bursts.items():
            try:
                send_routed(self.router, identity, frames)
            except zmq.ZMQError:  # that consumer is gone: its parcels go elsewhere on LOST
                self._guard.drop("unreachable")
        return True

    def read(self, now: float) -> bool:
        """Take what consumers sent (call when the socket is readable; ZeroMQ's FD is
        edge-triggered: read while EVENTS says so, or the edge is lost): verified, then
        link traffic to the dispatcher, the rest to `answers`.

        True when it stopped early with more to read: after a stream's first chunk, so
        its caller's handler writes it before the chunks made behind it are opened (call
        again soon: the socket's edge was consumed)."""
        while readable(self.router):
            identity, burst = recv_routed(self.router)
            first = False
            for frames in burst:
                msg = self._signer.open(frames)
                if msg is None:
                    self._guard.drop("signature")
                    continue
                if not self._guard.admit(msg.header, now, identity):
                    continue
                kind = msg.header.kind
                if self._answers is not None and kind in (Kind.RESPONSE, Kind.ERROR, Kind.CHUNK):
                    self._answers(msg)
                    first = first or (kind == Kind.CHUNK and msg.header.chunk == 0)
                else:
                    self.dispatcher.on_frame(identity, msg.header, msg.payload)
            if first:
                return True
        return False

    def tell(self, identity: str, kind: int, rid: str, count: int) -> None:
        """A word to one consumer about one request (a stream's MORE or CANCEL), signed
        like every frame; it leaves with this round's bursts."""
        header = Header(
            kind, rid, "", self.dispatcher.me, enc=Enc.RAW, seq=next_seq(), src=self.dispatcher.me
        )
        header.dst, header.chunk = identity, count
        self._add(identity, self._signer.frames(header, b""))

    def close(self) -> None:
        self.router.close(linger=0)
