"""Streams a replica makes: generators its bees returned, advanced one chunk at a time
between the loop's turns, so the replica stays responsive while they run.

A stream makes its next chunk only when there is room for it: the hub grants each
stream a window of chunks and gives more as its caller takes them (MORE), so a slow
reader slows the bee and nothing piles up; where other bees listen, a chunk waits for
one of their replicas to have room. A caller that goes away (CANCEL) closes the
generator: `GeneratorExit` in the bee, counted. Each step runs under the watchdog, so a
bee's timeout applies per chunk. The messages that started a stream stay unacknowledged
until it ends: a replica that dies mid-stream is known to its producer, and the hub
answers the caller with an error instead of starting the stream again.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..bus.wire import STREAM_CREDIT, Header
from .stages import Ack, Calls, Stage

__all__ = ["Streams"]


@dataclass(eq=False)
class Stream:
    """One generator, and how far it has come."""

    gen: Any
    stage: Stage
    header: Header
    acks: list[Ack]
    made: int = 0  # chunks so far
    credit: int = STREAM_CREDIT  # chunks it may still send the hub


class Streams:
    """The streams of one replica, by request id (the loop's thread only)."""

    def __init__(self, calls: Calls, done: Callable[[list[Ack]], None]) -> None:
        self.calls = calls
        self._done = done  # acknowledge a finished stream's messages
        self.active: dict[str, Stream] = {}
        self.closed = 0  # streams closed because their caller went away
        self.chunks = 0  # chunks made so far
        self._aloop: asyncio.AbstractEventLoop | None = None  # for async generators

    def start(self, stage: Stage, header: Header, gen: Any, acks: list[Ack]) -> None:
        self.active[header.request_id] = Stream(gen, stage, header, acks)

    def _room(self, s: Stream) -> bool:
        return s.credit > 0 if self.calls.outbox.sink else self.calls.outbox.room

    def ready(self) -> bool:
        """Some stream may make a chunk now (the loop must not sleep)."""
        return any(self._room(s) for s in self.active.values())

    def step(self) -> None:
        """One chunk from every stream that has room for one."""
        for rid, s in list(self.active.items()):
            if rid in self.active and self._room(s):
                self._step(s)

    def _next(self, gen: Any) -> Any:
        if inspect.isasyncgen(gen):
            if self._aloop is None:
                self._aloop = asyncio.new_event_loop()
            return self._aloop.run_until_complete(gen.__anext__())
        return next(gen)

    def _step(self, s: Stream) -> None:
        calls = self.calls
        t = calls.enter(s.stage, [s.header], s.acks)
        try:
            value = self._next(s.gen)
        except (StopIteration, StopAsyncIteration):
            calls.leave(s.stage, t)
            calls.end(s.stage, s.header, s.made)
            self._finish(s)
            return
        except Exception as exc:  # noqa: BLE001 - a bee's error ends its stream, to its caller
            calls.leave(s.stage, t)
            calls.fail(s.header, exc, s.stage)
            self._finish(s)
            return
        calls.leave(s.stage, t)
        index, s.made, s.credit = s.made, s.made + 1, s.credit - 1
        self.chunks += 1
        calls.chunk(s.stage, s.header, index, value)
        calls.run_pending([])

    def more(self, rid: str, n: int) -> None:
        """The hub's caller took chunks: `n` more may go."""
        s = self.active.get(rid)
        if s is not None:
            s.credit += n

    def cancel(self, rid: str) -> None:
        """The caller went away: close the generator (GeneratorExit in the bee)."""
        s = self.active.get(rid)
        if s is None:
            return
        self.closed += 1
        self._close(s.gen)
        self._finish(s)

    def close_all(self) -> None:
        """The replica stops: every generator is closed."""
        for s in list(self.active.values()):
            self._close(s.gen)
            self._finish(s)
        if self._aloop is not None:
            self._aloop.close()

    def _close(self, gen: Any) -> None:
        try:
            if inspect.isasyncgen(gen):
                if self._aloop is not None:
                    self._aloop.run_until_complete(gen.aclose())
            else:
                gen.close()
        except Exception:  # noqa: BLE001 - what a bee does on its way out is its own business
            pass

    def _finish(self, s: Stream) -> None:
        self.active.pop(s.header.request_id, None)
        self._done(s.acks)
