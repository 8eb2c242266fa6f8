"""Tensors between the hub and a tensor bee, on the replica's side (numpy, imported by
whoever calls these: only a process that runs a tensor bee pays for it).

The hub sends a tensor request as JSON that describes each input (`name`, `datatype`,
`shape`, and either `data`, a flat list, or `buffer`, the index of a raw frame), the raw
frames alongside: the bytes a caller sent travel untouched, and the bee's arrays are
views of them. The answer goes back the same way, every output as a raw frame.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any, TypedDict

from ..model.tensors import DATATYPES, TensorMeta

__all__ = ["TensorEntry", "decode", "encode", "join_bytes", "split_bytes"]


class TensorEntry(TypedDict, total=False):
    """One tensor as the hub and a tensor bee describe it to each other."""

    name: str
    datatype: str
    shape: list[int]
    data: list[Any]  # a flat row-major list (JSON), or
    buffer: int  # the index of its raw little-endian bytes among the message's frames


_TO_OIP = {np_name: oip for oip, (np_name, _) in DATATYPES.items() if oip != "BYTES"}


def split_bytes(raw: Any) -> list[bytes]:
    """A BYTES tensor's elements: each a 4-byte little-endian length, then the bytes."""
    view, out, at = memoryview(raw).cast("B"), [], 0
    while at < len(view):
        (n,) = struct.unpack_from("<I", view, at)
        out.append(bytes(view[at + 4 : at + 4 + n]))
        at += 4 + n
    return out


def join_bytes(items: Sequence[Any]) -> bytes:
    parts = []
    for item in items:
        b = item.encode() if isinstance(item, str) else bytes(item)
        parts += [struct.pack("<I", len(b)), b]
    return b"".join(parts)


def decode(inputs: Sequence[TensorEntry], buffers: Sequence[Any]) -> dict[str, Any]:
    """The hub's tensors as numpy arrays, by name (raw ones are read-only views)."""
    import numpy as np

    out: dict[str, Any] = {}
    for t in inputs:
        datatype, shape = t["datatype"], t["shape"]
        if datatype == "BYTES":
            items = split_bytes(buffers[t["buffer"]]) if "buffer" in t else [_as_bytes(x) for x in t["data"]]
            arr = np.empty(len(items), dtype=object)
            arr[:] = items
            out[t["name"]] = arr.reshape(shape)
        elif "buffer" in t:
            dtype = np.dtype(DATATYPES[datatype][0]).newbyteorder("<")
            out[t["name"]] = np.frombuffer(buffers[t["buffer"]], dtype=dtype).reshape(shape)
        else:
            out[t["name"]] = np.asarray(t["data"], dtype=DATATYPES[datatype][0]).reshape(shape)
    return out


def _as_bytes(x: Any) -> bytes:
    return x.encode() if isinstance(x, str) else bytes(x)


def encode(result: Any, outputs: Sequence[TensorMeta]) -> tuple[list[TensorEntry], list[Any]]:
    """A tensor bee's result (an array, or a dict of them by output name; anything numpy
    can make an array of) as raw tensors for the hub."""
    import numpy as np

    if isinstance(result, Mapping):
        named = list(result.items())
    else:
        named = [(outputs[0]["name"] if len(outputs) == 1 else "output0", result)]
    declared = {o["name"]: o["datatype"] for o in outputs}
    entries: list[TensorEntry] = []
    buffers: list[Any] = []
    for name, value in named:
        arr = np.asarray(value)
        want = declared.get(str(name))
        if arr.dtype == object or arr.dtype.kind in "SU" or want == "BYTES":
            raw: Any = join_bytes([x if isinstance(x, bytes | str) else str(x) for x in arr.ravel()])
            datatype = "BYTES"
        else:
            if want is not None and _TO_OIP.get(arr.dtype.name) != want:
                arr = arr.astype(DATATYPES[want][0])
            found = _TO_OIP.get(arr.dtype.name)
            if found is None:
                raise TypeError(
                    f"output {name!r}: numpy dtype {arr.dtype} has no Open Inference Protocol datatype"
                )
            datatype = found
            arr = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("<"))
            raw = arr.data.cast("B") if arr.size else b""
        entries.append(
            TensorEntry(name=str(name), datatype=datatype, shape=list(arr.shape), buffer=len(buffers))
        )
        buffers.append(raw)
    return entries, buffers
