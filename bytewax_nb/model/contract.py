"""What a bee promises its callers, read once from its type hints where its code is (the
owner): the JSON Schema of the payload it takes and of what it answers, whether it
streams, and a tensor bee's inputs and outputs. It travels as JSON with the bee's spec,
so a hub, or a stack's controller that never has the code, still knows it.

Schemas come from pydantic when it is installed (models, dataclasses, `TypedDict`, any
hint it knows); without it, a small reading of the common hints does. A hint nothing
here can read, or none, promises free JSON.
"""

from __future__ import annotations

import collections.abc as cabc
import dataclasses
import inspect
import types
import typing
from collections.abc import Callable
from typing import Any, Literal

from .hints import hints_of, payload_param
from .tensors import TensorMeta, TensorType
from .terms import Contract, Located

__all__ = [
    "Contract",
    "Unprocessable",
    "coercer",
    "contract_of",
    "free",
    "pointer",
    "schema_of",
    "tensor_outputs",
]

Schema = dict[str, Any]
_STREAMS = (
    cabc.Iterator,
    cabc.Iterable,
    cabc.Generator,
    cabc.AsyncIterator,
    cabc.AsyncIterable,
    cabc.AsyncGenerator,
)


def free() -> Contract:
    return Contract(request=None, response=None, streams=False, inputs=[], outputs=[])


def contract_of(fn: Callable[..., Any], hints: dict[str, Any] | None = None) -> Contract:
    """`hints`: the function's, evaluated where it was written (read now if None)."""
    hints = hints_of(fn) if hints is None else hints
    out = free()
    out["streams"] = inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)
    ret = hints.get("return", inspect.Parameter.empty)
    if typing.get_origin(ret) in _STREAMS:
        out["streams"] = True
        ret = (typing.get_args(ret) or (Any,))[0]
    tensors = {k: v for k, v in hints.items() if k != "return" and isinstance(v, TensorType)}
    if tensors:
        out["inputs"] = [t.meta(name) for name, t in tensors.items()]
        out["outputs"] = tensor_outputs(ret)
        out["request"] = {
            "type": "object",
            "properties": {n: _tensor_schema(t) for n, t in tensors.items()},
            "required": list(tensors),
        }
        return out
    param = payload_param(fn)
    if param is not None and param in hints:
        out["request"] = schema_of(hints[param], "validation")
    if ret is not inspect.Parameter.empty:
        out["response"] = schema_of(ret, "serialization")
    return out


def tensor_outputs(ret: Any) -> list[TensorMeta]:
    """A tensor bee's outputs, as its return hint declares them: one tensor (named
    output0) or a dict of them by name; none declared: []."""
    if isinstance(ret, TensorType):
        return [ret.meta("output0")]
    if isinstance(ret, dict) and ret and all(isinstance(t, TensorType) for t in ret.values()):
        return [t.meta(str(name)) for name, t in ret.items()]
    return []


def _tensor_schema(t: TensorType) -> Schema:
    """A tensor as JSON: nested lists, one level per dimension."""
    leaf: Schema = {"type": "number"}
    if t.datatype == "BOOL":
        leaf = {"type": "boolean"}
    elif t.datatype == "BYTES":
        leaf = {"type": "string"}
    elif t.datatype.startswith(("INT", "UINT")):
        leaf = {"type": "integer"}
    for _ in t.shape:
        leaf = {"type": "array", "items": leaf}
    return leaf


def schema_of(hint: Any, mode: Literal["validation", "serialization"] = "validation") -> Schema | None:
    """The JSON Schema of values of `hint`; None when it promises nothing (Any, or a hint
    that has no JSON form)."""
    if hint in (Any, object, inspect.Parameter.empty) or isinstance(hint, TensorType):
        return None
    try:
        from pydantic import TypeAdapter
    except ImportError:
        found = _plain(hint)
        return found or None
    try:
        schema: Schema = TypeAdapter(hint).json_schema(mode=mode)
    except Exception:  # noqa: BLE001 - one pydantic refuses (typing.TypedDict before 3.12): ours
        return _plain(hint) or None
    return schema or None


def _plain(hint: Any) -> Schema:
    """The schema of the common hints, without pydantic ({}: anything)."""
    simple = {int: "integer", float: "number", str: "string", bool: "boolean", type(None): "null"}
    if hint is None:
        return {"type": "null"}
    if hint in simple:
        return {"type": simple[hint]}
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_plain(a) for a in args]}
    if hint in (list, tuple, set, frozenset) or origin in (list, tuple, set, frozenset, cabc.Sequence):
        item = _plain(args[0]) if args and args[-1] is not Ellipsis else (_plain(args[0]) if args else {})
        return {"type": "array", "items": item} if item else {"type": "array"}
    if hint is dict or origin in (dict, cabc.Mapping):
        value = _plain(args[1]) if len(args) == 2 else {}
        return {"type": "object", "additionalProperties": value} if value else {"type": "object"}
    if dataclasses.is_dataclass(hint) and isinstance(hint, type):
        fields = dataclasses.fields(hint)
        hints = typing.get_type_hints(hint)
        required = [
            f.name
            for f in fields
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        return {
            "type": "object",
            "title": hint.__name__,
            "properties": {f.name: _plain(hints.get(f.name, Any)) for f in fields},
            "required": required,
        }
    if typing.is_typeddict(hint):
        hints = typing.get_type_hints(hint)
        return {
            "type": "object",
            "title": hint.__name__,
            "properties": {k: _plain(v) for k, v in hints.items()},
            "required": sorted(hint.__required_keys__),
        }
    return {}


def coercer(fn: Callable[..., Any], hints: dict[str, Any] | None = None) -> Callable[[Any], Any] | None:
    """What turns a JSON payload into the object the bee's hint asks for (a pydantic
    model, a dataclass); None when the payload is passed as it is."""
    param = payload_param(fn)
    hint = (hints_of(fn) if hints is None else hints).get(param or "", None)
    if not isinstance(hint, type) or hint in (dict, list, str, int, float, bool):
        return None
    is_model = hasattr(hint, "model_validate") and hasattr(hint, "model_json_schema")
    if not (is_model or dataclasses.is_dataclass(hint)):
        return None
    try:
        from pydantic import TypeAdapter, ValidationError
    except ImportError:
        return _dataclass_maker(hint)
    adapter: TypeAdapter[Any] = TypeAdapter(hint)

    def coerce(payload: Any) -> Any:
        try:
            return adapter.validate_python(payload)
        except ValidationError as exc:
            located = [
                Located(pointer=pointer(e["loc"]), message=e["msg"]) for e in exc.errors(include_url=False)
            ]
            raise Unprocessable(located) from None

    return coerce


def _dataclass_maker(cls: type) -> Callable[[Any], Any]:
    def make(payload: Any) -> Any:
        if not isinstance(payload, dict):
            raise Unprocessable([Located(pointer="", message=f"{cls.__name__} wants a JSON object")])
        try:
            return cls(**payload)
        except TypeError as exc:
            raise Unprocessable([Located(pointer="", message=str(exc))]) from None

    return make


def pointer(path: typing.Iterable[Any]) -> str:
    """A JSON pointer (RFC 6901) to a place in a document."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


class Unprocessable(ValueError):
    """The payload is JSON but not what the bee declared: a 422, each reason located."""

    def __init__(self, errors: list[Located]) -> None:
        super().__init__("; ".join(f"{e['pointer'] or '/'}: {e['message']}" for e in errors))
        self.errors = errors
