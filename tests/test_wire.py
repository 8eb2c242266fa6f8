"""Signing, framing and payload encoding, byte by byte."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import numpy as np
import pytest
import zmq
from blake3 import blake3

from bytewax_nb.bus.control import ControlCodec, Msg
from bytewax_nb.bus.sockio import readable, recv_burst, send_frames
from bytewax_nb.bus.wire import Enc, Header, Kind, Signer, dump_json, pickled


def _encode(signer: Signer, header: Header, obj: object) -> list[Any]:
    payload, buffers = pickled(obj)
    return signer.frames(header, payload, buffers)


def _msg(signer: Signer, obj: object) -> list[bytes]:
    header = Header(Kind.DATA, "rid1", "gw", "a", 1.0, 2.0, seq=7, src="hub:hub:0:1", dst="bee:a:0:1")
    return [bytes(f) for f in _encode(signer, header, obj)]


def test_signed_frames_round_trip_with_header_fields() -> None:
    signer = Signer(b"k" * 32)
    frames = _msg(signer, {"x": [1, 2]})
    msg = signer.open(frames)
    assert msg is not None
    header = msg.header
    assert (header.kind, header.request_id, header.origin, header.sender) == (Kind.DATA, "rid1", "gw", "a")
    assert (header.t0, header.deadline, header.seq) == (1.0, 2.0, 7)
    assert (header.src, header.dst) == ("hub:hub:0:1", "bee:a:0:1")
    assert msg.load() == {"x": [1, 2]}
    assert len(frames) == 1


@pytest.mark.parametrize("prepared", ["openssl state", "python wrapper"])
def test_the_signature_is_plain_hmac_sha256_of_the_frame(prepared: str) -> None:
    key = b"k" * 32
    signer = Signer(key)
    if prepared == "python wrapper":  # what a Python without `HMAC._hmac` uses
        signer._keyed = hmac.new(key, digestmod=hashlib.sha256)
    for obj in ("payload", np.arange(3.0)):
        frames = _encode(signer, Header(Kind.DATA, "r", "gw", "a"), obj)
        body, sig = bytes(frames[0][:-32]), bytes(frames[0][-32:])
        expected = hmac.new(key, digestmod=hashlib.sha256)
        if len(frames) > 1:  # buffers first (hashed once for every consumer of a fan-out),
            # by keyed BLAKE3 under a key derived from the swarm's
            buffers = blake3(key=blake3(key, derive_key_context="bytewax-nb bus buffers v1").digest())
            for buf in frames[1:]:
                view = memoryview(buf)
                buffers.update(view.nbytes.to_bytes(8, "big"))
                buffers.update(view)
            expected.update(buffers.digest())
        expected.update(body)
        assert sig == expected.digest()
        assert signer.open([bytes(f) for f in frames]) is not None


def test_any_changed_byte_is_refused() -> None:
    signer = Signer(b"k" * 32)
    frame = _msg(signer, "payload")[0]
    for i in range(len(frame)):
        tampered = bytearray(frame)
        tampered[i] ^= 1
        assert signer.open([bytes(tampered)]) is None, f"byte {i} changed unnoticed"


def test_another_key_is_refused() -> None:
    frames = _msg(Signer(b"a" * 32), "payload")
    assert Signer(b"b" * 32).open(frames) is None


def test_moving_bytes_between_buffers_is_refused() -> None:
    signer = Signer(b"k" * 32)
    frames = signer.frames(Header(Kind.DATA, "r", "g", "a", enc=Enc.JSON), b'"xy"', [b"abcd", b"ef"])
    frames = [bytes(f) for f in frames]
    assert signer.open(frames) is not None
    assert signer.open([frames[0], b"abc", b"def"]) is None
    assert signer.open(frames[:2]) is None


def test_numpy_travels_out_of_band_and_stays_writable() -> None:
    signer = Signer(b"k" * 32)
    arr = np.arange(200_000, dtype=np.float64)
    frames = _encode(signer, Header(Kind.DATA, "r", "g", "a"), {"a": arr})
    assert len(frames) == 2  # the message, one raw buffer
    ctx = zmq.Context()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    port = a.bind_to_random_port("tcp://127.0.0.1")
    b.connect(f"tcp://127.0.0.1:{port}")
    a.send_multipart(frames)
    received = b.recv_multipart(copy=False)  # what a replica does
    msg = signer.open(received)
    assert msg is not None and msg.header.n_buffers == 1
    out = msg.load()["a"]
    out += 1
    assert out[0] == 1.0 and out.sum() == arr.sum() + arr.size
    ctx.destroy(linger=0)


def test_short_key_is_rejected() -> None:
    with pytest.raises(ValueError, match="16 bytes"):
        Signer(b"short")


def test_dump_json_converts_numpy_and_refuses_objects() -> None:
    assert dump_json({"p": np.array([1, 2]), "s": np.float64(0.5)}) == b'{"p":[1,2],"s":0.5}'
    with pytest.raises(TypeError, match="object is not JSON serializable"):
        dump_json(object())


def test_a_burst_of_messages_unpacks_with_its_buffers() -> None:
    signer = Signer(b"k" * 32)
    burst: list[Any] = []
    for rid, obj in (("1", 1), ("3", np.arange(4.0)), ("4", 4)):
        burst += _encode(signer, Header(Kind.DATA, rid, "g", "a"), obj)
    assert len(burst) == 4  # three messages, one of them with a buffer
    ctx = zmq.Context()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    port = a.bind_to_random_port("tcp://127.0.0.1")
    b.connect(f"tcp://127.0.0.1:{port}")
    send_frames(a, burst)
    assert b.poll(5000)
    assert readable(b)
    messages = recv_burst(b)
    assert not readable(b)
    ctx.destroy(linger=0)
    opened = [signer.open(m) for m in messages]
    assert [o.header.request_id for o in opened if o] == ["1", "3", "4"]
    values = [o.load() for o in opened if o]
    assert values[0] == 1 and values[2] == 4 and values[1].tolist() == [0.0, 1.0, 2.0, 3.0]
    values[1][0] = 9.0  # a buffer frame stays a zero-copy, writable array


def test_nan_and_infinity_are_refused_not_sent_as_invalid_json() -> None:
    with pytest.raises(ValueError):
        dump_json({"n": float("nan")})
    with pytest.raises(ValueError):
        dump_json([float("inf")])


# -- the control channel ------------------------------------------------------------------


def test_a_control_message_reaches_the_one_it_is_addressed_to_once() -> None:
    key = Signer(b"k" * 32)
    sup, bee = ControlCodec(key, "supervisor:x"), ControlCodec(key, "bee:a:0:1.f00d")
    frames = bee.pack(Msg.HELLO, {"pid": 1}, dst="supervisor:x")
    assert sup.unpack(frames, peer="bee:a:0:1.f00d") == (Msg.HELLO, {"pid": 1})
    # the same frames again (captured and replayed, from the same identity or any other)
    assert sup.unpack(frames, peer="bee:a:0:1.f00d") is None
    assert sup.dropped == {"replayed": 1}
    # sent by one identity, replayed from another socket: refused before anything else
    assert sup.unpack(bee.pack(Msg.HELLO, {"pid": 1}, dst="supervisor:x"), peer="intruder") is None
    # addressed to another process (another supervisor, a restarted one)
    assert sup.unpack(bee.pack(Msg.HELLO, {"pid": 1}, dst="supervisor:y"), peer="bee:a:0:1.f00d") is None
    assert sup.dropped == {"replayed": 1, "wrong sender": 1, "misaddressed": 1}
    # newer messages still pass
    assert sup.unpack(bee.pack(Msg.UP, {"address": "a"}, dst="supervisor:x"), peer="bee:a:0:1.f00d")


def test_a_control_message_signed_with_another_key_or_changed_is_refused() -> None:
    sup = ControlCodec(Signer(b"k" * 32), "supervisor:x")
    forged = ControlCodec(Signer(b"o" * 32), "bee:a").pack(Msg.HELLO, {"pid": 1}, dst="supervisor:x")
    assert sup.unpack(forged, peer="bee:a") is None
    frames = ControlCodec(Signer(b"k" * 32), "bee:a").pack(Msg.HELLO, {"pid": 1}, dst="supervisor:x")
    for i in range(len(frames)):
        changed = list(frames)
        changed[i] = changed[i][:-1] + bytes([changed[i][-1] ^ 1])
        assert sup.unpack(changed, peer="bee:a") is None
    assert sup.unpack(frames[:4], peer="bee:a") is None  # the old four-frame shape: unsigned meta
    assert sup.dropped == {"signature": 2 + len(frames)}


def test_a_restarted_controller_is_heard_under_its_new_name_and_the_old_one_cannot_be_replayed() -> None:
    key = Signer(b"k" * 32)
    task = ControlCodec(key, "bee:a:0:task1")
    first = ControlCodec(key, "controller", "controller:1")
    old = first.pack(Msg.ROUTES, {}, dst="bee:a:0:task1")
    assert task.unpack(old) == (Msg.ROUTES, {})
    second = ControlCodec(key, "controller", "controller:2")  # its sequence starts anew
    assert task.unpack(second.pack(Msg.ROUTES, {}, dst="bee:a:0:task1")) == (Msg.ROUTES, {})
    assert task.unpack(old) is None
    # the task addresses whichever controller runs
    assert second.unpack(task.pack(Msg.BEAT, {}, dst="controller"), peer="bee:a:0:task1") == (Msg.BEAT, {})
