"""What a swarm is made of, and the checks that keep its graph a valid DAG."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from graphlib import CycleError, TopologicalSorter
from typing import Any, TypedDict

from .errors import TopologyError
from .options import Form, option
from .terms import Contract

__all__ = ["AUTO", "BeeOptions", "BeeSpec", "BeeTimeout", "GatewaySpec", "Topology", "check_name"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
DEFAULT_MAX_BODY = 10 * 1024 * 1024
DEFAULT_MAX_IN_FLIGHT = 1000
DEFAULT_READ_TIMEOUT = 10.0
DEFAULT_GATEWAY_TIMEOUT = 30.0
# a bee's timeout by default: a call running longer is taken for a hang (its callers get
# BeeTimeout, its replica restarts) once five sixths of the longest timeout of the
# gateways that reach it have passed, so a caller hears BeeTimeout before its gateway
# gives up with 504 (25 s under the default 30 s)
AUTO = "auto"
_AUTO_SHARE = 5 / 6
DEFAULT_BEE_TIMEOUT = AUTO
BeeTimeout = float | str | None  # seconds, AUTO, or None: no limit


def check_name(kind: str, name: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise TopologyError(
            f"invalid {kind} name {name!r}: use letters, digits, '_', '.', '-' "
            "(starting with a letter or digit)"
        )
    return name


@dataclass
class GatewaySpec:
    """An HTTP entry point; `token` is a secret and never shown."""

    name: str
    host: str = "127.0.0.1"
    port: int = 0
    timeout: float = DEFAULT_GATEWAY_TIMEOUT
    token: str | None = field(default=None, repr=False)
    max_body: int = DEFAULT_MAX_BODY
    # requests accepted and not yet answered; past it, 503 with Retry-After at once
    max_in_flight: int = DEFAULT_MAX_IN_FLIGHT
    # seconds a client may take to send a request's headers, and then its body (408)
    read_timeout: float = DEFAULT_READ_TIMEOUT
    # bees' tracebacks in 500 bodies; otherwise only the owner (`swarm.request`) gets them
    tracebacks: bool = False
    # where the Open Inference Protocol's gRPC service serves it too (the grpc extra)
    grpc_port: int | None = None
    # the origin (or "*") whose browser pages may call it (CORS); None: same origin only
    cors: str | None = None
    # every request's bees record their times: the slowest and failed are kept (GET
    # /traces), and exported if OpenTelemetry is set up; off, only the owner's test calls
    tracing: bool = False

    def __post_init__(self) -> None:
        check_name("gateway", self.name)
        if self.timeout <= 0:
            raise TopologyError(f"gateway {self.name!r}: timeout must be positive")
        if not isinstance(self.max_in_flight, int) or self.max_in_flight < 1:
            raise TopologyError(f"gateway {self.name!r}: max_in_flight must be an integer >= 1")
        if not self.read_timeout > 0:
            raise TopologyError(f"gateway {self.name!r}: read_timeout must be positive")
        if not 0 <= self.port < 65536:
            raise TopologyError(f"gateway {self.name!r}: port {self.port} out of range")
        if self.max_body <= 0:
            raise TopologyError(f"gateway {self.name!r}: max_body must be positive")
        if self.grpc_port is not None and not 0 < self.grpc_port < 65536:
            raise TopologyError(f"gateway {self.name!r}: grpc_port {self.grpc_port} out of range (1-65535)")


@dataclass
class BeeSpec:
    """One bee: its function, where its messages come from, and its options (each
    declared here once: see `options`)."""

    name: str
    fn: Callable[..., Any]
    inputs: tuple[str, ...]
    join: bool = option(
        False,
        "wait for one message of every input with the same request id; called with {input: payload}",
        form=Form.SWITCH,
    )
    replicas: int = option(
        1,
        "replicas that share the bee's messages (each message goes to one); `%%bee --replicas "
        "MIN:MAX` sets `min_replicas` and `max_replicas`",
        shared=True,
        form=Form.RANGE,
        metavar="N|MIN:MAX",
    )
    min_replicas: int | None = option(
        None,
        "autoscaling: the fewest replicas (0: none while idle, started by the next request; default 1)",
        shared=True,
    )
    max_replicas: int | None = option(
        None, "autoscaling: the most replicas; giving it turns autoscaling on", shared=True
    )
    target_in_flight: float | None = option(
        None,
        "autoscaling: requests in flight per replica to aim at (None: from the bee's latency)",
        shared=True,
    )
    idle_s: float = option(
        30.0, "autoscaling: seconds the load stays low before a replica is retired", shared=True
    )
    batch_size: int = option(1, "call the bee with a list of up to N payloads; it returns a list of results")
    batch_timeout_ms: float = option(0.0, "milliseconds a batch waits to fill before it is called")
    requirements: tuple[str, ...] = option(
        (),
        "pip requirements of the bee's image (docker runtime)",
        shared=True,
        form=Form.WORDS,
        metavar='"PKG ..."',
    )
    image: str | None = option(None, "the image to build the bee's image FROM (docker runtime)", shared=True)
    env: dict[str, str] = option(
        factory=dict,
        help="environment variables of its processes (never shown in status or the widget)",
        shared=True,
        form=Form.PAIRS,
        metavar="K=V",
        default_text="`{}`",
    )
    cpus: float | None = option(
        None, "CPUs per replica (docker runtime; a reservation on a stack)", shared=True
    )
    memory: str | None = option(None, 'memory per replica, e.g. "512m" (docker runtime)', shared=True)
    gpus: int | None = option(None, "GPUs per replica (docker runtime)", shared=True)
    timeout: BeeTimeout = option(
        DEFAULT_BEE_TIMEOUT,
        "seconds a call may run; then its callers get BeeTimeout and its replica restarts "
        "(auto: 5/6 of the longest timeout of the gateways that reach it; None: no limit)",
        shared=True,
        form=Form.TIMEOUT,
        metavar="S",
    )
    retries: int = option(
        1,
        "times a message is sent again when the replica holding it died "
        "(0: for side effects that must not repeat)",
        shared=True,
    )
    fuse: bool = option(
        True,
        "may share its processes with the bees next to it (a fused chain); False: its own",
        form=Form.NEGATED,
    )
    # a fused group, as the processes that run it see it (`fusion.plan` makes these):
    # the bees it runs, in order; empty for a bee that runs alone
    stages: tuple[BeeSpec, ...] = field(default=(), repr=False)
    # what it promises its callers, read from its hints where its code is (None: not
    # read yet: `promises.bee_contract`); JSON, so a stack's controller, which never
    # has the code, knows it too
    contract: Contract | None = field(default=None, repr=False, compare=False)
    # its type hints, evaluated where its code was written (a replica that unpickles the
    # function may lack the names they use); None: not read yet
    hints: dict[str, Any] | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, name: str, fn: Callable[..., Any], inputs: Iterable[str], options: BeeOptions) -> BeeSpec:
        """A spec from the decorator's (or the magic's) options, their forms made plain."""
        given: dict[str, Any] = dict(options)
        if "requirements" in given:
            given["requirements"] = tuple(given["requirements"])
        if "env" in given:
            given["env"] = dict(given["env"] or {})
        if given.get("max_replicas") is not None and "replicas" not in given:
            # autoscaled: it starts at its fewest, and with one at least (its code proven)
            given["replicas"] = max(1, given.get("min_replicas") or 1)
        return cls(name, fn, tuple(inputs), **given)

    def __post_init__(self) -> None:
        check_name("bee", self.name)
        if not callable(self.fn):
            raise TopologyError(f"bee {self.name!r}: {self.fn!r} is not callable")
        if not self.inputs:
            raise TopologyError(f"bee {self.name!r} needs at least one input")
        if len(set(self.inputs)) != len(self.inputs):
            raise TopologyError(f"bee {self.name!r} lists an input twice: {list(self.inputs)}")
        if self.join and len(self.inputs) < 2:
            raise TopologyError(f"bee {self.name!r}: join=True needs at least two inputs")
        self._check_replicas()
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise TopologyError(f"bee {self.name!r}: batch_size must be an integer >= 1")
        if self.batch_timeout_ms < 0:
            raise TopologyError(f"bee {self.name!r}: batch_timeout_ms must be >= 0")
        if isinstance(self.timeout, str):
            if self.timeout != AUTO:
                raise TopologyError(f"bee {self.name!r}: timeout must be seconds, {AUTO!r} or None")
        elif self.timeout is not None and not self.timeout > 0:
            raise TopologyError(f"bee {self.name!r}: timeout must be a positive number of seconds")
        if not isinstance(self.retries, int) or self.retries < 0:
            raise TopologyError(f"bee {self.name!r}: retries must be an integer >= 0")
        if self.join and self.batch_size > 1:
            raise TopologyError(f"bee {self.name!r}: a join bee cannot batch")

    @property
    def autoscaled(self) -> bool:
        """Its replicas follow its load (`max_replicas` given)."""
        return self.max_replicas is not None

    @property
    def replica_range(self) -> tuple[int, int]:
        """The fewest and the most replicas it may run (fixed: `replicas` both)."""
        if self.max_replicas is None:
            return self.replicas, self.replicas
        return (1 if self.min_replicas is None else self.min_replicas), self.max_replicas

    def _check_replicas(self) -> None:
        def whole(value: Any) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        name = self.name
        if not whole(self.replicas) or self.replicas < 0:
            raise TopologyError(f"bee {name!r}: replicas must be an integer >= 1")
        if self.max_replicas is None:
            if self.min_replicas is not None:
                raise TopologyError(f"bee {name!r}: min_replicas needs max_replicas (autoscaling)")
            if self.replicas < 1:
                raise TopologyError(f"bee {name!r}: replicas must be an integer >= 1")
        else:
            low = 1 if self.min_replicas is None else self.min_replicas
            if not whole(self.max_replicas) or not whole(low) or not 0 <= low <= self.max_replicas:
                raise TopologyError(
                    f"bee {name!r}: autoscaling needs integers 0 <= min_replicas <= max_replicas "
                    f"(got {self.min_replicas!r}, {self.max_replicas!r})"
                )
            if self.max_replicas < 1:
                raise TopologyError(f"bee {name!r}: max_replicas must be >= 1")
            if not low <= self.replicas <= self.max_replicas:
                raise TopologyError(
                    f"bee {name!r}: replicas={self.replicas} is outside min_replicas..max_replicas "
                    f"({low}..{self.max_replicas})"
                )
        if self.target_in_flight is not None and not self.target_in_flight > 0:
            raise TopologyError(f"bee {name!r}: target_in_flight must be positive")
        if not self.idle_s >= 0:
            raise TopologyError(f"bee {name!r}: idle_s must be >= 0 seconds")


class BeeOptions(TypedDict, total=False):
    """`@swarm.bee(...)`'s keyword options, typed: the option fields of `BeeSpec` (a test
    holds the two lists equal)."""

    join: bool
    replicas: int
    min_replicas: int | None
    max_replicas: int | None
    target_in_flight: float | None
    idle_s: float
    batch_size: int
    batch_timeout_ms: float
    requirements: Iterable[str]
    image: str | None
    env: Mapping[str, str] | None
    cpus: float | None
    memory: str | None
    gpus: int | None
    timeout: BeeTimeout
    retries: int
    fuse: bool


@dataclass
class Topology:
    """The swarm's graph: gateways and bees, edges given by the bees' inputs."""

    gateways: dict[str, GatewaySpec] = field(default_factory=dict)
    bees: dict[str, BeeSpec] = field(default_factory=dict)

    def add_gateway(self, spec: GatewaySpec) -> None:
        self.check_free(spec.name)
        self.gateways[spec.name] = spec

    def add_bee(self, spec: BeeSpec, *, replace: bool = False) -> None:
        if not (replace and spec.name in self.bees):
            self.check_free(spec.name)
        self.bees[spec.name] = spec

    def check_free(self, name: str) -> None:
        if name in self.gateways or name in self.bees:
            raise TopologyError(f"the name {name!r} is already used in this swarm")

    def consumers(self, producer: str) -> list[BeeSpec]:
        return [b for b in self.bees.values() if producer in b.inputs]

    def upstream(self, spec: BeeSpec) -> list[BeeSpec]:
        """The bees `spec` listens to (its gateways aside)."""
        return [self.bees[i] for i in spec.inputs if i in self.bees]

    def gateways_of(self, spec: BeeSpec) -> set[str]:
        """The gateways whose requests reach `spec` (through any path)."""
        found: set[str] = set()
        todo, seen = list(spec.inputs), set()
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            if name in self.gateways:
                found.add(name)
            elif name in self.bees:
                todo.extend(self.bees[name].inputs)
        return found

    def call_timeout(self, spec: BeeSpec) -> float | None:
        """Seconds a call of `spec` may run (None: no limit), its AUTO timeout resolved."""
        if spec.timeout != AUTO:
            return None if spec.timeout is None else float(spec.timeout)
        longest = max(
            (self.gateways[g].timeout for g in self.gateways_of(spec)), default=DEFAULT_GATEWAY_TIMEOUT
        )
        return longest * _AUTO_SHARE

    def is_sink(self, bee: str) -> bool:
        return not self.consumers(bee)

    def order(self) -> list[str]:
        """Producers before consumers; raises TopologyError on a cycle."""
        graph = {b.name: set(b.inputs) for b in self.bees.values()}
        try:
            return list(TopologicalSorter(graph).static_order())
        except CycleError as exc:
            raise TopologyError(f"the swarm has a cycle: {' -> '.join(exc.args[1])}") from None

    def validate(self) -> None:
        if not self.gateways:
            raise TopologyError("the swarm has no gateway: add one with swarm.gateway(name)")
        for bee in self.bees.values():
            for src in bee.inputs:
                if src not in self.gateways and src not in self.bees:
                    raise TopologyError(
                        f"bee {bee.name!r} listens to {src!r}, which is neither a gateway "
                        "nor a bee of this swarm"
                    )
        self.order()
