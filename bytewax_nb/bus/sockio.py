"""The bus's hot socket calls, without pyzmq's convenience layer.

pyzmq's `send_multipart` and `recv_multipart` rebuild enum flags and check types on
every frame: for a burst of ten small messages that is about two thirds of the time
the calls take. These helpers pass plain integer flags and receive each message's
first frame as bytes, keeping only out-of-band buffers as zero-copy frames (so
arrays unpickled from them stay writable).
"""

from __future__ import annotations

from typing import Any, cast

import zmq

from .wire import n_buffers

__all__ = ["readable", "recv_burst", "recv_routed", "send_frames", "send_routed"]

_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)
_SNDMORE = int(zmq.SNDMORE)
_RCVMORE = int(zmq.RCVMORE)
_NOBLOCK = int(zmq.NOBLOCK)


def readable(sock: zmq.Socket[bytes]) -> bool:
    """A message waits: cheaper than catching zmq.Again on an empty socket."""
    return bool(cast(int, sock.get(_EVENTS)) & _POLLIN)


def send_frames(sock: zmq.Socket[bytes], frames: list[Any]) -> None:
    """Send one ZeroMQ message made of `frames` (bytes or buffers)."""
    last = len(frames) - 1
    for i in range(last):
        sock.send(frames[i], _SNDMORE)
    sock.send(frames[last], 0)


def send_routed(sock: zmq.Socket[bytes], identity: str, frames: list[Any]) -> None:
    """Send one ZeroMQ message to the peer `identity` of a ROUTER."""
    sock.send(identity.encode(), _SNDMORE)
    send_frames(sock, frames)


def recv_routed(sock: zmq.Socket[bytes]) -> tuple[str, list[list[Any]]]:
    """A ROUTER's next message: the sender's identity and the bus messages it packs."""
    identity: bytes = sock.recv(_NOBLOCK)
    if not sock.get(_RCVMORE):
        return identity.decode(errors="replace"), []
    return identity.decode(errors="replace"), recv_burst(sock)


def recv_burst(sock: zmq.Socket[bytes]) -> list[list[Any]]:
    """Receive one ZeroMQ message (call only when `readable`) and split it into the
    bus messages it packs, each `[frame0, *buffers]`."""
    out: list[list[Any]] = []
    more = True
    while more:
        first: bytes = sock.recv(_NOBLOCK)
        message: list[Any] = [first]
        for _ in range(n_buffers(first)):
            if not sock.get(_RCVMORE):
                break  # a truncated message: its signature check will fail
            message.append(sock.recv(_NOBLOCK, copy=False))
        out.append(message)
        more = bool(sock.get(_RCVMORE))
    return out
