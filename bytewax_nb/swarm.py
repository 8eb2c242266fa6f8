"""`Swarm`: declare gateways and bees, start them, talk to them, stop them."""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import importlib.util
import signal
import sys
import threading
import warnings
import weakref
from collections.abc import Callable, Iterable, Iterator
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, Unpack

from . import client
from .bus.wire import TRACEBACK_HEADER
from .devswarm import run_in_process
from .engine import state
from .engine.declared import Declared
from .engine.reports import gateway_url
from .engine.shipping import check_picklable
from .engine.supervisor import Supervisor
from .model.errors import BytewaxNBError, StartError, TopologyError
from .model.promises import bee_contract
from .model.protocol import Runtime, SwarmStatus
from .model.settings import DECLARE
from .model.spec import (
    DEFAULT_GATEWAY_TIMEOUT,
    DEFAULT_MAX_BODY,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_READ_TIMEOUT,
    BeeOptions,
    BeeSpec,
    GatewaySpec,
    Topology,
    check_name,
)
from .model.tracing import TraceRecord
from .runtime.choose import make_launcher, resolve, runtime_unsupported
from .runtime.progress import BuildProgress

if TYPE_CHECKING:
    from .stack.deploy import Deployment
    from .widget import SwarmWidget

__all__ = ["Swarm"]

F = TypeVar("F", bound=Callable[..., Any])
_RUNNING: weakref.WeakSet[Swarm] = weakref.WeakSet()  # started here (or declared)
_MADE: weakref.WeakSet[Swarm] = weakref.WeakSet()  # every swarm made here: what deploy may read


class Runner(Protocol):
    """What runs a started swarm: its supervisor, a deployed stack it is attached to, or
    (in a kernel that only reads the notebook) its declaration."""

    ports: dict[str, int]  # gateway -> the port it listens on
    traceback_token: str

    @property
    def stopped(self) -> bool: ...

    @property
    def unprocessed(self) -> int: ...

    def deploy(self, spec: BeeSpec, timeout: float) -> None: ...

    def scale(self, name: str, replicas: int, timeout: float) -> None: ...

    def remove(self, name: str, timeout: float) -> None: ...

    def add_gateway(self, spec: GatewaySpec, timeout: float) -> None: ...

    def status(self, fresh: float = 0.5) -> SwarmStatus: ...

    def log_lines(self, name: str) -> list[str]: ...

    def stop(self, drain_timeout: float | None = None) -> None: ...


_START_TIMEOUT = 60.0


def _print_line(role: str, name: str, replica: int, line: str) -> None:
    prefix = name if role == "bee" else "hub"
    print(f"[{prefix}] {line}", file=sys.stdout, flush=True)


class Swarm:
    """A named DAG of gateways and bees, run by one runtime.

    Declaring is cheap and local; `start()` launches every replica and returns once
    requests can flow. Bees added with `@swarm.bee` stay ordinary functions.
    Consecutive bees of a chain with the same runtime settings share their processes
    (a message passes between them as a call); `fuse=False` gives every bee its own.
    """

    default_log = staticmethod(_print_line)

    def __init__(
        self,
        name: str,
        runtime: str = Runtime.AUTO,
        *,
        on_log: Callable[[str, str, int, str], None] | None = _print_line,
        fuse: bool = True,
    ) -> None:
        self.name = check_name("swarm", name)
        self.fuse = fuse
        if runtime not in tuple(Runtime):
            raise ValueError(
                f"unknown runtime {runtime!r}: use one of {', '.join(map(repr, map(str, Runtime)))}"
            )
        self.runtime = str(runtime)
        self._kind: Runtime | None = None
        self.on_log = on_log
        self._topology = Topology()
        self._supervisor: Runner | None = None
        # edits read a spec and write a changed one: the widget's thread and the user's
        # cells must not interleave (a connect would bring back code a %%bee replaced)
        self._edit_lock = threading.RLock()
        _MADE.add(self)

    # -- declaring -------------------------------------------------------------------

    def gateway(
        self,
        name: str,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        timeout: float = DEFAULT_GATEWAY_TIMEOUT,
        token: str | None = None,
        max_body: int = DEFAULT_MAX_BODY,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        tracebacks: bool = False,
        grpc_port: int | None = None,
        cors: str | None = None,
        tracing: bool = False,
    ) -> GatewaySpec:
        """Add an HTTP gateway; port 0 picks a free one, `token` requires a bearer token.

        Past `max_in_flight` unanswered requests it answers 503 with Retry-After; a client
        gets `read_timeout` seconds for its headers and again for its body. Bees'
        tracebacks go into 500 bodies only with `tracebacks=True` (`swarm.request` always
        gets them). `grpc_port` serves it over the Open Inference Protocol's gRPC
        service too (`pip install 'bytewax-nb[grpc]'`); `cors` lets browser pages of that
        origin (or "*": any) call it. `tracing` records every request's path (the
        slowest and failed are kept: `swarm.traces()`; exported with the otel extra). On
        a running swarm the hub starts serving it at once.
        """
        if grpc_port is not None and importlib.util.find_spec("grpc") is None:
            raise TopologyError(f"gateway {name!r}: grpc_port needs gRPC: pip install 'bytewax-nb[grpc]'")
        spec = GatewaySpec(
            name,
            host,
            port,
            timeout,
            token,
            max_body,
            max_in_flight,
            read_timeout,
            tracebacks,
            grpc_port,
            cors,
            tracing,
        )
        supervisor = self._live()
        if supervisor is None:
            self._topology.add_gateway(spec)
        else:
            self._topology.check_free(spec.name)
            supervisor.add_gateway(spec, _START_TIMEOUT)
        return spec

    def bee(
        self,
        fn: F | None = None,
        *,
        input: str | Iterable[str],
        name: str | None = None,
        **options: Unpack[BeeOptions],
    ) -> Any:
        """Register a bee (decorator); the function is returned unchanged.

        On a running swarm this deploys the bee at once; registering a name again
        redeploys it: the new replicas take over before the old ones stop, and no
        request is lost. Its options (`replicas`, `timeout`, `retries`, `fuse`, ...) are
        `BeeSpec`'s, each with its meaning and default in the docs' options table: a
        call running past `timeout` seconds is answered with BeeTimeout and its replica
        restarted ("auto": five sixths of the longest timeout of the gateways that reach
        the bee, so a caller hears it before its gateway gives up); a message whose
        replica died while it held it is sent again up to `retries` times; `fuse=False`
        keeps the bee in processes of its own.
        """

        def register(f: F) -> F:
            inputs = (input,) if isinstance(input, str) else tuple(input)
            self.add_bee(BeeSpec.of(name or f.__name__, f, inputs, options))
            return f

        return register(fn) if fn is not None else register

    def add_bee(self, spec: BeeSpec) -> None:
        """Add a bee, or replace the one of its name; checked against the whole graph
        before anything changes (what `@swarm.bee` and the widget's edits do)."""
        with self._edit_lock:
            unsupported = runtime_unsupported(self.kind, spec)
            if unsupported:
                raise TopologyError(
                    f"bee {spec.name!r}: the {self.kind} runtime cannot apply {', '.join(unsupported)}; "
                    "use runtime='docker'"
                )
            trial = Topology(dict(self._topology.gateways), dict(self._topology.bees))
            trial.add_bee(spec, replace=True)
            bee_contract(spec)  # its hints read here, where the names they use are
            check_picklable(spec.name, spec.fn)  # in the user's cell, before anything launches
            supervisor = self._live()
            if supervisor is None:
                trial.order()  # cycles are refused now; unknown inputs at start()
                self._topology.add_bee(spec, replace=True)
                return
            trial.validate()
            supervisor.deploy(spec, _START_TIMEOUT)  # builds what its processes need first

    def deploy(
        self,
        stack: str | BeeSpec,
        *,
        encrypt_overlay: bool = True,
        registry: str | None = None,
        timeout: float = 300.0,
        keep_on_failure: bool = False,
    ) -> Deployment | None:
        """Deploy the swarm as `stack` on the Docker Swarm mode cluster the Docker client
        points at (images built, and pushed to `registry` if given; a changed bee rolled
        over, the rest untouched); returns the `Deployment` once every gateway answers.
        A new stack that cannot start is removed again unless `keep_on_failure`.

        Given a `BeeSpec` (the old meaning of this name): `add_bee`, with a
        DeprecationWarning."""
        if isinstance(stack, BeeSpec):
            warnings.warn(
                "Swarm.deploy(spec) is Swarm.add_bee(spec) now; Swarm.deploy(NAME) deploys a stack",
                DeprecationWarning,
                stacklevel=2,
            )
            self.add_bee(stack)
            return None
        from .stack.deploy import deploy

        with self._edit_lock:
            topology = Topology(dict(self._topology.gateways), dict(self._topology.bees))
        return deploy(
            stack,
            topology,
            encrypt_overlay=encrypt_overlay,
            registry=registry,
            timeout=timeout,
            keep_on_failure=keep_on_failure,
            progress=print,
        )

    @classmethod
    def attach(cls, stack: str, *, token: str | None = None) -> Swarm:
        """A swarm deployed as `stack`: status, the widget, logs, requests and scaling act
        on the stack (its code is changed by deploying again). `token`: the gateways'."""
        from .stack.attach import StackLink

        link = StackLink(stack, token)
        swarm = cls(stack, runtime=Runtime.DOCKER, on_log=None, fuse=False)
        swarm._topology = link.topology
        swarm._supervisor = link
        swarm._kind = Runtime.DOCKER
        swarm.runtime = "stack"
        return swarm

    # -- editing the graph (also what the widget's gestures call) ---------------------

    def _bee_spec(self, name: str) -> BeeSpec:
        spec = self._topology.bees.get(name)
        if spec is None:
            if name in self._topology.gateways:
                raise TopologyError(f"gateway {name!r} has no inputs: only bees listen to producers")
            raise TopologyError(f"swarm {self.name!r} has no bee {name!r}")
        return spec

    def connect(self, source: str, bee: str) -> None:
        """Make `bee` also listen to `source` (a gateway or a bee); only that bee restarts."""
        with self._edit_lock:
            self._connect(source, bee)

    def _connect(self, source: str, bee: str) -> None:
        spec = self._bee_spec(bee)
        if source in spec.inputs:
            raise TopologyError(f"bee {bee!r} already listens to {source!r}")
        if source not in self._topology.gateways and source not in self._topology.bees:
            raise TopologyError(f"swarm {self.name!r} has no gateway or bee {source!r}")
        self.add_bee(dataclasses.replace(spec, inputs=(*spec.inputs, source)))

    def disconnect(self, source: str, bee: str) -> None:
        """Make `bee` stop listening to `source`; a bee keeps at least one input (a join two)."""
        with self._edit_lock:
            self._disconnect(source, bee)

    def _disconnect(self, source: str, bee: str) -> None:
        spec = self._bee_spec(bee)
        if source not in spec.inputs:
            raise TopologyError(f"bee {bee!r} does not listen to {source!r}")
        self.add_bee(dataclasses.replace(spec, inputs=tuple(i for i in spec.inputs if i != source)))

    def scale(self, bee: str, replicas: int) -> None:
        """Run `replicas` replicas of a bee: new ones start, surplus ones drain and stop."""
        with self._edit_lock:
            self._scale(bee, replicas)

    def _scale(self, bee: str, replicas: int) -> None:
        spec = self._bee_spec(bee)
        new = dataclasses.replace(spec, replicas=replicas)  # checks the count
        supervisor = self._live()
        if supervisor is None:
            self._topology.bees[bee] = new
        elif replicas != spec.replicas:
            supervisor.scale(bee, replicas, _START_TIMEOUT)

    def remove(self, name: str) -> None:
        """Take a bee out of the swarm. On a running swarm its replicas ask for nothing
        more, finish what they hold and stop; the other bees serve on untouched."""
        with self._edit_lock:
            self._bee_spec(name)
            listeners = sorted(b.name for b in self._topology.consumers(name))
            if listeners:
                raise TopologyError(
                    f"bee {name!r} cannot be removed: {', '.join(map(repr, listeners))} listen to it "
                    "(remove them, or disconnect them from it, first)"
                )
            supervisor = self._live()
            if supervisor is None:
                del self._topology.bees[name]
            else:
                supervisor.remove(name, _START_TIMEOUT)

    @property
    def kind(self) -> Runtime:
        """The runtime in use: "process" or "docker" ("auto" decides once, and says so)."""
        if self._kind is None:
            self._kind, why = resolve(self.runtime)
            if self.runtime == Runtime.AUTO:
                print(f"bytewax-nb: runtime auto -> {self._kind} ({why})", flush=True)
        return self._kind

    @property
    def topology(self) -> Topology:
        return self._topology

    # -- running ---------------------------------------------------------------------

    def start(self, timeout: float = _START_TIMEOUT) -> Swarm:
        """Launch everything; returns when every replica and gateway is ready.

        In a kernel that `bytewax-nb deploy|export` runs to read a notebook, nothing is
        launched: the swarm is only declared (see `engine.declared`)."""
        if self._live() is not None:
            return self
        self._topology.validate()
        if DECLARE.get() == "1":
            self._supervisor = Declared(self.name, self._topology)
            _RUNNING.add(self)
            return self
        # the command line and the records find a swarm by its name: two of one name
        # could be told apart by nobody
        running = [r for r in state.read_all() if r.swarm == self.name and state.owner_alive(r)]
        if running:
            raise StartError(
                f"a swarm named {self.name!r} already runs (owner pid {running[0].owner}): stop it "
                f"(`bytewax-nb stop {self.name}`, or its owner's swarm.stop()) or pick another name"
            )
        launcher = make_launcher(self.kind, self.name, BuildProgress(self.name))
        supervisor = Supervisor(self.name, self._topology, launcher, self.on_log, fuse=self.fuse)
        self._supervisor = supervisor
        _RUNNING.add(self)
        _install_exit_hooks()
        try:
            supervisor.prepare()  # builds happen here, before anything starts
            supervisor.start(timeout)
        except BaseException:
            self.stop(drain_timeout=0)
            raise
        return self

    def stop(self, drain_timeout: float | None = None) -> None:
        """Let in-flight requests finish (bounded), then stop every process and socket."""
        supervisor, self._supervisor = self._supervisor, None
        _RUNNING.discard(self)
        if supervisor is not None:
            supervisor.stop(drain_timeout)  # an attached stack: detach only
            if supervisor.unprocessed:
                print(
                    f"bytewax-nb: swarm {self.name!r} stopped with {supervisor.unprocessed} accepted "
                    "submit(s) that no bee had taken yet",
                    file=sys.stderr,
                    flush=True,
                )

    @property
    def running(self) -> bool:
        """Its processes run (here, or as an attached stack); a declared swarm's do not."""
        return self._live() is not None and not isinstance(self._supervisor, Declared)

    def _live(self) -> Runner | None:
        """The supervisor, unless it was stopped (by `bytewax-nb stop`, say)."""
        if self._supervisor is not None and self._supervisor.stopped:
            self.stop()
        return self._supervisor

    def _require(self, what: str) -> Runner:
        supervisor = self._live()
        if supervisor is None:
            raise BytewaxNBError(f"swarm {self.name!r} is not running: call start() first")
        if isinstance(supervisor, Declared):
            raise supervisor.not_here(what)
        return supervisor

    def __enter__(self) -> Swarm:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- talking ---------------------------------------------------------------------

    def _gateway(self, gateway: str | None) -> GatewaySpec:
        if gateway is None:
            if len(self._topology.gateways) != 1:
                raise BytewaxNBError("this swarm has several gateways: name one")
            return next(iter(self._topology.gateways.values()))
        try:
            return self._topology.gateways[gateway]
        except KeyError:
            raise BytewaxNBError(f"swarm {self.name!r} has no gateway {gateway!r}") from None

    def url(self, gateway: str | None = None) -> str:
        """The gateway's endpoint, e.g. http://127.0.0.1:PORT/gateways/NAME."""
        spec = self._gateway(gateway)
        port = self._require("its URL").ports.get(spec.name)
        if port is None:
            raise BytewaxNBError(f"gateway {spec.name!r} has no port yet")
        return gateway_url(spec, port)

    def request(self, gateway: str | None, payload: Any, *, timeout: float | None = None) -> Any:
        """Send `payload` over HTTP and return the response (RemoteError if a bee raised)."""
        return self.call(gateway, payload, timeout=timeout).value

    def call(self, gateway: str | None, payload: Any, *, timeout: float | None = None) -> client.Answer:
        """`request`, with the request id and the time it took (what `%send` prints).

        As the owner it shows the gateways a token derived from the swarm's key, so bees'
        tracebacks come back to it (and to no plain HTTP caller)."""
        spec = self._gateway(gateway)
        wait = timeout if timeout is not None else spec.timeout + 5
        owner = {TRACEBACK_HEADER: self._require("a request").traceback_token}
        return client.call(self.url(spec.name), payload, token=spec.token, timeout=wait, headers=owner)

    def trace(self, gateway: str | None, payload: Any, *, timeout: float | None = None) -> client.Traced:
        """Send `payload` as `request` does, with its path traced whatever the gateway's
        `tracing`: its answer (or the error it met) and where its time went, hop by hop
        (`print(t)` draws the waterfall)."""
        spec = self._gateway(gateway)
        wait = timeout if timeout is not None else spec.timeout + 5
        owner = {TRACEBACK_HEADER: self._require("a request").traceback_token}
        url = self.url(spec.name)
        base = url.rsplit("/gateways/", 1)[0]
        return client.traced(url, base, payload, token=spec.token, timeout=wait, headers=owner)

    def traces(self) -> dict[str, list[TraceRecord]]:
        """The traces the gateways keep: the slowest requests of the last minutes and the
        last failed ones (every request of a gateway with `tracing=True`; see `trace`)."""
        return client.kept((self.url(g.name), g.token) for g in self._topology.gateways.values())

    def stream(self, gateway: str | None, payload: Any, *, timeout: float | None = None) -> Iterator[Any]:
        """Send `payload` over HTTP and yield the answer's chunks as they are made (a bee
        that is a generator, or calls `ctx.stream`, streams; a plain answer is one chunk).
        RemoteError if a bee raised, mid-stream too; `timeout` bounds each chunk's wait."""
        spec = self._gateway(gateway)
        wait = timeout if timeout is not None else spec.timeout + 5
        owner = {TRACEBACK_HEADER: self._require("a request").traceback_token}
        yield from client.stream(self.url(spec.name), payload, token=spec.token, timeout=wait, headers=owner)

    def submit(self, gateway: str | None, payload: Any) -> str:
        """Send without waiting for the answer; returns the request id."""
        spec = self._gateway(gateway)
        return client.submit(self.url(spec.name), payload, token=spec.token)

    def test(self, gateway: str | None, payload: Any) -> Any:
        """Run the whole DAG in this process (no sockets) and return the response."""
        return run_in_process(self._topology, self._gateway(gateway).name, payload)

    # -- watching --------------------------------------------------------------------

    def status(self, fresh: float = 0.5) -> SwarmStatus:
        """Gateways and bees with readiness and counters (asked of every replica, waiting
        up to `fresh` seconds for their answers)."""
        supervisor = self._live()
        if supervisor is None:
            return SwarmStatus(swarm=self.name, ready=False, running=False)
        status = supervisor.status(fresh)
        status["running"] = True
        return status

    def logs(self, bee: str) -> list[str]:
        """Every recent output line of a bee's replicas, crashed ones included ("hub": the gateways')."""
        if bee not in self._topology.bees and bee != "hub":
            raise BytewaxNBError(f"swarm {self.name!r} has no bee {bee!r}")
        return self._supervisor.log_lines(bee) if self._supervisor else []

    def widget(self) -> SwarmWidget:
        """The live graph of this swarm (one per swarm: display it as often as you like);
        what `%swarm` shows."""
        from .widget import SwarmWidget

        return SwarmWidget.of(self)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return (
            f"<Swarm {self.name!r} {state}: {len(self._topology.gateways)} gateway(s), "
            f"{len(self._topology.bees)} bee(s), runtime={self.runtime!r}>"
        )


# -- stopping at exit --------------------------------------------------------------

_hooks_installed = False


def stop_all() -> None:
    """Stop every swarm this process runs (at exit, or `bytewax-nb run` on SIGTERM)."""
    for swarm in list(_RUNNING):
        with contextlib.suppress(Exception):  # best effort on the way out
            swarm.stop(drain_timeout=2)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds, so atexit stops the swarms


def _install_exit_hooks() -> None:
    global _hooks_installed
    if _hooks_installed:
        return
    _hooks_installed = True
    atexit.register(stop_all)
    in_main = threading.current_thread() is threading.main_thread()
    if in_main and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)
