"""What a bee's signature says: how many arguments it wants, which one is the
payload, and its hints (evaluated where they can be: a hint naming something this
process lacks promises nothing)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from .protocol import CallStyle
from .tensors import TensorType

__all__ = ["hints_of", "call_style", "parameters", "payload_param", "tensor_params"]


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


def parameters(fn: Callable[..., Any]) -> list[str]:
    try:
        return list(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return []


def hints_of(fn: Callable[..., Any]) -> dict[str, Any]:
    """The function's hints, evaluated ({} if they cannot be here)."""
    for target in (fn, type(fn).__call__ if not inspect.isroutine(fn) else None):  # an object's method
        if target is None:
            continue
        try:
            return dict(inspect.get_annotations(target, eval_str=True))
        except Exception:  # noqa: BLE001 - a hint that cannot be evaluated here: no promise
            continue
    return {}


def payload_param(fn: Callable[..., Any]) -> str | None:
    """The name of the parameter the payload goes to."""
    names = parameters(fn)
    index = 1 if call_style(fn) == CallStyle.LEGACY else 0
    return names[index] if len(names) > index else None


def tensor_params(hints: dict[str, Any]) -> dict[str, TensorType]:
    """A tensor bee's tensor parameters, in order (empty: not a tensor bee)."""
    return {k: v for k, v in hints.items() if k != "return" and isinstance(v, TensorType)}
