"""A gateway's declared request schema, enforced before anything is published: a payload
that does not match is answered 422 with each reason and where it is (a JSON pointer),
and no bee is disturbed. The validator is built once per schema (jsonschema compiles
nothing, but resolving `$ref`s and choosing the draft is done once)."""

from __future__ import annotations

from typing import Any

from ..model.contract import pointer
from ..model.protocol import Located

__all__ = ["RequestCheck"]

_MOST = 20  # reasons listed at most: a huge wrong payload does not make a huge answer


class RequestCheck:
    """Checks payloads against one JSON Schema (Draft 2020-12, as OpenAPI 3.1 uses)."""

    def __init__(self, schema: dict[str, Any]) -> None:
        from jsonschema import Draft202012Validator  # only gateways that declare a schema pay for it

        self._validator = Draft202012Validator(schema)

    def errors(self, payload: Any) -> list[Located]:
        """Why `payload` does not match, each reason located (empty: it matches)."""
        if self._validator.is_valid(payload):
            return []
        found = sorted(self._validator.iter_errors(payload), key=lambda e: list(map(str, e.absolute_path)))
        return [Located(pointer=pointer(e.absolute_path), message=e.message) for e in found[:_MOST]]
