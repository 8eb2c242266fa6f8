"""A gateway's contract as an OpenAPI 3.1 document (`GET /openapi.json`): its route with
the request and answer schemas its bees' hints promise, every status it can answer with
and the error body of each, health, metrics, and the
Open Inference Protocol v2 routes. Built from the contract the supervisor sends, so the
document follows a bee that is changed while the swarm runs."""

from __future__ import annotations

from typing import Any

from ..model.protocol import Contract
from ..model.spec import GatewaySpec
from ..model.version import VERSION

__all__ = ["document"]

Schema = dict[str, Any]
_JSON = "application/json"
_ERROR: Schema = {
    "type": "object",
    "required": ["error", "request_id"],
    "properties": {
        "error": {"type": "string", "description": "what went wrong, in words"},
        "request_id": {"type": ["string", "null"]},
        "bee": {"type": "string", "description": "the bee that raised, when one did"},
        "type": {
            "type": "string",
            "description": "its exception's type, or BadRequest, BeeTimeout, ReplicaDied",
        },
        "traceback": {"type": "string", "description": "only for the swarm's owner, or with tracebacks=True"},
        "errors": {
            "type": "array",
            "description": "a 422's reasons, each located in the payload by a JSON pointer (RFC 6901)",
            "items": {
                "type": "object",
                "required": ["pointer", "message"],
                "properties": {"pointer": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}
_HEALTH: Schema = {
    "type": "object",
    "required": ["ready", "serving", "not_ready", "why"],
    "properties": {
        "ready": {"type": "boolean"},
        "serving": {"type": "boolean"},
        "not_ready": {"type": "array", "items": {"type": "string"}},
        "why": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}
_TENSOR: Schema = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "parameters": {"type": "object"},
        "data": {"description": "row-major, flat or nested"},
    },
}
_META_TENSOR: Schema = {
    "type": "object",
    "required": ["name", "datatype", "shape"],
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
    },
}
_V2_ERROR: Schema = {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _errors(*codes: int) -> dict[str, Any]:
    words = {
        400: "invalid JSON, or the bee raised BadRequest",
        401: "missing or bad bearer token",
        408: "the body did not arrive in time",
        413: "the body is larger than the gateway's limit",
        422: "the payload does not match the declared schema",
        500: "a bee raised, its answer is not JSON, or its replica died",
        503: "not ready, stopping, or too busy (Retry-After)",
        504: "no answer within the gateway's timeout",
    }
    return {
        str(c): {"description": words[c], "content": {"application/json": {"schema": _ref("Error")}}}
        for c in codes
    }


def document(spec: GatewaySpec, contract: Contract) -> dict[str, Any]:
    """The OpenAPI 3.1 document of one gateway (a model too: the v2 routes)."""
    name = spec.name
    secured = spec.token is not None
    security: list[dict[str, list[str]]] = [{"bearer": []}] if secured else []
    request = contract["request"] or {}
    answer = contract["response"] or {}
    if contract["streams"]:
        answer = {"type": "array", "items": answer, "description": "the stream's chunks, once it has ended"}
    ok: dict[str, Any] = {"application/json": {"schema": answer}}
    if contract["streams"]:
        ok["text/event-stream"] = {
            "schema": {
                "type": "string",
                "description": "`data:` per chunk, then `event: end`, or `event: error`",
            }
        }
        ok["application/x-ndjson"] = {
            "schema": {
                "type": "string",
                "description": '{"chunk": ...} per line, then {"end": true, "chunks": n}',
            }
        }
    codes = [
        400,
        *([401] if secured else []),
        408,
        413,
        *([422] if contract["request"] else []),
        500,
        503,
        504,
    ]
    post = {
        "operationId": f"call_{name}",
        "summary": f"Send a payload to gateway {name!r} and get its answer",
        "parameters": [
            {
                "name": "mode",
                "in": "query",
                "required": False,
                "description": "submit: answer 202 at once, the request kept in the hub's journal",
                "schema": {"type": "string", "enum": ["submit"]},
            }
        ],
        "requestBody": {"required": True, "content": {"application/json": {"schema": request}}},
        "responses": {
            "200": {"description": "the answer", "content": ok},
            "202": {
                "description": "accepted (mode=submit)",
                "content": {"application/json": {"schema": _ref("Submitted")}},
            },
            **_errors(*codes),
        },
        "security": security,
    }
    get = {
        "operationId": f"get_{name}",
        "summary": "The same call with the payload in the query: what a browser's EventSource can send",
        "parameters": [
            {
                "name": "payload",
                "in": "query",
                "required": True,
                "description": "the payload, as JSON text",
                "schema": {"type": "string"},
            }
        ],
        "responses": {
            "200": {"description": "the answer", "content": ok},
            "405": {
                "description": "no payload in the query: a GET needs ?payload=",
                "content": {"application/json": {"schema": _ref("Error")}},
            },
            **_errors(*[c for c in codes if c not in (408, 413)]),
        },
        "security": security,
    }
    health = {
        "summary": "Every wanted replica is ready (open without a token)",
        "responses": {
            "200": {"description": "ready", "content": {"application/json": {"schema": _ref("Health")}}},
            "503": {"description": "not ready", "content": {"application/json": {"schema": _ref("Health")}}},
        },
        "security": [],
    }
    metrics = {
        "summary": "Prometheus text: this gateway's counters and its bees'",
        "responses": {
            "200": {"description": "metrics", "content": {"text/plain": {"schema": {"type": "string"}}}},
            **_errors(*([401] if secured else [])),
        },
        "security": security,
    }
    paths: dict[str, Any] = {
        f"/gateways/{name}": {"post": post, "get": get},
        "/healthz": {"get": health},
        "/metrics": {"get": metrics},
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {
                    "200": {"description": "OpenAPI 3.1", "content": {"application/json": {"schema": {}}}}
                },
                "security": [],
            }
        },
    }
    paths.update(_v2_paths(name, security))
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": f"bytewax-nb gateway {name}",
            "version": VERSION,
            "description": f"Gateway {name!r} of a bytewax-nb swarm. Errors share one body (Error).",
        },
        "paths": paths,
        "components": {
            "schemas": {
                "Error": _ERROR,
                "Health": _HEALTH,
                "Submitted": {
                    "type": "object",
                    "required": ["request_id"],
                    "properties": {"request_id": {"type": "string"}},
                },
                **_V2_SCHEMAS,
            },
            **({"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}} if secured else {}),
        },
    }
    return doc


_V2_SCHEMAS: dict[str, Schema] = {
    "V2Error": _V2_ERROR,
    "V2ModelMetadata": {
        "type": "object",
        "required": ["name", "platform", "inputs", "outputs"],
        "properties": {
            "name": {"type": "string"},
            "versions": {"type": "array", "items": {"type": "string"}},
            "platform": {"type": "string"},
            "inputs": {"type": "array", "items": _META_TENSOR},
            "outputs": {"type": "array", "items": _META_TENSOR},
        },
    },
    "V2InferRequest": {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "inputs": {"type": "array", "items": _TENSOR},
            "outputs": {
                "type": "array",
                "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
            },
        },
    },
    "V2InferResponse": {
        "type": "object",
        "required": ["model_name", "outputs"],
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "outputs": {"type": "array", "items": _TENSOR},
        },
    },
}


def _v2_paths(name: str, security: list[Any]) -> dict[str, Any]:
    def v2(schema: str, description: str, *errors: int) -> dict[str, Any]:
        out: dict[str, Any] = {
            "200": {"description": description, "content": {"application/json": {"schema": _ref(schema)}}}
        }
        for code in errors:
            out[str(code)] = {
                "description": "the protocol's error",
                "content": {"application/json": {"schema": _ref("V2Error")}},
            }
        return out

    def yes_no(field: str, *more: str) -> dict[str, Any]:
        props = {field: {"type": "boolean"}, **{m: {"type": "string"} for m in more}}
        schema = {"type": "object", "required": [field, *more], "properties": props}
        content = {_JSON: {"schema": schema}}
        return {
            "200": {"description": "yes", "content": content},
            "503": {"description": "no", "content": content},
        }

    def get(summary: str, responses: dict[str, Any]) -> dict[str, Any]:
        return {"get": {"summary": summary, "responses": responses, "security": []}}

    metadata = {"200": {"description": "metadata", "content": {_JSON: {"schema": {"type": "object"}}}}}
    secured_errors = (401,) if security else ()
    return {
        "/v2": get("OIP v2: the server's name, version and extensions", metadata),
        "/v2/health/live": get("OIP v2: the server is live", yes_no("live")),
        "/v2/health/ready": get("OIP v2: the server is ready", yes_no("ready")),
        f"/v2/models/{name}": {
            "get": {
                "summary": "OIP v2: the model's inputs and outputs",
                "responses": v2("V2ModelMetadata", "metadata", *secured_errors),
                "security": security,
            }
        },
        f"/v2/models/{name}/ready": get("OIP v2: the model is ready", yes_no("ready", "name")),
        f"/v2/models/{name}/infer": {
            "post": {
                "summary": "OIP v2: infer (JSON tensors, or the binary-data extension)",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": _ref("V2InferRequest")},
                        "application/octet-stream": {
                            "schema": {
                                "type": "string",
                                "format": "binary",
                                "description": "a JSON header (Inference-Header-Content-Length bytes), "
                                "then the tensors",
                            }
                        },
                    },
                },
                "responses": v2("V2InferResponse", "the outputs", 400, *secured_errors, 500, 503, 504),
                "security": security,
            }
        },
    }
