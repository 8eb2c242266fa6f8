"""The widget's state, typed once: what the kernel syncs to the front-end (nodes, edges,
a bee's detail, a message) and what the front-end sends back (edits), as TypedDicts.

`labextension/src/state.ts` is made from these by `typescript()` (run
`python -m bytewax_nb.widget > labextension/src/state.ts`); a test holds the file
equal to it, so the two sides cannot drift apart.
"""

from __future__ import annotations

import types
import typing
from typing import Literal, NotRequired, TypedDict, Union

from ..model.protocol import BeeState
from ..model.tracing import SpanRecord, TraceRecord

__all__ = [
    "Autoscaled",
    "BeeDetail",
    "BeeNode",
    "BeeStatus",
    "Edit",
    "GatewayNode",
    "Kept",
    "LastError",
    "Listed",
    "ListedBee",
    "ListedGateway",
    "Message",
    "NodeHistory",
    "Probe",
    "ReplicaInfo",
    "Spark",
    "SwarmEdge",
    "typescript",
]

BeeStatus = str  # one of BeeState's values (the TypeScript side spells them out)


class Spark(TypedDict):
    """A node's last minutes, small: what its sparklines draw (oldest first)."""

    rate: list[float]
    p99: list[float]
    errors: list[float]


class GatewayNode(TypedDict):
    id: str
    kind: Literal["gateway"]
    status: BeeStatus
    url: str | None
    rps: float
    errors: int
    streams: int  # streamed answers being written now
    chunk_rate: float  # chunks per second
    spark: NotRequired[Spark]


class Autoscaled(TypedDict):
    """An autoscaled bee's range and its autoscaler's last word."""

    min: int
    max: int
    desired: int
    in_flight: int
    target: float
    reason: str  # "" until it first decides
    cold_start_s: float | None


class BeeNode(TypedDict):
    id: str
    kind: Literal["bee"]
    status: BeeStatus
    ready: int
    wanted: int
    rate: float
    p50_ms: float
    p99_ms: float
    errors: int
    deaths: int
    dropped: int
    batch: float
    join: bool
    group: list[str]  # the bees that share its processes (a fused chain), in order; [] alone
    spark: NotRequired[Spark]
    autoscale: NotRequired[Autoscaled]


class SwarmEdge(TypedDict):
    source: str
    target: str
    join: bool
    rate: float  # messages a second along it


class NodeHistory(TypedDict):
    """A node's last minutes, oldest sample first (`ago`: seconds before the newest)."""

    ago: list[float]
    rate: list[float]  # requests (gateway) or messages handled (bee) a second
    p50: list[float]
    p99: list[float]
    errors: list[float]  # errors a second


class LastError(TypedDict):
    type: str
    message: str
    traceback: str
    request_id: str
    time: float  # epoch seconds


class ReplicaInfo(TypedDict):
    replica: int
    pid: int | None
    state: str
    handled: int
    queued: int


class BeeDetail(TypedDict, total=False):
    """What a click on a bee opens: its recent lines, its recent errors (newest first),
    its replicas and its last minutes."""

    bee: str
    lines: list[str]
    last_error: LastError | None
    errors: list[LastError]
    replicas: list[ReplicaInfo]
    history: NodeHistory | None  # its last minutes, for the panel's charts


class Message(TypedDict, total=False):
    """The outcome of an edit, or why the graph is stale."""

    text: str
    level: Literal["info", "error"]
    seq: int


class Probe(TypedDict, total=False):
    """A test payload sent from the widget, traced: its answer and where its time went."""

    gateway: str
    state: Literal["running", "done", "error"]
    payload: str  # as typed (JSON text)
    answer: str  # the answer, as JSON text ("" if none)
    error: str  # what went wrong instead ("" if answered)
    trace: TraceRecord | None
    seq: int


class Kept(TypedDict):
    """The traces the gateways keep: the slowest and the failed requests."""

    slow: list[TraceRecord]
    failed: list[TraceRecord]


class ListedGateway(TypedDict):
    name: str
    url: str | None


class ListedBee(TypedDict):
    name: str
    state: str  # a BeeStatus ("" until its owner said)
    ready: int
    wanted: int


class Listed(TypedDict):
    """A swarm of this machine, or a deployed stack, as JupyterLab's side panel lists it."""

    id: str  # "local/NAME.PID" or "stack/NAME": what the panel's requests name
    name: str
    kind: Literal["swarm", "stack"]
    runtime: str
    owner: int | None  # the pid of the process that runs it (a swarm of this machine)
    state: str  # "ready", "starting", "deployed", "not answering" or "owner dead"
    gateways: list[ListedGateway]
    bees: list[ListedBee]
    error: str  # why it is not answering ("" when it is)


class ConnectEdit(TypedDict):
    type: Literal["connect"]
    source: str
    target: str


class DisconnectEdit(TypedDict):
    type: Literal["disconnect"]
    source: str
    target: str


class ReplicasEdit(TypedDict):
    type: Literal["replicas"]
    bee: str
    replicas: int


class RemoveEdit(TypedDict):
    type: Literal["remove"]
    bee: str


class ProbeAsk(TypedDict):
    type: Literal["probe"]
    gateway: str
    payload: str


class TracesAsk(TypedDict):
    type: Literal["traces"]


Edit = (
    ConnectEdit | DisconnectEdit | ReplicasEdit | RemoveEdit | ProbeAsk | TracesAsk
)  # what the front-end asks

_INTERFACES = (
    Spark,
    GatewayNode,
    Autoscaled,
    BeeNode,
    SwarmEdge,
    NodeHistory,
    LastError,
    ReplicaInfo,
    BeeDetail,
    Message,
    SpanRecord,
    TraceRecord,
    Probe,
    Kept,
    ListedGateway,
    ListedBee,
    Listed,
)
_EDITS = (ConnectEdit, DisconnectEdit, ReplicasEdit, RemoveEdit, ProbeAsk, TracesAsk)


def _ts(tp: object) -> str:
    """A Python type as TypeScript."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is str:
        return "string"
    if tp in (int, float):
        return "number"
    if tp is bool:
        return "boolean"
    if tp is type(None):
        return "null"
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin is list:
        return f"{_ts(args[0])}[]"
    if origin in (Union, types.UnionType):
        return " | ".join(_ts(a) for a in args)
    if isinstance(tp, type) and hasattr(tp, "__required_keys__"):
        return tp.__name__
    raise TypeError(f"no TypeScript for {tp!r}")


def _fields(td: type) -> list[str]:
    hints = typing.get_type_hints(td)
    required = td.__required_keys__  # type: ignore[attr-defined]
    out = []
    for name, tp in hints.items():
        ts = "BeeStatus" if name == "status" and td in (GatewayNode, BeeNode) else _ts(tp)
        # NotRequired, spelled as a string here (future annotations), is not always
        # seen by the TypedDict's required keys
        raw = td.__annotations__.get(name)
        spelled = getattr(raw, "__forward_arg__", raw)
        optional = name not in required or str(spelled).startswith("NotRequired[")
        out.append(f"  {name}{'?' if optional else ''}: {ts};")
    return out


def typescript() -> str:
    """`labextension/src/state.ts`: these types, for the front-end."""
    statuses = " | ".join(repr(s.value) for s in BeeState)
    lines = [
        "// Made by `python -m bytewax_nb.widget` from bytewax_nb/widget/state.py: do not edit.",
        "// The widget's state as the kernel syncs it, and the edits the front-end sends.",
        "",
        f"export type BeeStatus = {statuses};",
    ]
    for td in _INTERFACES:
        lines += ["", f"export interface {td.__name__} {{", *_fields(td), "}"]
    lines += ["", "export type SwarmNode = GatewayNode | BeeNode;", ""]
    lines.append("/** What the front-end asks the kernel (to change: checked again there). */")
    variants = []
    for edit in _EDITS:
        hints = typing.get_type_hints(edit)
        variants.append("{ " + "; ".join(f"{n}: {_ts(t)}" for n, t in hints.items()) + " }")
    lines.append("export type Edit =\n  | " + "\n  | ".join(variants) + ";")
    return "\n".join(lines) + "\n"
