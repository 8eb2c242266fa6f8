"""How a bee function is called: the three signatures, the context, the sink rule.

Shared by the replica runner, `DevSwarm` and `Swarm.test`, so a bee behaves the
same in a unit test, in-process and in a container.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from .protocol import CallStyle

__all__ = ["Context", "Invoker", "call_style"]

Callback = Callable[[Any], None]


class Context:
    """What a bee sees of its message: ids, and the way to publish or respond.

    `publish(data, context)` and `respond(data, context)` also accept the original
    SDK's second argument, so a context can stand in for its `swarm` object.
    """

    __slots__ = ("_on_publish", "_on_respond", "_on_stream", "bee", "gateway", "request_id")

    def __init__(
        self,
        on_publish: Callback,
        on_respond: Callback,
        *,
        request_id: str = "",
        gateway: str = "",
        bee: str = "",
        on_stream: Callback | None = None,
    ) -> None:
        self.request_id = request_id
        self.gateway = gateway
        self.bee = bee
        self._on_publish = on_publish
        self._on_respond = on_respond
        self._on_stream = on_stream

    def publish(self, data: Any, context: Any = None) -> None:
        """Send `data` to every bee that listens to this one."""
        self._on_publish(data)

    def respond(self, data: Any, context: Any = None) -> None:
        """Answer the caller of this request (the first response wins)."""
        self._on_respond(data)

    def stream(self, data: Any) -> None:
        """Send the caller the next chunk of a streamed answer, now (as a generator bee's
        `yield` does); the answer ends when the call returns."""
        if self._on_stream is None:
            raise TypeError("this context cannot stream")
        self._on_stream(data)


def call_style(fn: Callable[..., Any]) -> CallStyle:
    """How many positional arguments `fn` wants: 1, 2 (payload, ctx) or 3 (legacy).

    Only parameters without defaults count, so `def f(x, model=model)` is still a
    one-argument bee.
    """
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return CallStyle.PAYLOAD
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    required = sum(1 for p in params if p.kind in positional and p.default is p.empty)
    return CallStyle(min(max(required, 1), 3))


class Invoker:
    """Calls one bee function with the signature it was written for."""

    __slots__ = ("fn", "style")

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.style = call_style(fn)

    def __call__(self, payload: Any, ctx: Any) -> Any:
        if self.style == CallStyle.PAYLOAD:
            return self.fn(payload)
        if self.style == CallStyle.CONTEXT:
            return self.fn(payload, ctx)
        return self.fn(ctx, payload, ctx)
