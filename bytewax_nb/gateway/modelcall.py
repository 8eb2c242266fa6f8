"""A gateway called as a model (the Open Inference Protocol, over HTTP or gRPC).

Every gateway is a model of its name. One whose bee declares tensors takes and gives
tensors: the bee gets numpy arrays by input name, and its arrays come back raw. Any
other takes its usual JSON payload as one BYTES element named `payload` and answers
with the JSON answer as one BYTES element named `answer`, so a client that only speaks
the protocol (tritonclient, a KServe client) can still call it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, Protocol

from ..bus.tensors import TensorEntry, join_bytes, split_bytes
from ..bus.wire import Kind, dump_json, new_request_id
from ..model.spec import GatewaySpec
from ..model.tensors import TensorMeta
from ..model.terms import Contract
from .checks import RequestCheck
from .inference import InferCall, InferError
from .streams import Chunked, StreamError

__all__ = ["PAYLOAD", "ANSWER", "Gateway", "infer", "infer_stream", "model_io"]

PAYLOAD = TensorMeta(name="payload", datatype="BYTES", shape=[1])
ANSWER = TensorMeta(name="answer", datatype="BYTES", shape=[1])
Outputs = tuple[list[TensorEntry], list[Any]]


class Gateway(Protocol):
    """What a model call needs of its gateway."""

    name: str
    spec: GatewaySpec
    contract: Contract
    check: RequestCheck | None
    hub: Any


def model_io(contract: Contract) -> tuple[list[TensorMeta], list[TensorMeta]]:
    """The model's inputs and outputs: the tensor bee's, or the JSON bridge's."""
    if contract["inputs"]:
        return contract["inputs"], contract["outputs"]
    return [PAYLOAD], [ANSWER]


def _bridged(call: InferCall, check: RequestCheck | None) -> bytes:
    """The JSON document a bridged call carries (checked as a POST's body is)."""
    (entry,) = call.inputs
    raw = (
        split_bytes(call.buffers[entry["buffer"]]) if "buffer" in entry else [str(entry["data"][0]).encode()]
    )
    try:
        payload = json.loads(raw[0])
    except (ValueError, RecursionError) as exc:
        raise InferError(f"input 'payload' holds no JSON document: {exc}") from None
    if check is not None:
        located = check.errors(payload)
        if located:
            why = "; ".join(f"{e['pointer'] or '/'}: {e['message']}" for e in located)
            raise InferError(f"the payload does not match the declared schema: {why}")
    return bytes(raw[0])


async def _send(gw: Gateway, call: InferCall, rid: str) -> Any:
    refused = gw.hub.refusal(gw)
    if refused is not None:
        raise InferError(refused[1], refused[0])
    try:
        if gw.contract["inputs"]:
            return await gw.hub.request(gw, rid, dump_json({"inputs": call.inputs}), call.buffers)
        return await gw.hub.request(gw, rid, _bridged(call, gw.check))
    except TimeoutError:
        raise InferError(f"no response within {gw.spec.timeout:g} s", 504) from None


def _failed(reply: bytes, bee: str) -> InferError:
    err = json.loads(reply)
    status = int(err.get("status", 500))
    return InferError(f"{bee}: {err.get('message', 'failed')}", status if 400 <= status < 600 else 500)


async def infer(gw: Gateway, call: InferCall) -> Outputs:
    """One call: the model's outputs (entries and their raw bytes), or InferError."""
    rid = new_request_id()
    answer = await _send(gw, call, rid)
    if isinstance(answer, Chunked):  # a streamed answer asked for whole: its chunks, in order
        chunks = []
        try:
            async for chunk in answer.chunks():
                chunks.append(chunk)
                gw.hub.took(rid, answer)
        except StreamError as exc:
            raise _failed(exc.body, "") from None
        finally:
            gw.hub.finish(rid, answer)
        return _as_outputs(gw, b"[" + b",".join(chunks) + b"]")
    kind, reply, bee, buffers = answer
    if kind != Kind.RESPONSE:
        raise _failed(reply, bee)
    if not gw.contract["inputs"]:
        return _as_outputs(gw, reply)
    try:
        return json.loads(reply)["outputs"], buffers
    except (KeyError, ValueError) as exc:
        raise InferError(f"{bee}: no tensors in its answer ({exc})", 500) from None


async def infer_stream(gw: Gateway, call: InferCall) -> AsyncIterator[Outputs]:
    """One call whose answer may stream: each chunk as outputs (a plain answer: one)."""
    rid = new_request_id()
    answer = await _send(gw, call, rid)
    if not isinstance(answer, Chunked):
        kind, reply, bee, buffers = answer
        if kind != Kind.RESPONSE:
            raise _failed(reply, bee)
        yield (json.loads(reply)["outputs"], buffers) if gw.contract["inputs"] else _as_outputs(gw, reply)
        return
    try:
        async for chunk in answer.chunks():
            gw.hub.took(rid, answer)
            yield _as_outputs(gw, chunk)
    except StreamError as exc:
        raise _failed(exc.body, "") from None
    finally:
        gw.hub.finish(rid, answer)


def _as_outputs(gw: Gateway, body: bytes) -> Outputs:
    """A JSON answer (or chunk) as outputs: the bridge's `answer`, or, for a tensor bee
    whose chunks are JSON values, a tensor of the value's own type."""
    if not gw.contract["inputs"]:
        return [TensorEntry(name="answer", datatype="BYTES", shape=[1], buffer=0)], [join_bytes([body])]
    value = json.loads(body)
    named = value if isinstance(value, dict) else {_first_output(gw.contract): value}
    entries: list[TensorEntry] = []
    buffers: list[Any] = []
    for name, v in named.items():
        datatype, shape, raw = _json_tensor(v)
        entries.append(TensorEntry(name=str(name), datatype=datatype, shape=shape, buffer=len(buffers)))
        buffers.append(raw)
    return entries, buffers


def _first_output(contract: Contract) -> str:
    outputs = contract["outputs"]
    return outputs[0]["name"] if len(outputs) == 1 else "output0"


def _json_tensor(value: Any) -> tuple[str, list[int], bytes]:
    """A JSON value as a raw tensor: its nesting is the shape, its leaves the datatype."""
    import struct

    if not isinstance(value, list):  # a scalar: one element
        value = [value]
    shape: list[int] = []
    probe = value
    while isinstance(probe, list):
        shape.append(len(probe))
        probe = probe[0] if probe else 0
    flat: list[Any] = []
    _flat(value, flat)
    if all(isinstance(x, bool) for x in flat) and flat:
        return "BOOL", shape, bytes(bool(x) for x in flat)
    if all(isinstance(x, int) and not isinstance(x, bool) for x in flat):
        return "INT64", shape, struct.pack(f"<{len(flat)}q", *flat)
    if all(isinstance(x, int | float) and not isinstance(x, bool) for x in flat):
        return "FP64", shape, struct.pack(f"<{len(flat)}d", *flat)
    return "BYTES", shape, join_bytes([x if isinstance(x, str) else json.dumps(x) for x in flat])


def _flat(value: Any, out: list[Any]) -> None:
    if isinstance(value, list):
        for v in value:
            _flat(v, out)
    else:
        out.append(value)
