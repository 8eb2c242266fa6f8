"""A streamed answer, as the hub holds it for its caller: chunks come in by index (a
stream's chunks may travel through several replicas and arrive out of order), leave in
order, and the stream ends once every index up to its END has come (SKIP: a chunk that
made no value) or with an error. The caller's pace sets the producer's: the hub grants
more chunks (MORE) as it writes them out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from ..bus.wire import Flag

__all__ = ["Chunked", "StreamError"]


class StreamError(Exception):
    """The stream ended with an error: `body` is the bee's error (JSON bytes, `BeeError`)."""

    def __init__(self, body: bytes) -> None:
        super().__init__("stream failed")
        self.body = body


class Chunked:
    """One request's streamed answer (on the hub's event loop)."""

    def __init__(self, source: str) -> None:
        self.source = source  # the replica that sends the chunks (where MORE and CANCEL go)
        self._parts: dict[int, tuple[int, bytes]] = {}  # index -> (flags, JSON body)
        self._next = 0  # the next index to hand out
        self._count: int | None = None  # how many there are, once END has come
        self._error: bytes | None = None
        self._wake = asyncio.Event()
        self.taken = 0  # indices handed out (chunks and skips): what MORE grants back
        self.granted = 0  # of those, granted back already

    @property
    def done(self) -> bool:
        return self._error is not None or (self._count is not None and self._next >= self._count)

    def add(self, index: int, flags: int, body: bytes) -> bool:
        """A chunk, a SKIP or the END; False if it was seen already (a duplicate)."""
        if flags & Flag.END:
            if self._count is not None:
                return False
            self._count = index
        elif index < self._next or index in self._parts:
            return False
        else:
            self._parts[index] = (flags, body)
        self._wake.set()
        return True

    def fail(self, body: bytes) -> None:
        """The stream ends with this error (a bee's, or why nothing more will come)."""
        if self._error is None and not self.done:
            self._error = body
            self._wake.set()

    async def chunks(self) -> AsyncIterator[bytes]:
        """The chunks' JSON bodies in order; StreamError if the stream failed."""
        while True:
            while self._next in self._parts:
                flags, body = self._parts.pop(self._next)
                self._next += 1
                self.taken += 1
                if not flags & Flag.SKIP:
                    yield body
            if self._count is not None and self._next >= self._count:
                return
            if self._error is not None:
                raise StreamError(self._error)
            self._wake.clear()
            await self._wake.wait()
