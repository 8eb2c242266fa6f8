"""Links between producers and consumers: who gets a message, what a death or a
busy replica does to it (pure bookkeeping), and what a consumer takes from its
sockets (real ZeroMQ sockets, frames signed, replayed, forged or expired)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from conftest import wait_until

from bytewax_nb.bus.consumer import Intake
from bytewax_nb.bus.producer import Dispatcher, Route
from bytewax_nb.bus.wire import Enc, Header, Kind, Signer, next_seq, pack_seqs, pickled, unpack_seqs

KEY = b"k" * 32


class Consumers:
    """What a dispatcher sent, per consumer identity, decoded."""

    def __init__(self) -> None:
        self.signer = Signer(KEY)
        self.got: dict[str, list[Header]] = {}

    def send(self, identity: str, frames: list[Any]) -> None:
        msg = self.signer.open(frames)
        assert msg is not None and msg.header.dst == identity
        self.got.setdefault(identity, []).append(msg.header)

    def data(self, identity: str) -> list[Header]:
        return [h for h in self.got.get(identity, []) if h.kind == Kind.DATA]


def _link_frame(kind: int, src: str, payload: bytes) -> tuple[Header, bytes]:
    return Header(kind, "", "", "b", seq=next_seq(), src=src, dst="p"), payload


def credit(d: Dispatcher, identity: str, window: int, bee: str = "b") -> None:
    body = json.dumps({"bee": bee, "window": window}).encode()
    d.on_frame(identity, *_link_frame(Kind.CREDIT, identity, body))


def done(d: Dispatcher, identity: str, seqs: list[int]) -> None:
    d.on_frame(identity, *_link_frame(Kind.DONE, identity, pack_seqs(seqs)))


def publish(d: Dispatcher, rid: str) -> None:
    d.publish("p", Header(Kind.DATA, rid, "gw", "p", deadline=time.time() + 30), b"x", [])


def dispatcher(retries: int = 1, join: bool = False) -> tuple[Dispatcher, Consumers]:
    out = Consumers()
    d = Dispatcher("p", out.signer, out.send)
    d.set_routes({"p": [Route("b", join=join, retries=retries)]})
    return d, out


def test_each_message_goes_to_the_replica_with_most_room_and_waits_when_none_has_any() -> None:
    d, out = dispatcher()
    publish(d, "r0")  # nobody linked yet: it waits, it is not lost
    credit(d, "b1", 2)
    assert [h.request_id for h in out.data("b1")] == ["r0"]
    assert [h.kind for h in out.got["b1"]][:1] == [Kind.WELCOME]
    credit(d, "b2", 2)
    for i in range(1, 4):
        publish(d, f"r{i}")
    assert len(out.data("b1")) == 2 and len(out.data("b2")) == 2  # room 1 vs 2, then 1 each
    publish(d, "r4")  # both full
    assert sum(len(q) for q in d.waiting.values()) == 1
    done(d, "b2", [out.data("b2")[0].seq])
    assert [h.request_id for h in out.data("b2")][-1] == "r4"


def test_a_dead_replicas_messages_go_to_another_one_once_then_fail() -> None:
    d, out = dispatcher(retries=1)
    credit(d, "b1", 8)
    publish(d, "r0")
    assert d.lost("b1") == []  # retried: waits for a replica
    assert d.retried == {"b": 1}
    credit(d, "b2", 8)
    assert [h.request_id for h in out.data("b2")] == ["r0"]
    failed = d.lost("b2")  # the second replica dies with it too
    assert [p.header.request_id for p in failed] == ["r0"] and failed[0].attempts == 2


def test_a_bee_declared_without_retries_answers_at_the_first_death() -> None:
    d, _ = dispatcher(retries=0)
    credit(d, "b1", 8)
    publish(d, "r0")
    assert [p.header.request_id for p in d.lost("b1")] == ["r0"] and d.retried == {}


def test_a_busy_replica_returns_its_queue_and_gets_nothing_until_it_asks_again() -> None:
    d, out = dispatcher()
    credit(d, "busy", 8)
    for i in range(3):
        publish(d, f"r{i}")
    seqs = [h.seq for h in out.data("busy")]
    d.on_frame("busy", *_link_frame(Kind.RETURN, "busy", pack_seqs(seqs[1:])))
    assert sum(len(q) for q in d.waiting.values()) == 2  # handed back, in order, to the front
    credit(d, "free", 8)
    assert [h.request_id for h in out.data("free")] == ["r1", "r2"]
    publish(d, "r3")
    assert [h.request_id for h in out.data("busy")] == ["r0", "r1", "r2"]  # nothing new for it
    assert d.lost("busy") == []  # r0 (it was in the call) is retried; r1, r2 were not its any more
    assert [h.request_id for h in out.data("free")] == ["r1", "r2", "r3", "r0"]


def test_a_revoked_link_gets_nothing_more_and_is_told_so_after_what_it_was_sent() -> None:
    d, out = dispatcher()
    credit(d, "old", 8)
    publish(d, "r0")
    d.on_frame("old", *_link_frame(Kind.REVOKE, "old", b""))
    assert [h.kind for h in out.got["old"]] == [Kind.WELCOME, Kind.DATA, Kind.REVOKED]
    publish(d, "r1")
    credit(d, "new", 8)
    assert [h.request_id for h in out.data("new")] == ["r1"]


def test_parts_of_a_join_go_to_the_same_replica_whatever_their_producer() -> None:
    owners = []
    for producer in ("a", "b"):
        d, out = dispatcher(join=True)
        for identity in ("j1", "j2", "j3"):
            credit(d, identity, 1)
        for i in range(20):
            publish(d, f"r{i}")
        owners.append({h.request_id: k for k, hs in out.got.items() for h in hs if h.kind == Kind.DATA})
        assert producer
    assert owners[0] == owners[1] and len(set(owners[0].values())) == 3  # spread, and agreed on


def test_waiting_messages_past_their_deadline_are_dropped() -> None:
    d, _ = dispatcher()
    d.publish("p", Header(Kind.DATA, "old", "gw", "p", deadline=time.time() - 1), b"x", [])
    publish(d, "fresh")
    d.expire(time.time())
    assert [p.header.request_id for q in d.waiting.values() for p in q] == ["fresh"] and d.expired == 1


# -- a consumer's sockets ------------------------------------------------------------


@pytest.fixture
def wired() -> Iterator[tuple[zmq.Socket[bytes], Intake]]:
    """A producer's ROUTER and a consumer's intake dialled into it, over TCP."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    router = ctx.socket(zmq.ROUTER)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    intake = Intake(ctx, "c", "bee", Signer(KEY), window=4)
    intake.set_links({"p": f"tcp://127.0.0.1:{port}"})
    yield router, intake
    intake.close()
    router.close(linger=0)
    ctx.term()


def _recv(router: zmq.Socket[bytes]) -> Header:
    assert router.poll(5000)
    frames = router.recv_multipart()
    msg = Signer(KEY).open(frames[1:])
    assert msg is not None
    return msg.header


def _data(obj: Any, seq: int, *, key: bytes = KEY, dst: str = "c", deadline: float = 0.0) -> list[Any]:
    payload, buffers = pickled(obj)
    header = Header(Kind.DATA, "r", "gw", "p", deadline=deadline, seq=seq, src="p", dst=dst)
    return Signer(key).frames(header, payload, buffers)


def _arrived(intake: Intake) -> list[Any]:
    wait_until(lambda: intake.read_all(time.time()) or sum(intake.guard.dropped.values()) >= 0, timeout=1)
    got = [msg.load() for _, msg in intake.queue]
    intake.queue.clear()
    return got


class _Evil:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> Any:
        return (open, (self.marker, "w"))


def test_a_consumer_takes_each_frame_once_and_never_unpickles_a_forged_one(
    wired: tuple[zmq.Socket[bytes], Intake], tmp_path: Path
) -> None:
    router, intake = wired
    first = _recv(router)
    assert first.kind == Kind.CREDIT and first.src == "c"
    marker = str(tmp_path / "pwned")
    genuine = _data(["hello"], 10)
    forged = _data(_Evil(marker), 11, key=b"attacker-key-0123456789abcdef")
    unsigned = [_data(_Evil(marker), 12)[0][:-32] + b"\0" * 32]
    for frames in (genuine, genuine, forged, unsigned, _data("old", 13, deadline=time.time() - 1)):
        router.send_multipart([b"c", *frames])
    router.send_multipart([b"c", *_data("late but fine", 9)])  # out of order, never seen: taken
    router.send_multipart([b"c", *_data("not for me", 14, dst="someone")])
    expected = {"replayed": 1, "signature": 2, "expired": 1, "misaddressed": 1}
    wait_until(lambda: (intake.read_all(time.time()), intake.guard.dropped == expected)[1], what="drops")
    assert [msg.load() for _, msg in intake.queue] == [["hello"], "late but fine"]
    assert not Path(marker).exists()
    intake.flush_acks()  # the expired one is acknowledged: it frees the producer's window
    done = _recv(router)
    assert done.kind == Kind.DONE


def test_a_consumer_hands_back_what_it_did_not_start_and_asks_again_later(
    wired: tuple[zmq.Socket[bytes], Intake],
) -> None:
    router, intake = wired
    _recv(router)  # its credit
    for seq in (20, 21, 22):
        router.send_multipart([b"c", *_data(seq, seq)])
    wait_until(lambda: (intake.read_all(time.time()), len(intake.queue) == 3)[1], what="three queued")
    link, started = intake.queue.popleft()
    assert intake.give_back(time.time()) == 2
    back = _recv(router)
    assert back.kind == Kind.RETURN
    intake.done(link, started.header.seq)
    intake.flush_acks()
    assert _recv(router).kind == Kind.DONE
    intake.resume()
    again = _recv(router)
    assert again.kind == Kind.CREDIT


def test_seq_lists_round_trip() -> None:
    assert unpack_seqs(pack_seqs([1, 2**40, 7])) == [1, 2**40, 7]
    assert Enc.RAW != Enc.JSON
