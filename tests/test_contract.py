"""What a bee promises, read from its hints (pure logic: no process, no socket), and
the protocol's tensors checked and rendered as the hub does it."""

from __future__ import annotations

import dataclasses
import json
import re
import struct
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal, TypedDict

import numpy as np
import pytest
from pydantic import BaseModel

from bytewax_nb.bus.tensors import TensorEntry, join_bytes
from bytewax_nb.gateway.inference import InferCall, InferError, as_list, parse, render
from bytewax_nb.model import contract
from bytewax_nb.model.contract import Unprocessable, coercer, contract_of, pointer, schema_of
from bytewax_nb.model.promises import gateway_contract
from bytewax_nb.model.spec import BeeSpec, GatewaySpec, Topology
from bytewax_nb.model.tensors import Tensor, TensorMeta


class Prompt(BaseModel):
    text: str
    n: int = 1


@dataclasses.dataclass
class Point:
    x: float
    y: float = 0.0


class Row(TypedDict):
    name: str
    tags: list[str]


def test_a_pydantic_model_a_dataclass_and_a_typeddict_give_schemas_and_streams_are_seen() -> None:
    def typed(p: Prompt) -> list[str]:
        return [p.text]

    def gen(p: Point) -> Iterator[Row]:
        yield Row(name="a", tags=[])

    async def agen(x: int, ctx: Any) -> AsyncIterator[str]:
        yield "a"

    def untyped(p):  # type: ignore[no-untyped-def]
        return p

    c = contract_of(typed)
    assert c["request"] is not None and c["request"]["required"] == ["text"]
    assert c["response"] == {"items": {"type": "string"}, "type": "array"} and not c["streams"]
    g = contract_of(gen)
    assert g["streams"] and g["request"] is not None and set(g["request"]["properties"]) == {"x", "y"}
    assert g["response"] is not None and g["response"]["required"] == ["name", "tags"]
    a = contract_of(agen)
    assert a["streams"] and a["request"] == {"type": "integer"} and a["response"] == {"type": "string"}
    assert contract_of(untyped) == contract.free()
    assert contract_of(lambda p: p)["request"] is None


def test_without_pydantic_the_common_hints_still_give_schemas(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pydantic", None)  # import pydantic now fails
    assert schema_of(Point) == {
        "type": "object",
        "title": "Point",
        "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
        "required": ["x"],
    }
    assert schema_of(Row) == {
        "type": "object",
        "title": "Row",
        "properties": {"name": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}}},
        "required": ["name", "tags"],
    }
    assert schema_of(dict[str, int | None]) == {
        "type": "object",
        "additionalProperties": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
    }
    assert schema_of(Literal["a", "b"]) == {"enum": ["a", "b"]}
    assert schema_of(Any) is None
    make = coercer(lambda p: p)
    assert make is None

    def bee(p: Point) -> float:
        return p.x

    to_point = coercer(bee)
    assert to_point is not None and to_point({"x": 1.0}) == Point(1.0)
    with pytest.raises(Unprocessable):
        to_point({"z": 1})


def test_a_pydantic_payload_is_made_the_model_and_its_errors_are_located() -> None:
    def bee(p: Prompt) -> str:
        return p.text

    make = coercer(bee)
    assert make is not None and make({"text": "hi"}) == Prompt(text="hi")
    with pytest.raises(Unprocessable) as err:
        make({"text": 1, "n": "many"})
    assert sorted(e["pointer"] for e in err.value.errors) == ["/n", "/text"]
    assert pointer(["a/b", "~", 0]) == "/a~1b/~0/0"


def test_tensor_parameters_make_a_model_with_named_inputs_and_outputs() -> None:
    def model(x: Tensor[np.float32, -1, 4], mask: Tensor[np.bool_, -1]) -> dict[str, Any]:  # type: ignore[valid-type]
        return {}

    model.__annotations__["return"] = {"label": Tensor[np.int64, -1], "score": Tensor["FP32", -1]}
    c = contract_of(model)
    assert c["inputs"] == [
        {"name": "x", "datatype": "FP32", "shape": [-1, 4]},
        {"name": "mask", "datatype": "BOOL", "shape": [-1]},
    ]
    assert [o["name"] for o in c["outputs"]] == ["label", "score"]
    assert c["request"] is not None and c["request"]["required"] == ["x", "mask"]
    with pytest.raises(TypeError, match="unknown tensor datatype"):
        Tensor["FLOAT", 3]


def test_a_gateway_promises_what_all_its_bees_take_and_any_of_its_ends_answers() -> None:
    def first(p: Prompt) -> str:
        return p.text

    def also(p: dict[str, Any]) -> None:
        return None

    def shout(text: str) -> str:
        return text.upper()

    def words(text: str) -> Iterator[str]:
        yield from text.split()

    topology = Topology()
    topology.add_gateway(GatewaySpec("in"))
    topology.add_bee(BeeSpec("first", first, ("in",)))
    topology.add_bee(BeeSpec("also", also, ("in",)))
    topology.add_bee(BeeSpec("shout", shout, ("first",)))
    topology.add_bee(BeeSpec("words", words, ("first",)))
    promise = gateway_contract(topology, "in")
    request = promise["request"]
    assert request is not None and len(request["allOf"]) == 2
    assert promise["streams"] and promise["response"] == {"type": "string"}  # `also` never answers
    topology.bees.pop("also")
    topology.add_bee(BeeSpec("count", lambda text: len(text), ("first",)))
    promise = gateway_contract(topology, "in")
    assert promise["request"] is not None and promise["request"]["title"] == "Prompt"
    assert promise["response"] is None  # an end that promises nothing: any JSON


def _binary(head: dict[str, Any], *blobs: bytes) -> tuple[bytes, str]:
    text = json.dumps(head).encode()
    return text + b"".join(blobs), str(len(text))


DECLARED = [
    TensorMeta(name="x", datatype="FP32", shape=[-1, 2]),
    TensorMeta(name="s", datatype="BYTES", shape=[-1]),
]


def test_infer_requests_are_checked_against_the_declared_tensors() -> None:
    x = {"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2], [3, 4]]}
    s = {"name": "s", "datatype": "BYTES", "shape": [1], "data": ["hi"]}
    call = parse(json.dumps({"id": "1", "inputs": [x, s]}).encode(), None, DECLARED)
    assert call.id == "1" and call.inputs[0]["data"] == [1, 2, 3, 4]
    body, length = _binary(
        {
            "inputs": [
                {"name": "x", "datatype": "FP32", "shape": [1, 2], "parameters": {"binary_data_size": 8}},
                {"name": "s", "datatype": "BYTES", "shape": [2], "parameters": {"binary_data_size": 13}},
            ],
            "parameters": {"binary_data_output": True},
        },
        struct.pack("<2f", 1, 2),
        join_bytes([b"ab", b"cde"]),
    )
    call = parse(body, length, DECLARED)
    assert call.binary and [bytes(b) for b in call.buffers] == [
        struct.pack("<2f", 1, 2),
        join_bytes([b"ab", b"cde"]),
    ]
    bad = {
        "unknown input 'y'": {"inputs": [{**x, "name": "y"}, s]},
        "missing input(s) ['s']": {"inputs": [x]},
        "unknown datatype 'FLOAT'": {"inputs": [{**x, "datatype": "FLOAT"}, s]},
        "is FP64; the model takes FP32": {"inputs": [{**x, "datatype": "FP64"}, s]},
        "has 3 elements; shape [2, 2] holds 4": {"inputs": [{**x, "data": [1, 2, 3]}, s]},
        "has shape [2, 3]": {"inputs": [{**x, "shape": [2, 3], "data": [0] * 6}, s]},
        "not a FP32 value": {"inputs": [{**x, "data": [1, 2, 3, "x"]}, s]},
        "given twice": {"inputs": [x, x, s]},
    }
    for why, head in bad.items():
        with pytest.raises(InferError, match=re.escape(why)):
            parse(json.dumps(head).encode(), None, DECLARED)
    with pytest.raises(InferError, match="does not fit"):
        parse(b"{}", "99", DECLARED)
    with pytest.raises(InferError, match="8 bytes, but FP32"):
        body, length = _binary({"inputs": [{**x, "parameters": {"binary_data_size": 8}}, s]}, b"\0" * 8)
        del x["data"]
        parse(body, length, DECLARED)


def test_outputs_render_as_json_or_binary_as_asked() -> None:
    outputs = [
        TensorEntry(name="y", datatype="FP32", shape=[2], buffer=0),
        TensorEntry(name="t", datatype="BYTES", shape=[1], buffer=1),
    ]
    buffers = [struct.pack("<2f", 0.5, 2.0), join_bytes(["ok"])]
    body, headers = render("m", InferCall("7", [], []), outputs, buffers)
    assert headers["Content-Type"] == "application/json"
    said = json.loads(body)
    assert said["id"] == "7" and [o["data"] for o in said["outputs"]] == [[0.5, 2.0], ["ok"]]
    call = InferCall(None, [], [], wanted=[("y", True)])
    body, headers = render("m", call, outputs, buffers)
    head = json.loads(body[: int(headers["Inference-Header-Content-Length"])])
    assert [o["name"] for o in head["outputs"]] == ["y"] and body.endswith(buffers[0])
    assert as_list("FP16", struct.pack("<2e", 1.5, -2.0)) == [1.5, -2.0]
    with pytest.raises(InferError, match="unknown output"):
        render("m", InferCall(None, [], [], wanted=[("z", None)]), outputs, buffers)
    infinite = [struct.pack("<2f", float("inf"), 1.0), buffers[1]]
    with pytest.raises(InferError, match="NaN or Infinity") as err:
        render("m", InferCall(None, [], []), outputs, infinite)  # as JSON: cannot be said
    assert err.value.status == 500
    assert render("m", InferCall(None, [], [], binary=True), outputs, infinite)[0].endswith(infinite[1])
