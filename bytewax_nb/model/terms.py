"""The terms of what a bee promises its callers, as they travel (JSON): made by
`contract`, combined per gateway by `promises`, read by the hub."""

from __future__ import annotations

from typing import Any, TypedDict

from .tensors import TensorMeta

__all__ = ["Contract", "Located"]


class Contract(TypedDict):
    """What a bee (or a gateway) promises its callers (`model.contract`)."""

    request: dict[str, Any] | None  # the payload's JSON Schema (None: any JSON)
    response: dict[str, Any] | None  # the answer's, or each chunk's when it streams
    streams: bool
    inputs: list[TensorMeta]  # a tensor bee's, by parameter name (empty: not one)
    outputs: list[TensorMeta]  # as its return hint declares them (empty: not declared)


class Located(TypedDict):
    """One reason a payload was refused, and where in it (a JSON pointer, RFC 6901)."""

    pointer: str
    message: str
