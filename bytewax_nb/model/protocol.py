"""Everything that crosses a process boundary, named and typed in one place.

The control channel (supervisor <-> hub and replicas) carries the messages below; the
bus carries frames (`wire`) whose link messages and bee errors are typed here too. A
closed set is a `StrEnum`, a message a `TypedDict`: mypy then checks, at each place a
message is built, that it has the fields its reader expects. Where a message needs an
encoding, its encoder and decoder sit side by side (routes, the bee error), as
ipyparallel keeps `wrap_exception` and `unwrap_exception` together.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import IntEnum, StrEnum
from typing import TYPE_CHECKING, Any, NotRequired, TypedDict

from .terms import Contract, Located

if TYPE_CHECKING:
    from .source import Captured
    from .spec import BeeSpec, GatewaySpec

__all__ = [
    "AutoscaleView",
    "Beat",
    "BeeConfig",
    "BeeError",
    "BeeFigures",
    "BeeState",
    "BeeStats",
    "BeeView",
    "Busy",
    "Bye",
    "CallStyle",
    "GatewayCounts",
    "GatewayView",
    "Hello",
    "Contract",
    "HubConfig",
    "Located",
    "HubStats",
    "HubView",
    "Linked",
    "LinksBody",
    "Lost",
    "MemberState",
    "Msg",
    "PICKLED",
    "Role",
    "ReplicaView",
    "Route",
    "RoutesBody",
    "Runtime",
    "Status",
    "StatusOk",
    "StopOrder",
    "StopPhase",
    "StuckCall",
    "SwarmStatus",
    "Tally",
    "Up",
    "bee_error",
    "http_error_body",
    "routes_from",
    "routes_to",
]


# -- closed sets ------------------------------------------------------------------------


class Msg(StrEnum):
    """Control message kinds (what each carries is the TypedDict named in its comment)."""

    HELLO = "hello"  # child -> sup: I am alive, send my config (Hello)
    CONFIG = "config"  # sup -> child: what to run, a pickle (HubConfig | BeeConfig)
    UP = "up"  # child -> sup: my link socket listens (Up)
    LINKS = "links"  # sup -> bee replica: the producers to read from, and the hub (LinksBody)
    LINKED = "linked"  # bee replica -> sup: the producers that welcomed it (Linked)
    ROUTES = "routes"  # sup -> producer: the bees that listen to each of its topics (RoutesBody)
    RETIRE = "retire"  # sup -> bee replica: replaced; ask for nothing more, drain, exit (no body)
    LOST = "lost"  # sup -> every process: that one died, how, its last lines (Lost)
    GATEWAYS = "gateways"  # sup -> hub: serve this list of gateways, a pickle (list[GatewaySpec])
    STATUS = "status"  # sup -> hub: readiness and bee figures (Status)
    STATUS_OK = "status_ok"  # hub -> sup: applied that status (StatusOk)
    STATS = "stats"  # child -> sup: counters (BeeStats | HubStats)
    BUSY = "busy"  # bee replica -> sup: a call runs far past its usual time (Busy), or {} once it returned
    REPORT = "report"  # sup -> child: send your counters now (no body)
    STOP = "stop"  # sup -> child: drain and exit (StopOrder, or no body)
    BYE = "bye"  # child -> sup: drained, exiting (Bye)
    BEAT = "beat"  # a stack's task -> controller: alive, and what it runs with (Beat)
    SNAPSHOT = "snapshot"  # controller -> a stack's hub: the swarm's status for `GET /swarm` (SwarmStatus)
    CONTRACTS = "contracts"  # sup -> hub: what each gateway's callers may send and get (dict[str, Contract])


# the only kinds whose body is a pickle (verified before it is loaded): the rest is JSON
PICKLED = frozenset({Msg.CONFIG, Msg.GATEWAYS})


class Role(StrEnum):
    """What a launched process is."""

    HUB = "hub"  # the gateways, and the producer of their requests
    BEE = "bee"  # one replica of one bee


class MemberState(StrEnum):
    """A launched process, as the supervisor knows it."""

    STARTING = "starting"  # launched, not heard from
    CONFIGURED = "configured"  # sent its configuration
    UP = "up"  # its link socket listens
    STOPPING = "stopping"  # said BYE, or retiring on its way out


class StopPhase(StrEnum):
    """How far `stop()` has come."""

    RUNNING = ""
    GATEWAYS = "gateways"  # the hub drains: stops listening, answers what is in flight
    BEES = "bees"  # the bees were told to stop
    TERMINATE = "terminate"  # what is left got SIGTERM
    DONE = "done"  # and then SIGKILL


class BeeState(StrEnum):
    """A bee as the status, the table and the widget show it."""

    STARTING = "starting"
    READY = "ready"
    REDEPLOYING = "redeploying"  # replicas of an old version (or surplus ones) on their way out
    ERROR = "error"  # a replica slot failed since it was last ready
    STUCK = "stuck"  # every ready replica is in a call running far past its usual time: no work taken
    STOPPED = "stopped"
    IDLE = "idle"  # autoscaled to zero replicas: the next request starts one


class CallStyle(IntEnum):
    """The signatures a bee may have."""

    PAYLOAD = 1  # f(payload)
    CONTEXT = 2  # f(payload, ctx)
    LEGACY = 3  # f(swarm, payload, context), the original platform's


class Runtime(StrEnum):
    """Where replicas run."""

    AUTO = "auto"
    PROCESS = "process"
    DOCKER = "docker"


# -- configuration and membership -------------------------------------------------------


class Hello(TypedDict):
    pid: int


class LinksBody(TypedDict):
    links: dict[str, str]  # producer identity -> address to dial
    hub: str | None  # the hub's identity: where answers go


RoutesBody = dict[str, list[list[Any]]]  # topic -> [[bee, join, retries], ...] (JSON)


@dataclass(frozen=True, slots=True)
class Route:
    """A bee that listens to one of a producer's topics."""

    bee: str
    join: bool = False
    retries: int = 1


def routes_to(routes: Mapping[str, Iterable[Route]]) -> RoutesBody:
    """Routes as the control channel carries them."""
    return {topic: [[r.bee, r.join, r.retries] for r in rs] for topic, rs in routes.items()}


def routes_from(body: RoutesBody) -> dict[str, list[Route]]:
    return {topic: [Route(str(b), bool(j), int(n)) for b, j, n in rs] for topic, rs in body.items()}


class HubConfig(TypedDict):
    gateways: list[GatewaySpec]
    bus_host: str  # where its link socket binds
    ports: dict[str, int]  # gateway -> port a restarted hub takes again
    routes: RoutesBody
    journal: str  # the SQLite file of accepted submits
    contracts: dict[str, Contract]  # gateway -> its schemas and tensors (model/contract.py)


class BeeConfig(TypedDict):
    replica: int
    spec: BeeSpec
    routes: RoutesBody
    links: LinksBody
    peer_host: str  # where its link socket binds ("auto": all interfaces, its own address)
    timeout: float | None  # seconds a call may run (the bee's timeout, "auto" resolved)
    sources: dict[str, Captured]  # per bee it runs: its code's file names and lines (tracebacks)
    imports: list[str]  # modules its bees' code imports: checked before it reports up


class Up(TypedDict, total=False):
    address: str  # its link socket
    ports: dict[str, int]  # the hub: where each gateway listens


class Linked(TypedDict):
    producers: list[str]  # identities that welcomed it
    revoked: bool  # retiring, and every producer said it sends nothing more


class Lost(TypedDict):
    identity: str
    bee: str
    message: str  # "replica 0 of bee 'x' was killed by SIGKILL"
    tail: list[str]  # its last log lines
    clean: bool  # retired and drained: what it held was done
    retries: int


class Beat(TypedDict, total=False):
    """A stack's task, every heartbeat: enough for a restarted controller to know it
    again without disturbing it (see `bytewax_nb.stack`)."""

    address: str | None  # its link socket, once it listens
    links: LinksBody | None  # what it reads from (a bee replica)
    routes: RoutesBody | None  # where what it makes goes
    linked: list[str]  # producers that welcomed it
    revoked: bool
    leaving: bool  # told to stop by the engine (SIGTERM): it drains, then exits
    ports: dict[str, int]  # the hub: its gateways' ports
    holding: list[str]  # consumers not drained and gone (one may have died unseen)
    tally: Tally  # the hub: the counts of the last snapshot it had (a new controller's start)


class Tally(TypedDict):
    """Counts only a controller keeps, as the hub last heard them: a restarted controller
    carries on from them instead of from zero."""

    hub_restarts: int
    deaths: dict[str, int]  # bee -> its processes that exited unasked


class Busy(TypedDict, total=False):
    """A call that runs far past the bee's usual time (its watchdog says so once per call)."""

    since: float  # when the call started (epoch seconds)
    request_id: str
    bee: str  # which of a fused group's bees
    where: str  # the line it runs now


class StuckCall(TypedDict):
    """A call a replica has been in for long, as status shows it."""

    replica: int
    bee: str
    request_id: str
    seconds: float  # how long it has run
    where: str


class StopOrder(TypedDict, total=False):
    drain: float  # seconds the hub may wait for requests in flight


class Bye(TypedDict, total=False):
    unanswered: int  # the hub: requests still pending
    journal: int  # the hub: accepted submits no bee had taken


# -- errors -----------------------------------------------------------------------------


class BeeError(TypedDict):
    """The one schema of a bee's failure: in bus error frames, in a replica's last error,
    in status and the widget. HTTP bodies name `message` `error` (the contract's)."""

    bee: str
    type: str
    message: str
    traceback: str
    request_id: str | None
    status: int  # the HTTP status it answers with: 400 for BadRequest, 422, else 500
    time: float
    errors: NotRequired[list[Located]]  # a 422's reasons, each located in the payload


def bee_error(
    bee: str, ename: str, message: str, traceback: str = "", request_id: str | None = None, status: int = 500
) -> BeeError:
    return BeeError(
        bee=bee,
        type=ename,
        message=message,
        traceback=traceback,
        request_id=request_id,
        status=status,
        time=time.time(),
    )


def http_error_body(err: Mapping[str, Any], request_id: str, *, tracebacks: bool) -> dict[str, Any]:
    """A bee's error as the HTTP body the contract names: `error`, `type`, `bee`,
    `request_id`, and `traceback` only for who may see it."""
    body: dict[str, Any] = {
        "error": str(err.get("message", "")),
        "request_id": request_id,
        "bee": str(err.get("bee", "?")),
        "type": str(err.get("type", "Exception")),
    }
    if tracebacks and err.get("traceback"):
        body["traceback"] = str(err["traceback"])
    if err.get("errors"):
        body["errors"] = list(err["errors"])
    return body


# -- figures ----------------------------------------------------------------------------


class BeeStats(TypedDict):
    """One replica's counters (STATS from a bee)."""

    handled: int
    errors: int
    dropped: int
    dropped_by: dict[str, int]
    retried: dict[str, int]  # consumer bee -> messages it sent again after a death
    queued: int
    p50_ms: float
    p99_ms: float
    batch: float
    pending_joins: int
    last_error: BeeError | None
    # a fused group's replica: each of its bees' own figures (what the replica counts as
    # a whole, drops and queue, with its first bee's)
    stages: NotRequired[dict[str, BeeStats]]
    # consumer bee -> what this replica sent it and is not done, or holds for it (the
    # load its autoscaler follows; absent from a replica of an older version)
    outstanding: NotRequired[dict[str, int]]


class GatewayCounts(TypedDict):
    requests: int
    errors: int
    streams: int  # streamed answers being written now
    chunks: int  # chunks of streamed answers written so far


class HubStats(TypedDict):
    """The hub's counters (STATS from the hub)."""

    gateways: dict[str, GatewayCounts]
    dropped_by: dict[str, int]
    retried: dict[str, int]
    waiting: int
    outstanding: NotRequired[dict[str, int]]  # as a replica's: the gateways' load on each bee


class AutoscaleView(TypedDict):
    """An autoscaled bee's range and its autoscaler's last word (a fused group's bees
    share theirs)."""

    min: int
    max: int  # its max_replicas, or fewer: what its runtime can run (the machine's cores)
    target: float  # requests in flight per replica it aims at
    in_flight: int  # what it has to do now: sent to it and not done, or waiting for room
    desired: int  # replicas it should run
    reason: str  # why, in words ("" until it first decides)
    decided: float | None  # when (epoch seconds)
    cold_start_s: float | None  # its last start from zero replicas: seconds until one served


class BeeFigures(TypedDict):
    """A bee as status, /metrics and the widget show it (all its replicas together)."""

    handled: int
    errors: int
    dropped: int
    dropped_by: dict[str, int]
    deaths: int
    retried: int
    queued: int
    p50_ms: float
    p99_ms: float
    batch: float
    pending_joins: int
    ready: int
    wanted: int
    input: list[str]
    failing: bool  # keeps dying with no replica ready: its gateways refuse at once
    stuck: list[StuckCall]  # calls running far past the bee's usual time
    last_error: BeeError | None
    state: BeeState
    group: list[str]  # the bees that share its processes, in order ([] when it runs alone)
    autoscale: NotRequired[AutoscaleView]  # an autoscaled bee's


class Status(TypedDict):
    """What the supervisor pushes to the hub."""

    version: int
    serving: bool  # every bee has a ready replica
    healthy: bool  # every wanted replica is ready
    not_ready: list[str]
    bees: dict[str, BeeFigures]
    hub_restarts: int


class StatusOk(TypedDict):
    version: int


# -- the status a user reads (Swarm.status(), %swarm status, bytewax-nb status) ---------


class GatewayView(TypedDict):
    port: int | None
    host: str
    timeout: float
    pid: int | None  # the hub's
    url: str | None
    requests: int
    errors: int
    streams: int  # streamed answers being written now
    chunks: int  # chunks of streamed answers written so far


class ReplicaView(TypedDict, total=False):
    replica: int
    pid: int | None
    state: MemberState
    # and the replica's own counters (BeeStats), as it last reported them


class BeeView(BeeFigures):
    join: bool
    replicas: list[ReplicaView]


class HubView(TypedDict):
    pid: int | None
    restarts: int
    dropped_by: dict[str, int]
    waiting: int  # requests waiting for a replica with room


class SwarmStatus(TypedDict, total=False):
    """`Swarm.status()`; a swarm that is not running has only `swarm`, `ready`, `running`."""

    swarm: str
    ready: bool
    running: bool
    gateways: dict[str, GatewayView]
    bees: dict[str, BeeView]
    hub: HubView
    controller_since: float  # a stack's: when its controller's task started (epoch seconds)
