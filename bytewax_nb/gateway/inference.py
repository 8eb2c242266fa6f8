"""The Open Inference Protocol (v2) as the hub speaks it, without numpy: a caller's infer
request (JSON tensors, or the binary-data extension) checked against the model's
declared inputs and turned into the tensor message a bee gets, and the bee's raw
outputs turned into the protocol's answer. Shared by the HTTP routes and gRPC.

A bad tensor (unknown input or datatype, a shape its data does not fill, a missing
input) is the caller's mistake: `InferError`, a 400 with the protocol's `{"error": ...}`,
and no bee is called.
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

from ..bus.tensors import TensorEntry
from ..model import strictjson
from ..model.tensors import DATATYPES, TensorMeta, fits, nbytes
from ..model.version import VERSION

__all__ = ["InferCall", "InferError", "from_tensors", "metadata", "parse", "render", "server_metadata"]

HEADER_LENGTH = "Inference-Header-Content-Length"
_INT_BOUNDS = {
    name: (
        (-(1 << (8 * struct.calcsize(fmt) - 1)), (1 << (8 * struct.calcsize(fmt) - 1)) - 1)
        if name.startswith("INT")
        else (0, (1 << (8 * struct.calcsize(fmt))) - 1)
    )
    for name, (_, fmt) in DATATYPES.items()
    if name.startswith(("INT", "UINT"))
}


class InferError(Exception):
    """The caller's request is not what the model takes (400), or the model is not
    there (404)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class InferCall:
    """A checked infer request: the inputs as the bee gets them, and what to answer."""

    id: str | None
    inputs: list[TensorEntry]
    buffers: list[Any]
    wanted: list[tuple[str, bool | None]] | None = (
        None  # outputs asked for, each binary or not (None: default)
    )
    binary: bool = False  # the request's binary_data_output: outputs binary unless told otherwise
    parameters: dict[str, Any] = field(default_factory=dict)


def server_metadata() -> dict[str, Any]:
    return {"name": "bytewax-nb", "version": VERSION, "extensions": ["binary_tensor_data"]}


def metadata(model: str, inputs: list[TensorMeta], outputs: list[TensorMeta]) -> dict[str, Any]:
    return {"name": model, "versions": ["1"], "platform": "bytewax-nb", "inputs": inputs, "outputs": outputs}


def parse(body: bytes, header_length: str | None, declared: list[TensorMeta]) -> InferCall:
    """An HTTP infer request's body (`header_length`: its Inference-Header-Content-Length
    header: the JSON part's size, binary tensors after it; None: all JSON)."""
    size = len(body)
    if header_length is not None:
        try:
            size = int(header_length)
        except ValueError:
            raise InferError(f"{HEADER_LENGTH} is not a number: {header_length!r}") from None
        if size == 0:
            raise InferError("raw binary requests (Inference-Header-Content-Length: 0) are not supported")
        if not 0 < size <= len(body):
            raise InferError(f"{HEADER_LENGTH} {size} does not fit a body of {len(body)} bytes")
    try:
        head = strictjson.loads(body[:size])
    except (ValueError, RecursionError) as exc:
        raise InferError(f"invalid JSON: {exc}") from None
    return check(head, memoryview(body)[size:], declared)


def check(head: Any, rest: memoryview, declared: list[TensorMeta]) -> InferCall:
    """The request's JSON (its binary tensors in `rest`, in order) against the model."""
    if not isinstance(head, dict) or not isinstance(head.get("inputs"), list) or not head["inputs"]:
        raise InferError("an infer request is a JSON object with a non-empty list of inputs")
    known = {t["name"]: t for t in declared}
    inputs: list[TensorEntry] = []
    buffers: list[Any] = []
    at = 0
    for i, t in enumerate(head["inputs"]):
        entry, raw = _input(t, i, known, rest, at)
        if any(e["name"] == entry["name"] for e in inputs):
            raise InferError(f"input {entry['name']!r} is given twice")
        if raw is not None:
            entry["buffer"] = len(buffers)
            buffers.append(raw)
            at += len(raw)
        inputs.append(entry)
    if at != len(rest):
        raise InferError(f"{len(rest) - at} bytes of binary data belong to no input")
    missing = [n for n in known if not any(e["name"] == n for e in inputs)]
    if missing:
        raise InferError(f"missing input(s) {missing}; the model takes {list(known)}")
    params = head.get("parameters") or {}
    if not isinstance(params, dict):
        raise InferError("parameters must be a JSON object")
    rid = head.get("id")
    call = InferCall(str(rid) if rid is not None else None, inputs, buffers, parameters=params)
    call.binary = params.get("binary_data_output") is True
    if head.get("outputs") is not None:
        call.wanted = _wanted(head["outputs"])
    return call


def _input(
    t: Any, i: int, known: dict[str, TensorMeta], rest: memoryview, at: int
) -> tuple[TensorEntry, memoryview | None]:
    if not isinstance(t, dict) or not isinstance(t.get("name"), str):
        raise InferError(f"input {i} is not an object with a name")
    name = t["name"]
    want = known.get(name)
    if want is None:
        raise InferError(f"unknown input {name!r}; the model takes {list(known)}")
    datatype, shape = t.get("datatype"), t.get("shape")
    if datatype not in DATATYPES:
        raise InferError(f"input {name!r}: unknown datatype {datatype!r}")
    if datatype != want["datatype"]:
        raise InferError(f"input {name!r} is {datatype}; the model takes {want['datatype']}")
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise InferError(f"input {name!r}: shape must be a list of sizes >= 0, not {shape!r}")
    if not fits(want, shape):
        raise InferError(f"input {name!r} has shape {shape}; the model takes {want['shape']} (-1: any size)")
    count = math.prod(shape)
    entry = TensorEntry(name=name, datatype=datatype, shape=shape)
    params = t.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None:
        if not isinstance(size, int) or size < 0 or at + size > len(rest):
            raise InferError(f"input {name!r}: binary_data_size {size!r} runs past the body")
        raw = rest[at : at + size]
        expected = nbytes(datatype, shape)
        if expected is not None and size != expected:
            raise InferError(f"input {name!r}: {size} bytes, but {datatype} {shape} takes {expected}")
        if expected is None and _count_bytes(raw, name) != count:
            raise InferError(f"input {name!r}: the BYTES data does not hold {count} elements")
        return entry, raw
    if "data" not in t:
        raise InferError(f"input {name!r} has neither data nor binary_data_size")
    flat: list[Any] = []
    _flatten(t["data"], flat, name)
    if len(flat) != count:
        raise InferError(f"input {name!r} has {len(flat)} elements; shape {shape} holds {count}")
    _check_elements(flat, datatype, name)
    entry["data"] = flat
    return entry, None


def _flatten(data: Any, out: list[Any], name: str, depth: int = 0) -> None:
    if depth > 32:
        raise InferError(f"input {name!r}: data nested too deeply")
    if not isinstance(data, list):
        out.append(data)
        return
    for x in data:
        if isinstance(x, list):
            _flatten(x, out, name, depth + 1)
        else:
            out.append(x)


def _check_elements(flat: list[Any], datatype: str, name: str) -> None:
    if datatype == "BOOL":
        ok = all(isinstance(x, bool) for x in flat)
    elif datatype == "BYTES":
        ok = all(isinstance(x, str) for x in flat)
    elif datatype in _INT_BOUNDS:
        low, high = _INT_BOUNDS[datatype]
        ok = all(isinstance(x, int) and not isinstance(x, bool) and low <= x <= high for x in flat)
    else:
        ok = all(isinstance(x, int | float) and not isinstance(x, bool) for x in flat)
    if not ok:
        raise InferError(f"input {name!r}: an element is not a {datatype} value")


def _count_bytes(raw: memoryview, name: str) -> int:
    at, n = 0, 0
    while at < len(raw):
        if at + 4 > len(raw):
            raise InferError(f"input {name!r}: BYTES data cut short")
        (size,) = struct.unpack_from("<I", raw, at)
        at += 4 + size
        n += 1
    if at != len(raw):
        raise InferError(f"input {name!r}: BYTES data cut short")
    return n


def _wanted(outputs: Any) -> list[tuple[str, bool | None]]:
    if not isinstance(outputs, list):
        raise InferError("outputs must be a list")
    wanted = []
    for o in outputs:
        if not isinstance(o, dict) or not isinstance(o.get("name"), str):
            raise InferError("each requested output is an object with a name")
        params = o.get("parameters") or {}
        binary = params.get("binary_data") if isinstance(params, dict) else None
        wanted.append((o["name"], binary if isinstance(binary, bool) else None))
    return wanted


def as_list(datatype: str, raw: Any) -> list[Any]:
    """A raw little-endian tensor's elements as JSON values."""
    view = memoryview(raw).cast("B")
    if datatype == "BYTES":
        from ..bus.tensors import split_bytes

        return [b.decode("utf-8", "replace") for b in split_bytes(view)]
    fmt = DATATYPES[datatype][1]
    if fmt == "e":  # no memoryview form: struct reads half floats
        return list(struct.unpack(f"<{len(view) // 2}e", view))
    values: list[Any] = view.cast(fmt).tolist()  # type: ignore[call-overload]
    return values


def from_tensors(
    outputs: list[TensorEntry], buffers: list[Any], wanted: list[str] | None
) -> list[tuple[TensorEntry, Any]]:
    """The bee's outputs with their raw bytes, those asked for, in the order asked."""
    made = {o["name"]: (o, buffers[o["buffer"]]) for o in outputs}
    if wanted is None:
        return list(made.values())
    missing = [n for n in wanted if n not in made]
    if missing:
        raise InferError(f"unknown output(s) {missing}; the model made {list(made)}")
    return [made[n] for n in wanted]


def render(
    model: str, call: InferCall, outputs: list[TensorEntry], buffers: list[Any]
) -> tuple[bytes, dict[str, str]]:
    """The HTTP answer: JSON, or (some output binary) the JSON header then the raw tensors."""
    binary_of = dict(call.wanted or [])
    chosen = from_tensors(outputs, buffers, [n for n, _ in call.wanted] if call.wanted else None)
    said: list[dict[str, Any]] = []
    blobs: list[Any] = []
    for entry, raw in chosen:
        out: dict[str, Any] = {"name": entry["name"], "datatype": entry["datatype"], "shape": entry["shape"]}
        binary = binary_of.get(entry["name"])
        if binary if binary is not None else call.binary:
            view = memoryview(raw).cast("B")
            out["parameters"] = {"binary_data_size": len(view)}
            blobs.append(view)
        else:
            out["data"] = as_list(entry["datatype"], raw)
        said.append(out)
    body: dict[str, Any] = {"model_name": model, "model_version": "1", "outputs": said}
    if call.id is not None:
        body["id"] = call.id
    try:
        head = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    except ValueError:
        raise InferError(
            "an output holds NaN or Infinity, which JSON cannot carry: ask for it as binary data", 500
        ) from None
    if not blobs:
        return head, {"Content-Type": "application/json"}
    return b"".join([head, *blobs]), {
        "Content-Type": "application/octet-stream",
        HEADER_LENGTH: str(len(head)),
    }
