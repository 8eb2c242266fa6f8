"""Calls into a bee's code: one stage per bee the replica runs (one, unless fused).

A fused group (see `model.fusion`) runs its bees as stages of one process: what a stage
produces is the next stage's call, on a copy no other bee can change, and only the last
stage's results leave the process. Every call is announced to the watchdog (`enter` /
`leave`), which steps in when one runs long. A bee's error goes to its caller, with a
traceback of the user's own lines.
"""

from __future__ import annotations

import inspect
import sys
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from ..bus.consumer import InLink
from ..bus.wire import Flag, Header
from ..model.contract import Unprocessable
from ..model.errors import BadRequest
from ..model.fusion import handoff
from ..model.invoke import Context, Invoker
from ..model.protocol import BeeError, CallStyle, bee_error
from ..model.source import user_traceback
from ..model.spec import BeeSpec
from ..model.tracing import add_hop
from .outbox import Outbox

__all__ = ["Ack", "Calls", "Stage", "Starts"]

Ack = tuple[InLink, int]  # the link a message came on, and its sequence number there


class Starts(Protocol):
    """Where a generator a bee returned goes on (the replica's `Streams`)."""

    def start(self, stage: Stage, header: Header, gen: Any, acks: list[Ack]) -> None: ...


class Watched(Protocol):
    """What a call announces itself to (the replica's watchdog)."""

    def enter(self, since: float, headers: list[Header], acks: list[Any]) -> None: ...

    def leave(self) -> bool: ...


class Stage:
    """One bee of the replica (the only one, unless fused) and its own figures."""

    __slots__ = ("errors", "handled", "index", "invoke", "last", "last_error", "latencies", "name")

    def __init__(self, spec: BeeSpec, index: int, last: bool) -> None:
        self.name = spec.name
        self.invoke = Invoker(spec.fn, spec.hints)
        self.index = index
        self.last = last  # its results leave the process
        self.handled = 0
        self.errors = 0
        self.latencies: deque[float] = deque(maxlen=1024)
        self.last_error: BeeError | None = None  # what the widget shows of a bee's last failure


class _StageContext(Context):
    """A context bound to one message and stage; no closures are built per message."""

    __slots__ = ("_calls", "_header", "_stage")

    def __init__(self, calls: Calls, stage: Stage, header: Header) -> None:
        self.request_id = header.request_id
        self.gateway = header.origin
        self.bee = stage.name
        self._calls = calls
        self._stage = stage
        self._header = header

    def publish(self, data: Any, context: Any = None) -> None:
        self._calls.publish(self._stage, self._header, data)

    def respond(self, data: Any, context: Any = None) -> None:
        self._calls.said(self._stage, self._header)
        self._calls.outbox.respond(self._header, data, self._stage.name, self._stage.invoke.outputs)

    def stream(self, data: Any) -> None:
        self._calls.stream(self._stage, self._header, data)


class Calls:
    """The stages of one replica and the calls between them."""

    def __init__(
        self, members: tuple[BeeSpec, ...], outbox: Outbox, unstuck: Callable[[], None], replica: int = 0
    ) -> None:
        self.stages = [Stage(m, i, i == len(members) - 1) for i, m in enumerate(members)]
        self.replica = str(replica)  # in a traced request's hops
        self.outbox = outbox
        self.current = self.stages[0]  # the stage whose code runs (or ran last)
        self.pending: deque[tuple[Stage, Header, Any]] = deque()  # stages' results for the next
        self.watchdog: Watched | None = None
        self.streams: Starts | None = None  # where a generator a bee returns goes on
        self._unstuck = unstuck  # a call said to be stuck has returned
        self._held = False  # the call's messages stay unacknowledged: a stream holds them
        self._said = False  # the call published or responded explicitly
        self._explicit: dict[str, int] = {}  # request id -> chunks sent by ctx.stream so far
        self._started = 0.0  # when the traced call running now began (0: not traced)
        self._hopped = False  # its hop is in its trace already (it sent something)

    def call(self, header: Header, payload: Any, acks: list[Ack]) -> bool:
        """The first stage's call, then every call it leads to within the process; True if
        a stream took the messages (acknowledged when it ends, not now)."""
        self._held = False
        self.invoke(self.stages[0], header, payload, acks)
        self.run_pending(acks)
        return self._held

    def run_pending(self, acks: list[Ack]) -> None:
        pending = self.pending
        while pending:
            stage, header, value = pending.popleft()
            self.invoke(stage, header, value, acks)

    def enter(self, stage: Stage, headers: list[Header], acks: list[Ack]) -> float:
        t = time.perf_counter()
        self.current = stage
        if self.watchdog is not None:
            self.watchdog.enter(t, headers, acks)
        return t

    def leave(self, stage: Stage, t: float) -> None:
        if self.watchdog is not None and self.watchdog.leave():
            self._unstuck()
        stage.latencies.append(time.perf_counter() - t)

    def invoke(self, stage: Stage, header: Header, payload: Any, acks: list[Ack]) -> None:
        t = self.enter(stage, [header], acks)
        started = self._started = time.time() if header.trace else 0.0
        self._said = self._hopped = False
        try:
            ctx = None if stage.invoke.style == CallStyle.PAYLOAD else _StageContext(self, stage, header)
            result = stage.invoke(payload, ctx)
        except Exception as exc:  # noqa: BLE001 - a bee's error goes to its caller
            if started and not self._hopped:
                self._hop(stage, [header], started)
            self.fail(header, exc, stage)
            self._explicit.pop(header.request_id, None)
            return
        else:
            stage.handled += 1
        finally:
            self.leave(stage, t)
        if started and not self._hopped:
            self._hop(stage, [header], started)
        if _streaming(result):
            if self.streams is None or header.chunk >= 0:
                why = "a bee that takes a stream's chunks cannot stream itself" if header.chunk >= 0 else ""
                self.fail(header, TypeError(why or "this replica cannot stream"), stage)
                return
            self._held = True
            self.streams.start(stage, header, result, acks)
            return
        made = self._explicit.pop(header.request_id, None)
        if made is not None:  # ctx.stream(x) was called: the return value, if any, is the last chunk
            if result is not None:
                self.chunk(stage, header, made, result)
                made += 1
            self.end(stage, header, made)
        elif result is not None:
            self.deliver(stage, header, result)
        elif header.chunk >= 0 and stage.last and not self._said:
            self.outbox.mark(header, Flag.SKIP, header.chunk)  # its caller counts every chunk

    def _hop(self, stage: Stage, headers: list[Header], started: float) -> None:
        """A traced call's times, added to its header's trace: a fused group's next stage
        reads it the moment this one ends."""
        ended = time.time()
        self._hopped = True
        for h in headers:
            h.trace = add_hop(h.trace, stage.name, self.replica, h.t0, h.received or started, started, ended)
            h.received = ended

    def stream(self, stage: Stage, header: Header, value: Any) -> None:
        """`ctx.stream(x)`: the next chunk of this request's answer, sent now."""
        self._traced_so_far(stage, header)
        index = self._explicit.get(header.request_id, 0)
        self._explicit[header.request_id] = index + 1
        self.chunk(stage, header, index, value)

    def chunk(self, stage: Stage, header: Header, index: int, value: Any) -> None:
        """Chunk `index` of a stream a stage makes: out, or to the stages after it (their
        calls run once this one is over: `run_pending`)."""
        self.deliver(stage, _as_chunk(header, index), value)

    def end(self, stage: Stage, header: Header, made: int) -> None:
        """A stream ended after `made` chunks: said past the stages after it (they have
        nothing to do with it) to whoever comes next."""
        self.outbox.mark(header, Flag.END, made)

    def invoke_batch(self, headers: list[Header], payloads: list[Any], acks: list[Ack]) -> None:
        """A batch bee's call: a list of payloads in, a list of results out, one per payload."""
        stage = self.stages[0]  # only a group's first bee may batch
        t = self.enter(stage, headers, acks)
        self._started = 0.0  # each traced header's hop is added below, sent or not
        traced = [h for h in headers if h.trace]
        started = time.time() if traced else 0.0
        results: list[Any] | None = None
        try:
            invoke = stage.invoke
            if invoke.style == CallStyle.PAYLOAD:
                out = invoke.fn(payloads)
            else:
                out = invoke.fn(payloads, [_StageContext(self, stage, h) for h in headers])
            results = list(out)
            if len(results) != len(payloads):
                raise ValueError(
                    f"batch bee {stage.name!r} returned {len(results)} results for {len(payloads)} payloads"
                )
        except Exception as exc:  # noqa: BLE001 - a bee's error goes to each of its callers
            if traced:
                self._hop(stage, traced, started)
                traced = []
            for h in headers:
                self.fail(h, exc, stage)
            results = None
        finally:
            self.leave(stage, t)
        if traced:
            self._hop(stage, traced, started)
        if results is not None:
            stage.handled += len(headers)
            for h, r in zip(headers, results, strict=True):
                if r is not None:
                    self.deliver(stage, h, r)
        self.run_pending(acks)

    def deliver(self, stage: Stage, header: Header, result: Any) -> None:
        """A stage's return value: the next stage's call, else published, else (nothing
        listens) the caller's answer."""
        if not stage.last:
            self._pass_on(stage, header, result)
        elif self.outbox.sink:
            self.outbox.respond(header, result, stage.name, stage.invoke.outputs)
        else:
            self.outbox.publish(header, result)

    def publish(self, stage: Stage, header: Header, data: Any) -> None:
        """`ctx.publish(x)` of a stage."""
        self._said = True
        self._traced_so_far(stage, header)
        if stage.last:
            self.outbox.publish(header, data)
        else:
            self._pass_on(stage, header, data)

    def said(self, stage: Stage, header: Header) -> None:
        """The call answered explicitly (`ctx.respond`): a traced one's hop ends here."""
        self._said = True
        self._traced_so_far(stage, header)

    def _traced_so_far(self, stage: Stage, header: Header) -> None:
        """A traced call sends before it returns (`ctx.respond`, `publish`, `stream`):
        its hop is recorded once, up to the first thing it sends."""
        if header.trace and self._started and not self._hopped:
            self._hop(stage, [header], self._started)

    def _pass_on(self, stage: Stage, header: Header, data: Any) -> None:
        """A fused stage's result: the next stage's call, on a value no other bee can change."""
        self.pending.append((self.stages[stage.index + 1], header, handoff(data)))

    def fail(self, header: Header, exc: BaseException, stage: Stage) -> None:
        """A bee raised: its caller gets the error (BadRequest: a 400, the caller's mistake)."""
        if isinstance(exc, BadRequest):  # no traceback, not counted against the bee
            self.outbox.error(header, bee_error(stage.name, "BadRequest", str(exc), status=400))
            return
        if isinstance(exc, Unprocessable):  # not what its hint declares: located, like the hub's 422
            err = bee_error(stage.name, "ValidationError", str(exc), status=422)
            err["errors"] = exc.errors
            self.outbox.error(header, err)
            return
        stage.errors += 1
        text = "".join(traceback.format_exception(type(exc), exc, user_traceback(exc.__traceback__)))
        print(f"[{stage.name}] request {header.request_id} failed:\n{text}", file=sys.stderr, end="")
        stage.last_error = bee_error(stage.name, type(exc).__name__, str(exc), text, header.request_id)
        self.outbox.error(header, bee_error(stage.name, type(exc).__name__, str(exc), text))


def _streaming(result: Any) -> bool:
    """A bee that returned a generator (sync or async) streams its answer."""
    return inspect.isgenerator(result) or inspect.isasyncgen(result)


def _as_chunk(header: Header, index: int) -> Header:
    """The header of chunk `index` of the stream `header`'s request makes."""
    own = Header(header.kind, header.request_id, header.origin, header.sender, header.t0, header.deadline)
    own.chunk, own.trace = index, header.trace
    return own
