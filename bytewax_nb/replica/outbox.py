"""What leaves a replica: its results, for the bees that listen to it (its producer
side, `bus.producer`), and its answers and errors, for the hub (on the hub's link).
Frames of one round leave in bursts; the oldest one's age says when not to wait."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import zmq

from ..bus.consumer import Intake
from ..bus.producer import Producer
from ..bus.sockio import send_frames
from ..bus.tensors import encode
from ..bus.wire import Enc, Flag, Header, Kind, Signer, dump_json, next_seq, pickled
from ..model.protocol import BeeError, bee_error
from ..model.tensors import TensorMeta

__all__ = ["Outbox"]


class Outbox:
    """One replica's outgoing messages, until `flush` sends them."""

    def __init__(
        self, router: zmq.Socket[bytes], me: str, topic: str, signer: Signer, intake: Intake
    ) -> None:
        self.me = me
        self.topic = topic  # what its consumers listen to: its last bee's results
        self._signer = signer
        self._intake = intake  # its links to producers: the hub's carries the answers
        self.producer = Producer(router, me, signer, intake.guard, queued=self._note)
        self.to_hub: list[Any] = []  # answers and errors, for the hub's link
        self.hub_id: str | None = None
        self.since = 0.0  # when the oldest frame not sent yet was made (0: none waits)

    def _note(self) -> None:
        if not self.since:
            self.since = time.perf_counter()

    @property
    def sink(self) -> bool:
        """Nothing listens to this bee: its return value is the answer."""
        return not self.producer.dispatcher.consumers(self.topic)

    def publish(self, header: Header, data: Any) -> None:
        """A result for the bees that listen to this one (pickled, buffers out of band); a
        stream's chunk keeps its index, and its deadline starts anew (a stream may run
        longer than one gateway timeout: each chunk gets one)."""
        payload, buffers = pickled(data)
        self.producer.publish(self.topic, self._onward(header), payload, buffers)

    def mark(self, header: Header, flags: int, chunk: int) -> None:
        """A stream's END (how many chunks) or SKIP (chunk made no value) for whoever
        comes next: the hub when nothing listens to this bee, else the bees that do."""
        if self.sink:
            out = Header(Kind.CHUNK, header.request_id, header.origin, self.topic, header.t0, enc=Enc.JSON)
            out.trace = header.trace
            self._send_hub(out, chunk, flags, b"")
            return
        marker = self._onward(header)
        marker.chunk, marker.flags = chunk, flags
        self.producer.publish(self.topic, marker, b"", [])

    def _onward(self, header: Header) -> Header:
        deadline = header.deadline
        if header.chunk >= 0 and deadline:
            deadline = time.time() + (deadline - header.t0)
        out = Header(Kind.DATA, header.request_id, header.origin, self.topic, header.t0, deadline)
        out.chunk, out.flags, out.trace = header.chunk, header.flags, header.trace
        return out

    @property
    def room(self) -> bool:
        """The bees that listen to this one can take more now (nothing waits for them)."""
        dispatcher = self.producer.dispatcher
        return not any(dispatcher.waiting.get(r.bee) for r in dispatcher.consumers(self.topic))

    def respond(self, header: Header, data: Any, bee: str, outputs: Sequence[TensorMeta] = ()) -> None:
        """The caller's answer, as JSON (a value JSON cannot carry is the bee's error); for
        a stream's chunk, that chunk of the answer; for an inference call, raw tensors
        (`outputs`: the bee's declared ones, which name them)."""
        if header.flags & Flag.TENSOR and header.chunk < 0:
            self._tensors(header, data, bee, outputs)
            return
        try:
            body = dump_json(data)
        except TypeError as exc:
            msg = f"the response of bee {bee!r} is not JSON serializable: {exc}"
            self.error(header, bee_error(bee, "TypeError", msg))
            return
        except ValueError:
            msg = f"the response of bee {bee!r} holds NaN or Infinity, which JSON cannot carry"
            self.error(header, bee_error(bee, "ValueError", msg + " (use None, or a string)"))
            return
        if header.chunk >= 0:
            out = Header(Kind.CHUNK, header.request_id, header.origin, bee, header.t0, enc=Enc.JSON)
            out.trace = header.trace
            self._send_hub(out, header.chunk, 0, body)
        else:
            self._to_hub(Kind.RESPONSE, header, bee, body)

    def _tensors(self, header: Header, data: Any, bee: str, outputs: Sequence[TensorMeta]) -> None:
        try:
            entries, buffers = encode(data, outputs)
        except (TypeError, ValueError) as exc:
            self.error(header, bee_error(bee, type(exc).__name__, f"bee {bee!r} made no tensors: {exc}"))
            return
        out = Header(Kind.RESPONSE, header.request_id, header.origin, bee, header.t0, enc=Enc.TENSORS)
        out.trace = header.trace
        self._send_hub(out, -1, 0, dump_json({"outputs": entries}), buffers)

    def error(self, header: Header, err: BeeError) -> None:
        """The caller's error (its request id set from the header); a stream ends with it."""
        err["request_id"] = header.request_id
        self._to_hub(Kind.ERROR, header, err["bee"], dump_json(err))

    def _to_hub(self, kind: int, header: Header, bee: str, body: bytes) -> None:
        out = Header(kind, header.request_id, header.origin, bee, header.t0, enc=Enc.JSON)
        out.trace = header.trace
        self._send_hub(out, header.chunk, 0, body)

    def _send_hub(
        self, out: Header, chunk: int, flags: int, body: bytes, buffers: Sequence[Any] = ()
    ) -> None:
        out.seq, out.src, out.dst = next_seq(), self.me, self.hub_id or ""
        out.chunk, out.flags = chunk, flags
        self._note()
        self.to_hub += self._signer.frames(out, body, buffers)

    def overdue(self, hold: float) -> bool:
        """A finished result has waited longer than `hold` seconds for the rest of its round."""
        return bool(self.since) and time.perf_counter() - self.since > hold

    def flush(self) -> None:
        """Send what this round produced, one burst per link, then say what is done.

        A message is acknowledged only once what it produced has left: while results
        wait here for a consumer with room, the producers' windows close and the
        backpressure travels upstream to the gateway."""
        self.since = 0.0
        self.producer.flush()
        if self.to_hub:
            hub = self._intake.links.get(self.hub_id or "")
            if hub is not None:
                send_frames(hub.sock, self.to_hub)
            else:
                self._intake.guard.drop("unreachable")  # the hub is restarting: its callers went with it
            self.to_hub = []
        if self.producer.dispatcher.idle:
            self._intake.flush_acks()
