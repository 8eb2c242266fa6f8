"""Notebook magics: argument parsing only; everything else is the Python API.

`%swarm`, `%gateway`, `%%bee`, `%send`/`%%send`, `%bee logs`. One swarm is current
per notebook (named after the notebook unless `%swarm new` names one); it starts
when its first bee is deployed and every later `%%bee` cell deploys or redeploys.
"""

from __future__ import annotations

import ast
import json
import os
import re
from typing import Any

from IPython.core.magic import Magics, line_cell_magic, line_magic, magics_class
from IPython.core.magic_arguments import argument, magic_arguments, parse_argstring
from IPython.display import Pretty, display

from ..model.errors import BytewaxNBError, TopologyError
from ..model.protocol import Runtime
from ..model.settings import secret_from
from ..model.table import status_table
from ..swarm import Swarm
from ..widget import SwarmWidget
from .beeargs import bee_arguments, options_from

__all__ = ["SwarmMagics", "current_swarm", "live_output"]

_CURRENT: dict[str, Any] = {}  # "swarm": the current Swarm, "live": the LiveOutput


def current_swarm() -> Swarm | None:
    """The swarm the magics of this kernel work on, if any."""
    swarm: Swarm | None = _CURRENT.get("swarm")
    return swarm


def live_output() -> Any:
    """The live output panels of this kernel's magics (None outside a kernel)."""
    return _CURRENT.get("live")


def _notebook_swarm_name() -> str:
    path = os.environ.get("JPY_SESSION_NAME", "")
    stem = os.path.splitext(os.path.basename(path))[0] if path else "notebook"
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", stem).strip("-.") or "notebook"
    return name if name[0].isalnum() else f"nb-{name}"


def _in_kernel(shell: Any) -> bool:
    return getattr(shell, "kernel", None) is not None


def _cell_number(shell: Any) -> int:
    """The number of the cell running this magic: the one IPython compiled its caller
    under (IPython 9 has counted the next cell by then, IPython 8 not yet)."""
    import re
    import sys

    frame = sys._getframe(1)
    while frame is not None:
        said = shell.compile.format_code_name(frame.f_code.co_filename)
        if said:
            found = re.fullmatch(r"In\[(\d+)\]", said[1])
            if found:
                return int(found.group(1))
        frame = frame.f_back  # type: ignore[assignment]
    return int(shell.execution_count)


@magics_class
class SwarmMagics(Magics):
    """The bytewax-nb magics; state lives in the current `Swarm`."""

    def __init__(self, shell: Any) -> None:
        super().__init__(shell)
        self._live: Any = None
        if _in_kernel(shell):
            from .livelog import LiveOutput

            self._live = LiveOutput()
            _CURRENT["live"] = self._live

    # -- the current swarm -------------------------------------------------------------

    def _new(self, name: str, runtime: str, fuse: bool = True) -> Swarm:
        old = current_swarm()
        if old is not None and old.running:
            old.stop()
        on_log = self._live.on_log if self._live else Swarm.default_log
        swarm = Swarm(name, runtime=runtime, on_log=on_log, fuse=fuse)
        _CURRENT["swarm"] = swarm
        return swarm

    def _swarm(self) -> Swarm:
        return current_swarm() or self._new(_notebook_swarm_name(), Runtime.AUTO)

    # -- %swarm ------------------------------------------------------------------------

    @magic_arguments()
    @argument("action", nargs="?", default="", help="new | attach | status | stop (nothing: the live graph)")
    @argument("name", nargs="?", help="the new swarm's name, or the stack to attach to")
    @argument("--runtime", default=Runtime.AUTO, choices=[str(r) for r in Runtime])
    @argument("--no-fuse", action="store_true", help="every bee in processes of its own (no fused chains)")
    @line_magic
    def swarm(self, line: str) -> Any:
        """%swarm new NAME [--runtime R] [--no-fuse] | %swarm attach STACK | %swarm | %swarm status|stop"""
        args = parse_argstring(self.swarm, line)
        if args.action == "attach":
            if not args.name:
                raise BytewaxNBError("%swarm attach needs a stack's name: %swarm attach NAME")
            old = current_swarm()
            if old is not None and old.running:
                old.stop()
            swarm = Swarm.attach(args.name)
            _CURRENT["swarm"] = swarm
            print(f"attached to stack {swarm.name!r}: {', '.join(swarm.topology.bees)}")
            return None
        if args.action == "new":
            if not args.name:
                raise BytewaxNBError("%swarm new needs a name: %swarm new NAME")
            swarm = self._new(args.name, args.runtime, fuse=not args.no_fuse)
            print(f"swarm {swarm.name!r} (runtime {swarm.runtime})")
            return None
        swarm = self._swarm()
        if args.action == "":
            return SwarmWidget.of(swarm)
        if args.action == "status":
            st = swarm.status() if swarm.running else self._declared(swarm)
            display(Pretty(status_table(st, swarm.runtime)))
            return None
        if args.action == "stop":
            attached = swarm.runtime == "stack"
            swarm.stop()
            print(
                f"detached from stack {swarm.name!r} (it serves on)"
                if attached
                else f"swarm {swarm.name!r} stopped"
            )
            return None
        raise BytewaxNBError(f"unknown %swarm action {args.action!r}: use new, attach, status or stop")

    @staticmethod
    def _declared(swarm: Swarm) -> dict[str, Any]:
        """What a swarm that is not running would show: its declared graph."""
        topo = swarm.topology
        bees = {
            n: {"input": list(b.inputs), "join": b.join, "wanted": b.replicas} for n, b in topo.bees.items()
        }
        return {
            "swarm": swarm.name,
            "running": False,
            "gateways": {g: {} for g in topo.gateways},
            "bees": bees,
        }

    # -- %gateway ----------------------------------------------------------------------

    @magic_arguments()
    @argument("name")
    @argument("--port", type=int, default=0)
    @argument("--host", default="127.0.0.1")
    @argument("--timeout", type=float, default=30.0)
    @argument("--token-env", default=None, help="read the bearer token from this variable")
    @argument("--max-body", type=int, default=None, help="body limit in bytes")
    @argument("--max-in-flight", type=int, default=None, help="unanswered requests before 503")
    @argument("--tracebacks", action="store_true", help="bees' tracebacks in 500 bodies")
    @argument("--grpc-port", type=int, default=None, help="serve it over OIP v2 gRPC on this port too")
    @argument("--cors", default=None, help='an origin (or "*") whose browser pages may call it')
    @line_magic
    def gateway(self, line: str) -> None:
        """%gateway NAME [--port P] [--timeout S] [--token-env VAR] [--max-in-flight N] [--tracebacks]
        [--grpc-port P] [--cors ORIGIN]"""
        args = parse_argstring(self.gateway, line)
        token = None
        if args.token_env:
            token = secret_from(args.token_env)
        swarm = self._swarm()
        extra: dict[str, Any] = {"max_body": args.max_body} if args.max_body else {}
        if args.max_in_flight:
            extra["max_in_flight"] = args.max_in_flight
        swarm.gateway(
            args.name,
            host=args.host,
            port=args.port,
            timeout=args.timeout,
            token=token,
            tracebacks=args.tracebacks,
            grpc_port=args.grpc_port,
            cors=args.cors,
            **extra,
        )
        where = f": {swarm.url(args.name)}" if swarm.running else ""
        print(f"gateway {args.name!r}{where}")

    # -- %%bee and %bee logs -----------------------------------------------------------

    @magic_arguments()
    @argument("name", nargs="*", help="the bee's name (or `logs NAME` as a line magic)")
    @argument("--input", nargs="+", default=None, help="the producers this bee listens to")
    @bee_arguments
    @line_cell_magic
    def bee(self, line: str, cell: str | None = None) -> Any:
        """%%bee [NAME] --input SRC [SRC ...] [options]: run the cell, deploy its function.

        As a line magic: %bee logs NAME, %bee rm NAME.
        """
        args = parse_argstring(self.bee, line)
        if cell is None:
            if len(args.name) == 2 and args.name[0] == "logs":
                lines = self._swarm().logs(args.name[1])
                print("\n".join(lines) if lines else f"(no output from {args.name[1]!r} yet)")
                return None
            if len(args.name) == 2 and args.name[0] == "rm":
                self._swarm().remove(args.name[1])
                print(f"bee {args.name[1]!r} removed")
                return None
            raise BytewaxNBError(
                "as a line magic: %bee logs NAME or %bee rm NAME; to define a bee use the %%bee cell magic"
            )
        if not args.input:
            raise BytewaxNBError("%%bee needs --input: the gateway or bees it listens to")
        if len(args.name) > 1:
            raise BytewaxNBError(f"%%bee takes one name, got {args.name}")
        fn = self._run_cell(cell, args.name[0] if args.name else None)
        name = args.name[0] if args.name else fn.__name__
        options = options_from(args)
        swarm = self._swarm()
        if self._live is not None:
            self._live.attach(name)
        before = swarm.topology.bees.get(name)
        try:
            swarm.bee(fn, input=args.input, name=name, **options)
            if not swarm.running and swarm.topology.gateways:
                swarm.start()
        except BaseException:
            if not swarm.running:  # a refused cell leaves the declared swarm as it was
                if before is None:
                    swarm.topology.bees.pop(name, None)
                else:
                    swarm.topology.bees[name] = before
            raise
        if swarm.running:
            n = swarm.topology.bees[name].replicas
            replicas = "replica" if n == 1 else "replicas"
            print(f"bee {name!r} serving: {n} {replicas}, input {', '.join(args.input)}")
        else:
            print(f"bee {name!r} registered; the swarm starts once it has a gateway (%gateway NAME)")
        return None

    def _run_cell(self, cell: str, name: str | None) -> Any:
        """Run the cell in the user's namespace (it stays usable there); return the bee."""
        shell: Any = self.shell
        code = shell.transform_cell(cell)
        try:
            tree = ast.parse(code)
        except SyntaxError as exc:
            raise BytewaxNBError(f"the %%bee cell does not parse: {exc}") from None
        defined = [n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        if not defined:
            raise BytewaxNBError("a %%bee cell must define a function (def ...)")
        # a named file in linecache: tracebacks, here and in replicas, show these lines,
        # under the number IPython gave this cell (`Cell In[3]`)
        filename = shell.compile.cache(code, _cell_number(shell), raw_code=cell)
        exec(compile(code, filename, "exec"), shell.user_ns)
        if len(defined) == 1:
            return shell.user_ns[defined[0]]
        if name in defined:
            return shell.user_ns[name]
        raise BytewaxNBError(
            f"this cell defines several functions ({', '.join(defined)}): "
            "name the bee's function with %%bee NAME"
        )

    # -- %send -------------------------------------------------------------------------

    @line_cell_magic
    def send(self, line: str, cell: str | None = None) -> Any:
        """%send [--stream] GATEWAY JSON, or %%send [--stream] GATEWAY with the JSON as the
        cell; `--stream` prints each chunk of a streamed answer as it comes."""
        line = line.strip()
        streamed = line.startswith("--stream")
        if streamed:
            line = line[len("--stream") :].strip()
        gateway, _, rest = line.partition(" ")
        if not gateway:
            raise BytewaxNBError(
                "usage: %send [--stream] GATEWAY JSON  or  %%send [--stream] GATEWAY (JSON in the cell)"
            )
        text = cell if cell is not None else rest
        try:
            payload = json.loads(text)
        except ValueError as exc:
            raise BytewaxNBError(f"the payload is not JSON: {exc}") from None
        swarm = self._swarm()
        if not swarm.running:
            if not swarm.topology.gateways:
                raise TopologyError("the swarm has no gateway yet: %gateway NAME")
            swarm.start()
        if streamed:
            count = 0
            for chunk in swarm.stream(gateway, payload):
                print(json.dumps(chunk), flush=True)
                count += 1
            print(f"({count} chunk{'s' if count != 1 else ''})")
            return None
        answer = swarm.call(gateway, payload)
        print(f"request {answer.request_id} answered in {answer.seconds * 1000:.1f} ms")
        return answer.value


def load(shell: Any) -> None:
    shell.register_magics(SwarmMagics(shell))
