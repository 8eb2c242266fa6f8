"""JSON as RFC 8259 has it: Python's parser also takes NaN, Infinity and -Infinity,
which no strict client could have sent, and a bee must never run on them. One parser
for every place that reads JSON from outside (a gateway's body, an inference call's
header, a test payload typed in the widget)."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["loads"]


def loads(data: str | bytes) -> Any:
    """`json.loads`, refusing NaN and Infinity with ValueError (as it refuses bad JSON)."""
    return json.loads(data, parse_constant=_no_constant)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value (RFC 8259 has no NaN or Infinity)")
