"""Requests the hub has accepted and not yet answered: each caller's future (none for a
submit), counted per gateway (`max_in_flight`), and an event that is set whenever none
waits (what a drain waits for). The first answer for an id wins; a late one finds
nobody. A streamed answer's chunks go to its `Chunked`; its caller's time (the
gateway's timeout) starts anew with every chunk."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from ..bus.wire import dump_json
from ..model.protocol import bee_error
from .streams import Chunked

__all__ = ["Reply", "Waiting"]

# a bus message kind (response or error), its body (JSON, or describing tensors), its
# bee, and its raw buffers (an inference call's tensors)
Reply = tuple[int, bytes, str, list[Any]]


@dataclass(eq=False)
class _Call:
    gateway: str
    fut: asyncio.Future[Reply | Chunked] | None  # None: a submit, nobody waits
    timeout: float = 0.0
    timer: asyncio.TimerHandle | None = None
    stream: Chunked | None = None


class Waiting:
    """Callers by request id, on the hub's event loop."""

    def __init__(self) -> None:
        self.pending: dict[str, _Call] = {}
        self._open: dict[str, int] = {}  # per gateway: how many of `pending` are its
        self.idle = asyncio.Event()
        self.idle.set()

    def __len__(self) -> int:
        return len(self.pending)

    def __contains__(self, rid: str) -> bool:
        return rid in self.pending

    def in_flight(self, gateway: str) -> int:
        return self._open.get(gateway, 0)

    def track(
        self, rid: str, gateway: str, fut: asyncio.Future[Reply | Chunked] | None, timeout: float = 0.0
    ) -> None:
        call = self.pending[rid] = _Call(gateway, fut, timeout)
        if fut is not None and timeout:
            call.timer = asyncio.get_running_loop().call_later(timeout, self.expire, rid)
        self._open[gateway] = self._open.get(gateway, 0) + 1
        self.idle.clear()

    def forget(self, rid: str) -> None:
        call = self.pending.pop(rid, None)
        if call is not None:
            self._open[call.gateway] -= 1
            if call.timer is not None:
                call.timer.cancel()
        if not self.pending:
            self.idle.set()

    def answer(self, rid: str, reply: Reply) -> bool:
        """Give a caller its answer; False if nobody waits for it (late, or a second one).
        An error ends a stream that has begun; a plain answer after one has is late."""
        call = self.pending.get(rid)
        if call is None:
            return False
        if call.stream is not None:
            if reply[0] != 2:  # Kind.ERROR
                return False
            call.stream.fail(reply[1])
            return True
        self.forget(rid)
        if call.fut is not None and not call.fut.done():
            call.fut.set_result(reply)
        return True

    def chunk(self, rid: str, source: str, index: int, flags: int, body: bytes) -> Chunked | None:
        """A streamed answer's chunk (or SKIP, or END); its `Chunked`, or None if nobody
        waits for it. The first makes the stream its caller's answer."""
        call = self.pending.get(rid)
        if call is None or call.fut is None:
            return None
        if call.stream is None:
            if call.fut.done():  # answered already, with a plain value
                return None
            call.stream = Chunked(source)
            call.fut.set_result(call.stream)
        if call.stream.add(index, flags, body) and call.timer is not None:
            call.timer.cancel()  # the caller's time starts anew with every chunk
            call.timer = asyncio.get_running_loop().call_later(call.timeout, self.expire, rid)
        return call.stream

    def streaming(self, rid: str) -> bool:
        """Its answer is a stream that has begun (sent again, it would repeat chunks)."""
        call = self.pending.get(rid)
        return call is not None and call.stream is not None

    def expire(self, rid: str) -> None:
        """The caller's time is up: TimeoutError (a 504), or a stream ends with the error."""
        call = self.pending.get(rid)
        if call is None:
            return
        if call.stream is not None:
            why = f"no chunk within {call.timeout:g} s"
            call.stream.fail(dump_json(bee_error("", "Timeout", why, status=504)))
            return
        self.forget(rid)
        if call.fut is not None and not call.fut.done():
            call.fut.set_exception(TimeoutError())

    def is_submit(self, rid: str) -> bool:
        """Accepted with no caller waiting (`?mode=submit`)."""
        call = self.pending.get(rid)
        return call is not None and call.fut is None

    def clear(self) -> None:
        """The owner is gone: nobody waits any more."""
        for call in self.pending.values():
            if call.timer is not None:
                call.timer.cancel()
        self.pending.clear()
        self._open.clear()
        self.idle.set()
