"""How a bee function is called: the three signatures, the context, the sink rule.

Shared by the replica runner, `DevSwarm` and `Swarm.test`, so a bee behaves the
same in a unit test, in-process and in a container.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .hints import call_style, hints_of, parameters, tensor_params
from .protocol import CallStyle
from .tensors import arguments

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


class Invoker:
    """Calls one bee function with the signature it was written for: its payload made
    into what its hint asks for (a pydantic model, a dataclass), or, for a tensor bee,
    numpy arrays by parameter name."""

    __slots__ = ("coerce", "fn", "outputs", "style", "tensors", "wants_ctx")

    def __init__(self, fn: Callable[..., Any], hints: dict[str, Any] | None = None) -> None:
        """`hints`: the function's, evaluated where it was written (read here if None)."""
        from .contract import coercer, tensor_outputs

        hints = hints_of(fn) if hints is None else hints
        self.fn = fn
        self.style = call_style(fn)
        declared = tensor_params(hints)
        self.tensors = declared  # a tensor bee's parameters: name -> datatype and shape
        self.coerce = None if declared else coercer(fn, hints)
        self.outputs = tensor_outputs(hints.get("return")) if declared else []
        self.wants_ctx = bool(declared) and "ctx" in parameters(fn)
        if declared:
            self.style = CallStyle.CONTEXT if self.wants_ctx else CallStyle.PAYLOAD

    def __call__(self, payload: Any, ctx: Any) -> Any:
        if self.tensors:
            args = arguments(payload, self.tensors)
            return self.fn(**args, ctx=ctx) if self.wants_ctx else self.fn(**args)
        if self.coerce is not None:
            payload = self.coerce(payload)
        if self.style == CallStyle.PAYLOAD:
            return self.fn(payload)
        if self.style == CallStyle.CONTEXT:
            return self.fn(payload, ctx)
        return self.fn(ctx, payload, ctx)
