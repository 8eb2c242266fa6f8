"""What a gateway promises its callers, from the contracts of the bees it feeds: the
payload every one of them takes, the answers the bees its requests end at give, and,
when it feeds a tensor bee, the model it is."""

from __future__ import annotations

from typing import Any

from .contract import contract_of, free
from .hints import hints_of
from .spec import BeeSpec, Topology
from .terms import Contract

__all__ = ["bee_contract", "gateway_contract"]


def bee_contract(spec: BeeSpec) -> Contract:
    """The bee's contract, read from its function the first time it is asked for (in
    the process the code was written in: the hints it reads are kept with the spec, as
    a replica that gets the function pickled may lack the names they use)."""
    if spec.hints is None:
        spec.hints = hints_of(spec.fn)
    if spec.contract is None:
        made = contract_of(spec.fn, spec.hints)
        if spec.batch_size > 1:  # its hints say lists of payloads and answers: one is an item
            made["request"], made["response"] = _item(made["request"]), _item(made["response"])
        spec.contract = made
    contract: Contract = spec.contract
    return contract


def _item(schema: dict[str, Any] | None) -> dict[str, Any] | None:
    """What one element of a list schema promises (None: anything)."""
    if schema is None or schema.get("type") != "array":
        return None
    item = schema.get("items")
    return item if isinstance(item, dict) and item else None


def gateway_contract(topology: Topology, gateway: str) -> Contract:
    """What a gateway's callers may send and get: every bee it feeds must take the
    payload (their schemas all hold), and the answer comes from one of the bees its
    requests end at (any of theirs); a tensor bee it feeds makes it a model."""
    out = free()
    direct = [b for b in topology.bees.values() if gateway in b.inputs and not b.join]
    requests = [s for b in direct if (s := bee_contract(b)["request"]) is not None]
    if len(requests) == 1:
        out["request"] = requests[0]
    elif requests:
        out["request"] = {"allOf": requests}
    reached, todo = {}, [b.name for b in direct]
    while todo:
        name = todo.pop()
        if name not in reached:
            reached[name] = topology.bees[name]
            todo.extend(c.name for c in topology.consumers(name))
    contracts = {n: bee_contract(b) for n, b in reached.items()}
    out["streams"] = any(c["streams"] for c in contracts.values())
    ends = [contracts[n] for n in reached if topology.is_sink(n)]
    # a bee declared to return None never answers: the others' answers are the gateway's
    answers = [c["response"] for c in ends if c["response"] != {"type": "null"}]
    if answers and all(a is not None for a in answers):
        unique = [a for i, a in enumerate(answers) if a not in answers[:i]]
        out["response"] = unique[0] if len(unique) == 1 else {"anyOf": unique}
    tensor = next((contracts[b.name] for b in direct if contracts[b.name]["inputs"]), None)
    if tensor is not None:
        out["inputs"] = tensor["inputs"]
        declared = [c["outputs"] for c in ends if c["outputs"]]
        out["outputs"] = declared[0] if len(declared) == 1 else []
    return out
