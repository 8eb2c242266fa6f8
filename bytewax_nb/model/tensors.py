"""Tensors as the Open Inference Protocol (v2) names them: a datatype, a shape and
row-major data. A bee declares its tensors in its signature (`x: Tensor["FP32", -1, 4]`),
so the same declaration types its code, names its model's inputs and outputs, and is
what a gateway checks a caller's tensors against. No numpy here: the hub never needs it.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

__all__ = ["DATATYPES", "Tensor", "TensorMeta", "TensorType", "arguments", "fits", "nbytes"]

# OIP datatype -> (numpy dtype name, struct format of one element); BYTES has no fixed size
DATATYPES: dict[str, tuple[str, str]] = {
    "BOOL": ("bool", "?"),
    "UINT8": ("uint8", "B"),
    "UINT16": ("uint16", "H"),
    "UINT32": ("uint32", "I"),
    "UINT64": ("uint64", "Q"),
    "INT8": ("int8", "b"),
    "INT16": ("int16", "h"),
    "INT32": ("int32", "i"),
    "INT64": ("int64", "q"),
    "FP16": ("float16", "e"),
    "FP32": ("float32", "f"),
    "FP64": ("float64", "d"),
    "BYTES": ("object", ""),
}
_SIZES = {name: struct.calcsize(fmt) if fmt else 0 for name, (_, fmt) in DATATYPES.items()}


class TensorMeta(TypedDict):
    """One input or output as the protocol's model metadata lists it (-1: any size)."""

    name: str
    datatype: str
    shape: list[int]


@dataclass(frozen=True)
class TensorType:
    """A declared tensor: its datatype and shape (-1 where any size goes)."""

    datatype: str
    shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.datatype not in DATATYPES:
            known = ", ".join(DATATYPES)
            raise TypeError(f"unknown tensor datatype {self.datatype!r}; one of {known}")
        if any(not isinstance(d, int) or d < -1 for d in self.shape):
            raise TypeError(f"a tensor's shape is sizes >= 0, or -1 for any: {list(self.shape)}")

    def meta(self, name: str) -> TensorMeta:
        return TensorMeta(name=name, datatype=self.datatype, shape=list(self.shape))

    @property
    def dtype(self) -> str:
        """Its numpy dtype's name."""
        return DATATYPES[self.datatype][0]


_PYTHON = {bool: "BOOL", int: "INT64", float: "FP64", bytes: "BYTES", str: "BYTES"}


class Tensor:
    """`Tensor[np.float32, -1, 4]` (or `Tensor["FP32", -1, 4]`, the protocol's name): a
    bee's parameter (or result) is an array of that datatype and shape, -1 where any size
    goes. A bee whose parameters are tensors is called with numpy arrays by name and is
    served as a model by the Open Inference Protocol routes (`/v2/models/...`)."""

    def __class_getitem__(cls, item: Any) -> TensorType:
        items = item if isinstance(item, tuple) else (item,)
        datatype = _datatype(items[0]) if items else None
        if datatype is None:
            raise TypeError('write Tensor[np.float32, -1, 4] (or "FP32"): a datatype, then the sizes')
        return TensorType(datatype, tuple(items[1:]))


def _datatype(given: Any) -> str | None:
    """The protocol's datatype of a name ("FP32"), a numpy type or dtype, or a Python type."""
    if isinstance(given, str):
        return given
    if given in _PYTHON:
        return _PYTHON[given]
    name = getattr(given, "name", None) or getattr(given, "__name__", None)  # a dtype, or a numpy type
    by_numpy = {np_name: oip for oip, (np_name, _) in DATATYPES.items() if oip != "BYTES"}
    return by_numpy.get(str(name)) if name else None


def nbytes(datatype: str, shape: list[int]) -> int | None:
    """Bytes of a tensor's raw data (None for BYTES, whose elements vary)."""
    size = _SIZES[datatype]
    return size * math.prod(shape) if size else None


def fits(declared: TensorMeta, shape: list[int]) -> bool:
    """A caller's shape matches the declaration (-1 takes any size)."""
    want = declared["shape"]
    return len(want) == len(shape) and all(w in (-1, s) for w, s in zip(want, shape, strict=True))


def arguments(payload: Any, declared: Mapping[str, TensorType]) -> dict[str, Any]:
    """A tensor bee's keyword arguments from a payload: arrays (from the hub's tensor
    request, checked there) pass as they are; lists (a plain JSON request) become arrays
    of the declared datatype, and must have the declared shape (BadRequest, a 400)."""
    import numpy as np

    from .errors import BadRequest

    if not isinstance(payload, Mapping):
        raise BadRequest(f"a tensor bee takes a JSON object of its inputs: {sorted(declared)}")
    missing = [n for n in declared if n not in payload]
    if missing:
        raise BadRequest(f"missing input(s) {missing}; the inputs are {list(declared)}")
    out = {}
    for name, want in declared.items():
        value = payload[name]
        if isinstance(value, np.ndarray):
            out[name] = value
            continue
        try:
            if want.datatype == "BYTES":
                shaped = np.asarray(value, dtype=object)
                items = [x.encode() if isinstance(x, str) else bytes(x) for x in np.ravel(shaped)]
                flat = np.empty(len(items), dtype=object)
                flat[:] = items
                arr: Any = flat.reshape(shaped.shape)
            else:
                arr = np.asarray(value, dtype=want.dtype)
        except (TypeError, ValueError, OverflowError) as exc:
            raise BadRequest(f"input {name!r} is not a {want.datatype} tensor: {exc}") from None
        if not fits(want.meta(name), list(arr.shape)):
            raise BadRequest(f"input {name!r} has shape {list(arr.shape)}; the bee takes {list(want.shape)}")
        out[name] = arr
    return out
