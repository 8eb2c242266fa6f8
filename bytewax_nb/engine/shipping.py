"""Will a bee survive the trip to its replicas? Checked before anything is launched.

A bee travels to each replica as a cloudpickle. A value it captures that cannot be
pickled (a lock, a database connection, an HTTP client: common in notebooks) used to
fail deep inside the supervisor and hang the swarm; here it fails in the caller's
cell, naming the value, the line that uses it and what to do instead.
"""

from __future__ import annotations

import dis
import linecache
import types
from collections.abc import Callable, Iterator
from typing import Any

import cloudpickle

from ..model.errors import BeeNotPicklable

__all__ = ["check_picklable"]

_LOADS = {"LOAD_GLOBAL", "LOAD_DEREF", "LOAD_NAME", "LOAD_CLOSURE", "LOAD_CLASSDEREF"}
_DEPTH = 3  # attribute levels searched inside a captured object


def _fails(value: Any) -> str | None:
    """Why `value` cannot be pickled, or None if it can."""
    try:
        cloudpickle.dumps(value)
    except Exception as exc:  # noqa: BLE001 - any failure to pickle is the finding
        return f"{type(exc).__name__}: {exc}"
    return None


def _codes(code: types.CodeType) -> Iterator[types.CodeType]:
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _codes(const)


def _captured(fn: types.FunctionType) -> Iterator[tuple[str, str, Any]]:
    """(name, how it is captured, value) of what `fn` takes from outside itself."""
    for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=False):
        try:
            yield name, "a variable of an enclosing function", cell.cell_contents
        except ValueError:  # an empty cell
            continue
    seen: set[str] = set()
    for code in _codes(fn.__code__):
        for name in code.co_names:
            if name in fn.__globals__ and name not in seen:
                seen.add(name)
                yield name, "a global", fn.__globals__[name]
    for i, value in enumerate(fn.__defaults__ or ()):
        yield f"default #{i + 1}", "a default argument", value
    for name, value in (fn.__kwdefaults__ or {}).items():
        yield name, "a default argument", value


def _inner(value: Any, depth: int = _DEPTH) -> tuple[str, Any]:
    """The attribute path inside `value` where pickling fails (e.g. '._lock'), and what is there."""
    attrs = getattr(value, "__dict__", None)
    if depth == 0 or not isinstance(attrs, dict):
        return "", value
    for key, item in attrs.items():
        if _fails(item) is not None:
            path, found = _inner(item, depth - 1)
            return f".{key}{path}", found
    return "", value


def _where(fn: types.FunctionType, name: str) -> str:
    """', line N of FILE: `source`': where `fn` first reads `name`."""
    for code in _codes(fn.__code__):
        for ins in dis.get_instructions(code):
            if ins.opname in _LOADS and ins.argval == name and ins.positions and ins.positions.lineno:
                line = ins.positions.lineno
                text = linecache.getline(code.co_filename, line).strip()
                shown = f": `{text}`" if text else ""
                return f", line {line} of {code.co_filename}{shown}"
    return ""


def _culprit(fn: types.FunctionType, visited: set[int]) -> str | None:
    """Name the captured value that cannot be pickled, following helper functions."""
    visited.add(id(fn))
    for name, how, value in _captured(fn):
        if isinstance(value, types.ModuleType):
            continue  # modules travel by reference
        why = _fails(value)
        if why is None:
            continue
        if isinstance(value, types.FunctionType) and id(value) not in visited:
            deeper = _culprit(value, visited)
            if deeper is not None:
                return deeper
        path, found = _inner(value)
        kind = f"{type(found).__module__}.{type(found).__qualname__}".removeprefix("builtins.")
        inside = f" inside `{name}`" if path else ""
        return (
            f"it uses `{name}{path}`, a {kind}{inside} ({how} of {fn.__name__!r}{_where(fn, name)}), "
            f"which cannot be pickled ({why})"
        )
    return None


def check_picklable(bee: str, fn: Callable[..., Any]) -> None:
    """Raise BeeNotPicklable, with the value to blame, if `fn` cannot reach a replica."""
    why = _fails(fn)
    if why is None:
        return
    found = _culprit(fn, set()) if isinstance(fn, types.FunctionType) else None
    raise BeeNotPicklable(
        f"bee {bee!r} cannot be sent to its replicas: {found or why}.\n"
        "Create such objects inside the bee, or once per replica at its first call, e.g.\n"
        "    _client = None\n"
        "    def my_bee(payload):\n"
        "        global _client\n"
        "        if _client is None:\n"
        "            _client = make_client()\n"
        "        ..."
    )
