"""A consumer's side of its links: the sockets it reads its messages from.

A bee replica dials one DEALER into each of its producers (the hub, and every
replica of the bees it listens to) and grants each a window: how many messages it
may send before this replica says DONE. Messages are verified (signature, address,
sequence, deadline) as they arrive and wait in `queue`, in arrival order, for the
replica's loop. The loop acknowledges each one once its results have left; a
replica busy past its patience hands the queue back (RETURN), and one that retires
asks its producers to stop (REVOKE) and drains what they sent before their answer.
"""

from __future__ import annotations

import contextlib
import json
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import zmq

from .sockio import readable, recv_burst, send_frames
from .wire import Enc, Header, Kind, Message, ReplayGuard, Signer, next_seq, pack_seqs

__all__ = ["InLink", "Intake"]


@dataclass(eq=False, slots=True)
class InLink:
    """One producer this replica reads from."""

    identity: str
    address: str
    sock: zmq.Socket[bytes]
    welcomed: bool = False  # the producer knows this link (answered the first credit)
    revoked: bool = False  # the producer will send nothing more (answered a REVOKE)
    window: int = -1  # last window granted
    acks: list[int] = field(default_factory=list)  # handled, to be said DONE


Queued = tuple[InLink, Message]


class Intake:
    """The links of one replica, and the messages that arrived on them."""

    def __init__(
        self, ctx: zmq.Context[zmq.Socket[bytes]], me: str, bee: str, signer: Signer, window: int
    ) -> None:
        self.ctx = ctx
        self.me = me
        self.bee = bee
        self.signer = signer
        self.window = window
        self.guard = ReplayGuard(me)
        self.links: dict[str, InLink] = {}
        self.queue: deque[Queued] = deque()
        self.retiring = False
        self.paused = False
        self.changed = False  # links were added or removed: the poller must be rebuilt
        self.news = False  # a link was welcomed, revoked, added or removed: tell the supervisor
        self.by_socket: dict[zmq.Socket[bytes], InLink] = {}
        self._returns: dict[InLink, list[int]] = {}
        # the hub's word on streams this replica makes: (MORE or CANCEL, request id, count)
        self.orders: list[tuple[int, str, int]] = []
        self.unacked = 0  # messages handled and not yet said DONE

    # -- links -----------------------------------------------------------------------

    def set_links(self, wanted: dict[str, str], decorate: Any = None) -> None:
        """Read from exactly these producers (identity -> address); new ones get a window."""
        for identity in [i for i in self.links if i not in wanted]:
            link = self.links.pop(identity)
            del self.by_socket[link.sock]
            link.sock.close(linger=0)
            self.changed = self.news = True
        for identity, address in wanted.items():
            if identity in self.links:
                continue
            sock = self.ctx.socket(zmq.DEALER)
            sock.setsockopt(zmq.IDENTITY, self.me.encode())
            sock.setsockopt(zmq.LINGER, 1000)
            sock.setsockopt(zmq.SNDHWM, 0)  # bounded by windows, never dropped
            sock.setsockopt(zmq.RCVHWM, 0)
            if decorate is not None:
                decorate(sock)  # the bus's encryption, when on
            sock.connect(address)
            link = self.links[identity] = InLink(identity, address, sock)
            self.by_socket[sock] = link
            self.changed = self.news = True
            if self.retiring:
                self._send(link, Kind.REVOKE, b"")
            else:
                self._grant(link, 0 if self.paused else self.window)

    def sockets(self) -> list[zmq.Socket[bytes]]:
        return [k.sock for k in self.links.values()]

    def link_of(self, sock: zmq.Socket[bytes]) -> InLink | None:
        return self.by_socket.get(sock)

    @property
    def welcomed(self) -> set[str]:
        return {i for i, k in self.links.items() if k.welcomed}

    # -- reading ---------------------------------------------------------------------

    def read(self, link: InLink, now: float) -> None:
        """Take what waits on one link (call when it is readable): data joins `queue`."""
        sock = link.sock
        while readable(sock):
            for frames in recv_burst(sock):
                msg = self.signer.open(frames)
                if msg is None:
                    self.guard.drop("signature")
                    continue
                header = msg.header
                if not self.guard.admit(header, now, link.identity):
                    if header.kind == Kind.DATA and header.dst == self.me:
                        self.done(link, header.seq)  # expired: nobody waits, but it frees the window
                    continue
                kind = header.kind
                if kind == Kind.DATA:
                    self.queue.append((link, msg))
                elif kind == Kind.WELCOME:
                    link.welcomed = self.news = True
                elif kind == Kind.REVOKED:
                    link.revoked = self.news = True
                elif kind in (Kind.MORE, Kind.CANCEL):  # the hub, about a stream this replica makes
                    self.orders.append((kind, header.request_id, header.chunk))
                else:
                    self.guard.drop("unexpected")

    def read_all(self, now: float) -> None:
        for link in list(self.links.values()):
            self.read(link, now)

    # -- answering producers ---------------------------------------------------------

    def done(self, link: InLink, seq: int) -> None:
        link.acks.append(seq)
        self.unacked += 1

    def flush_acks(self) -> None:
        """Say DONE for what was handled, once per drained burst. Gathering more per DONE
        was measured and left out: it saved no throughput within noise, and every
        message handled but not yet said DONE runs again if the replica dies."""
        if not self.unacked:
            return
        for link in self.links.values():
            if link.acks:
                self._send(link, Kind.DONE, pack_seqs(link.acks))
                link.acks.clear()
        self.unacked = 0

    def give_back(self, now: float) -> int:
        """Hand every message not yet started back to its producer (RETURN: the link is
        paused there until `resume`); returns how many."""
        self.read_all(now)
        n = len(self.queue)
        while self.queue:
            link, msg = self.queue.popleft()
            self.giving_back(link, msg.header.seq)
        self.flush_returns()
        for link in self.links.values():
            link.window = 0  # a RETURN pauses the link at its producer
        self.paused = True
        return n

    def giving_back(self, link: InLink, seq: int) -> None:
        """Mark one message for RETURN (sent by `flush_returns`)."""
        self._returns.setdefault(link, []).append(seq)

    def flush_returns(self) -> None:
        for link, seqs in self._returns.items():
            if link.identity in self.links:
                self._send(link, Kind.RETURN, pack_seqs(seqs))
        self._returns.clear()

    def resume(self) -> None:
        """After a long call: ask for messages again."""
        self.paused = False
        if not self.retiring:
            for link in self.links.values():
                self._grant(link, self.window)

    def revoke(self) -> None:
        """Retiring: ask every producer for nothing more."""
        self.retiring = self.news = True
        for link in self.links.values():
            self._send(link, Kind.REVOKE, b"")

    @property
    def revoked(self) -> bool:
        """Retiring, and every producer has said it sends nothing more."""
        return self.retiring and all(k.revoked for k in self.links.values())

    def drained(self, producers: Iterable[str]) -> bool:
        """Retired and every producer still alive answered, and nothing waits here."""
        alive = set(producers)
        return (
            self.retiring and not self.queue and all(k.revoked for i, k in self.links.items() if i in alive)
        )

    def _grant(self, link: InLink, window: int) -> None:
        link.window = window
        body = json.dumps({"bee": self.bee, "window": window}).encode()
        self._send(link, Kind.CREDIT, body)

    def _send(self, link: InLink, kind: int, payload: bytes) -> None:
        enc = Enc.JSON if kind == Kind.CREDIT else Enc.RAW
        header = Header(kind, "", "", self.bee, enc=enc, seq=next_seq(), src=self.me, dst=link.identity)
        with contextlib.suppress(zmq.ZMQError):  # a link being closed: its producer is gone
            send_frames(link.sock, self.signer.frames(header, payload))

    def close(self) -> None:
        for link in self.links.values():
            link.sock.close(linger=0)
        self.links.clear()
        self.by_socket.clear()
