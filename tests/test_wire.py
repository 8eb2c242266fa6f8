"""Signing, framing and payload encoding, byte by byte."""

from __future__ import annotations

import numpy as np
import pytest
import zmq

from bytewax_nb.wire import Enc, Header, Kind, Signer, dump_json, load_payload, topic_of


def _msg(signer: Signer, obj: object) -> list[bytes]:
    frames = signer.encode(topic_of("a"), Header(Kind.DATA, "rid1", "gw", "a", 1.0, 2.0), obj)
    return [bytes(f) for f in frames]


def test_signed_frames_round_trip_with_header_fields() -> None:
    signer = Signer(b"k" * 32)
    frames = _msg(signer, {"x": [1, 2]})
    header = signer.open(frames)
    assert header is not None
    assert (header.kind, header.request_id, header.origin, header.sender) == (Kind.DATA, "rid1", "gw", "a")
    assert (header.t0, header.deadline) == (1.0, 2.0)
    assert load_payload(header, frames) == {"x": [1, 2]}


@pytest.mark.parametrize("index", [0, 1, 2])
def test_any_changed_byte_is_refused(index: int) -> None:
    signer = Signer(b"k" * 32)
    frames = _msg(signer, "payload")
    tampered = bytearray(frames[index])
    tampered[-1] ^= 1
    frames[index] = bytes(tampered)
    assert signer.open(frames) is None


def test_another_key_is_refused() -> None:
    frames = _msg(Signer(b"a" * 32), "payload")
    assert Signer(b"b" * 32).open(frames) is None


def test_moving_bytes_between_frames_is_refused() -> None:
    signer = Signer(b"k" * 32)
    frames = signer.frames(topic_of("a"), Header(Kind.DATA, "r", "g", "a", enc=Enc.JSON), b'"xy"')
    frames = [bytes(f) for f in frames]
    spliced = [frames[0], frames[1], frames[2][:2], frames[2][2:]]
    assert signer.open(spliced) is None


def test_numpy_travels_out_of_band_and_stays_writable() -> None:
    signer = Signer(b"k" * 32)
    arr = np.arange(200_000, dtype=np.float64)
    frames = signer.encode(topic_of("a"), Header(Kind.DATA, "r", "g", "a"), {"a": arr})
    assert len(frames) == 4  # topic, header, pickle, one raw buffer
    ctx = zmq.Context()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    port = a.bind_to_random_port("tcp://127.0.0.1")
    b.connect(f"tcp://127.0.0.1:{port}")
    a.send_multipart(frames)
    received = b.recv_multipart(copy=False)  # what a replica does
    header = signer.open(received)
    assert header is not None and header.n_buffers == 1
    out = load_payload(header, received)["a"]
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
