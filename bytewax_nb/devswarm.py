"""In-process doubles: `DevSwarm` (the original SDK's) and the whole-DAG `run_in_process`.

No process, socket or container: for unit-testing bees in a notebook cell. Payloads
and responses go through JSON as they would over HTTP, so a test sees what a caller
would.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any

from .bus.wire import dump_json
from .model.errors import BytewaxNBError, RemoteError
from .model.invoke import Context, Invoker
from .model.protocol import CallStyle
from .model.source import user_traceback
from .model.spec import BeeSpec, Topology

__all__ = ["DevSwarm", "run_in_process"]


class DevSwarm(Context):
    """A context that records: pass it as `ctx` (or as the legacy `swarm`)."""

    def __init__(self) -> None:
        self.published: list[Any] = []
        self.responded: list[Any] = []
        self.streamed: list[Any] = []
        super().__init__(
            self.published.append,
            self.responded.append,
            request_id="dev",
            gateway="dev",
            on_stream=self.streamed.append,
        )

    def run(self, fn: Callable[..., Any], payload: Any) -> Any:
        """Call `fn` with whichever signature it has; a non-None result is published. A
        generator bee's chunks are streamed (`streamed`) and returned as a list."""
        result = Invoker(fn)(payload, self)
        if inspect.isgenerator(result) or inspect.isasyncgen(result):
            chunks = _drain(result)
            self.streamed.extend(chunks)
            return chunks
        if result is not None:
            self.published.append(result)
        return result


def _drain(gen: Any) -> list[Any]:
    """Every chunk of a bee's generator (sync or async)."""
    if inspect.isgenerator(gen):
        return list(gen)

    async def collect() -> list[Any]:
        return [chunk async for chunk in gen]

    return asyncio.run(collect())


def _json(value: Any) -> Any:
    return json.loads(dump_json(value))


def run_in_process(topology: Topology, gateway: str, payload: Any) -> Any:
    """Push one payload through the DAG in this process; the first response wins."""
    topology.validate()
    if gateway not in topology.gateways:
        raise BytewaxNBError(f"unknown gateway {gateway!r}")
    queue: deque[tuple[str, Any]] = deque([(gateway, _json(payload))])
    answers: list[tuple[bool, Any]] = []
    joins: dict[str, dict[str, Any]] = {}
    streamed = False  # a bee streamed to the bees after it: their answers are the chunks

    def call(bee: BeeSpec, data: Any) -> None:
        chunks: list[Any] = []
        ctx = Context(
            lambda x: queue.append((bee.name, x)),
            lambda x: answers.append((True, _json(x))),
            request_id="test",
            gateway=gateway,
            bee=bee.name,
            on_stream=chunks.append,
        )
        invoker = Invoker(bee.fn)
        try:
            if bee.batch_size > 1:
                results = (
                    invoker.fn([data]) if invoker.style == CallStyle.PAYLOAD else invoker.fn([data], [ctx])
                )
                result = next(iter(results))
            else:
                result = invoker(data, ctx)
            if inspect.isgenerator(result) or inspect.isasyncgen(result):
                chunks += _drain(result)
                result = None
        except Exception as exc:  # noqa: BLE001 - becomes the answer, as in a swarm
            tb = "".join(traceback.format_exception(type(exc), exc, user_traceback(exc.__traceback__)))
            answers.append((False, RemoteError(bee.name, type(exc).__name__, str(exc), tb, "test")))
            return
        if chunks:  # a stream: its answer is its chunks, as a caller that asks for no stream gets it
            if result is not None:
                chunks.append(result)
            if topology.is_sink(bee.name):
                answers.append((True, _json(chunks)))
            else:
                nonlocal streamed
                streamed = True
                queue.extend((bee.name, chunk) for chunk in chunks)
            return
        if result is not None:
            if topology.is_sink(bee.name):
                answers.append((True, _json(result)))
            else:
                queue.append((bee.name, result))

    while queue:
        producer, data = queue.popleft()
        for bee in topology.consumers(producer):
            if bee.join:
                parts = joins.setdefault(bee.name, {})
                parts[producer] = data
                if len(parts) == len(bee.inputs):
                    del joins[bee.name]
                    call(bee, {src: parts[src] for src in bee.inputs})
            else:
                call(bee, data)
    if not answers:
        raise BytewaxNBError(f"no bee responded to the payload sent to {gateway!r}")
    failed = next((value for ok, value in answers if not ok), None)
    if streamed:  # each chunk's answer, in order (an error ends the stream)
        if failed is not None:
            raise failed
        return [value for _, value in answers]
    ok, value = answers[0]
    if not ok:
        raise value
    return value
