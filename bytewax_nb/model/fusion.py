"""Which bees share a process: consecutive bees of a chain, run as one, as Flink chains
operators into one task.

A message then passes from one bee to the next as a call, with no pickle, signature or
socket on the way; everything a user sees (figures, logs, errors, the timeout) stays
per bee. `plan` turns the user's graph into the graph of processes: a fused group is one
process-level bee named after its first bee, which reads what that bee reads, carries
its bees as `stages`, and publishes under its last bee's name. Pure functions, so the
supervisor can diff one plan against the next when the graph changes. A group is named
after its first bee, so its producers' routes hold while it regroups behind it.
"""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

from .options import options_of
from .spec import BeeSpec, Topology

__all__ = ["groups", "handoff", "members", "plan", "same_processes"]

# what must match for two bees to share processes: where and how they run (the options
# `BeeSpec` declares shared)
_SHARED = tuple(f.name for f, opt in options_of(BeeSpec) if opt.shared)
# values that cannot change once handed on (`handoff` passes them as they are)
_IMMUTABLE = frozenset({str, bytes, int, float, bool, complex, type(None)})


def same_processes(a: BeeSpec, b: BeeSpec) -> bool:
    """Whether `a` and `b` ask for the same runtime settings."""
    return all(getattr(a, f) == getattr(b, f) for f in _SHARED)


def _fusable(producer: BeeSpec, consumer: BeeSpec, topology: Topology) -> bool:
    """A linear edge between two bees that may share a process, with no join or batch
    boundary after it (a join or batch collects messages across calls)."""
    return (
        producer.fuse
        and consumer.fuse
        and consumer.inputs == (producer.name,)
        and [c.name for c in topology.consumers(producer.name)] == [consumer.name]
        and not consumer.join
        and consumer.batch_size == 1
        and same_processes(producer, consumer)
    )


def groups(topology: Topology, enabled: bool = True) -> list[list[str]]:
    """The bees of each process group, first bee first; every bee is in exactly one."""
    out: list[list[str]] = []
    group_of: dict[str, list[str]] = {}
    for name in topology.order():
        spec = topology.bees.get(name)
        if spec is None:  # a gateway
            continue
        producer = topology.bees.get(spec.inputs[0]) if len(spec.inputs) == 1 else None
        if enabled and producer is not None and _fusable(producer, spec, topology):
            group = group_of[producer.name]
            group.append(name)
        else:
            group = [name]
            out.append(group)
        group_of[name] = group
    return out


def plan(topology: Topology, enabled: bool = True) -> Topology:
    """The graph of processes: each group one bee, named after its first bee (what its
    producers send to), publishing what its last bee makes under that bee's name."""
    bees: dict[str, BeeSpec] = {}
    for group in groups(topology, enabled):
        specs = tuple(topology.bees[n] for n in group)
        head = specs[0]
        bees[head.name] = dataclasses.replace(head, stages=specs) if len(specs) > 1 else head
    return Topology(topology.gateways, bees)  # the same gateways: one added later is in both


def members(spec: BeeSpec) -> list[str]:
    """The bees a process-level bee runs: its group's, or itself."""
    return [s.name for s in spec.stages] if spec.stages else [spec.name]


def handoff(value: Any) -> Any:
    """What the next bee of a group gets: a value no other bee can change, as if it had
    crossed a process. Immutable scalars pass as they are; anything else is copied by a
    pickle round trip (the same types survive that a socket would carry), its large
    buffers (numpy arrays) out of band: one memory copy each, not two."""
    kind = type(value)
    if kind in _IMMUTABLE:
        return value
    # a flat record or list (what JSON requests mostly are): a shallow copy is a full one
    if kind is dict and all(type(v) in _IMMUTABLE for v in value.values()):
        return dict(value)
    if kind is list and all(type(v) in _IMMUTABLE for v in value):
        return list(value)
    buffers: list[pickle.PickleBuffer] = []
    data = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    return pickle.loads(data, buffers=[bytearray(b.raw()) for b in buffers])
