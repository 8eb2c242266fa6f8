"""The `bytewax-nb` command: run a notebook headless, and watch or stop swarms.

Swarms started anywhere on this machine (a kernel, a script, `bytewax-nb run`) leave
a record under the user's state directory (see `state`); the commands read those.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.request
from typing import Any

from . import __version__, client, state
from .errors import BytewaxNBError

__all__ = ["main"]


def _alive_records(swarm: str | None = None) -> list[state.Record]:
    return [r for r in state.read_all() if state.owner_alive(r) and (swarm is None or r.swarm == swarm)]


def _one(swarm: str) -> state.Record:
    found = _alive_records(swarm)
    if not found:
        raise BytewaxNBError(f"no running swarm named {swarm!r} (see `bytewax-nb list`)")
    if len(found) > 1:
        owners = ", ".join(str(r.owner) for r in found)
        raise BytewaxNBError(f"several swarms named {swarm!r} run (owners {owners})")
    return found[0]


def _token(var: str | None) -> str | None:
    if not var:
        return None
    value = os.environ.get(var)
    if not value:
        raise BytewaxNBError(f"the variable {var} is not set (or empty)")
    return value


# -- commands ------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    records = state.read_all()
    if not records:
        print("no swarms")
        return 0
    for r in records:
        alive = "running" if state.owner_alive(r) else "owner gone (bytewax-nb gc cleans up)"
        print(f"{r.swarm}  owner {r.owner}  {r.runtime}  {alive}")
        for name, url in r.gateways.items():
            print(f"  gateway {name}  {url}")
        for name, inputs in r.bees.items():
            print(f"  bee {name}  <- {', '.join(inputs)}")
    return 0


def _ask(record: state.Record, cmd: str, timeout: float = 10.0) -> dict[str, Any]:
    """One request over the owner's local control socket."""
    import zmq

    ctx = zmq.Context()
    try:
        sock = ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(record.control)
        sock.send(json.dumps({"cmd": cmd}).encode())
        if not sock.poll(int(timeout * 1000)):
            raise BytewaxNBError(f"swarm {record.swarm!r} (owner {record.owner}) did not answer {cmd!r}")
        reply: dict[str, Any] = json.loads(sock.recv())
    finally:
        ctx.destroy(linger=0)
    if not reply.get("ok"):
        raise BytewaxNBError(f"swarm {record.swarm!r}: {reply.get('error')}")
    return reply


def cmd_status(args: argparse.Namespace) -> int:
    from .table import status_table

    r = _one(args.swarm)
    reply = _ask(r, "status")
    print(status_table(reply["status"], reply["runtime"]))
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    r = _one(args.swarm)
    path = r.log_dir / f"{args.bee}.log"
    if not path.exists():
        if args.bee not in r.bees and args.bee != "hub":
            raise BytewaxNBError(f"swarm {args.swarm!r} has no bee {args.bee!r}")
        print(f"(no output from {args.bee!r} yet)")
        return 0
    lines = path.read_text().splitlines()
    print("\n".join(lines[-args.lines :] if args.lines else lines))
    return 0


def _find_url(gateway: str, swarm: str | None) -> str:
    found = [(r, r.gateways[gateway]) for r in _alive_records(swarm) if gateway in r.gateways]
    if not found:
        raise BytewaxNBError(f"no running swarm has a gateway {gateway!r} (see `bytewax-nb list`)")
    if len(found) > 1:
        raise BytewaxNBError(
            f"several swarms have a gateway {gateway!r} ({', '.join(r.swarm for r, _ in found)}): use --swarm"
        )
    return found[0][1]


def _wait_serving(url: str, deadline: float) -> None:
    """Until the gateway's swarm serves (its `/healthz` says so), bounded by `deadline`."""
    health = url.split("/gateways/", 1)[0] + "/healthz"
    said = False
    while True:
        try:
            with urllib.request.urlopen(health, timeout=2) as r:
                serving = bool(json.loads(r.read()).get("serving"))
        except urllib.error.HTTPError as err:  # 503 while a bee has no ready replica
            serving = bool(json.loads(err.read() or b"{}").get("serving"))
        except (OSError, ValueError):
            serving = False  # not listening yet, or restarting
        if serving or time.monotonic() >= deadline:
            return  # past the deadline the request itself says what is wrong
        if not said:
            print(f"waiting for {url} to serve", file=sys.stderr, flush=True)
            said = True
        time.sleep(0.1)  # polling another process's start-up, bounded by --wait


def cmd_send(args: argparse.Namespace) -> int:
    try:
        payload = json.loads(args.json)
    except ValueError as exc:
        raise BytewaxNBError(f"the payload is not JSON: {exc}") from None
    url = args.url
    deadline = time.monotonic() + args.wait
    while url is None:
        try:
            url = _find_url(args.gateway, args.swarm)
        except BytewaxNBError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(0.1)  # polling another process's start-up, bounded by --wait
    if args.wait:
        _wait_serving(url, deadline)
    t = time.perf_counter()
    status, body, rid = client.post(url, payload, token=_token(args.token_env), timeout=args.timeout)
    if status != 200:
        client.raise_for(status, body, rid)
    print(json.dumps(body))
    print(f"request {rid} answered in {(time.perf_counter() - t) * 1000:.1f} ms", file=sys.stderr)
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    r = _one(args.swarm)
    _ask(r, "stop")
    deadline = time.monotonic() + args.timeout
    path = state.state_dir() / f"{r.stem}.json"
    while path.exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the owner drains, then removes its record
    print(f"swarm {r.swarm!r} stopped" if not path.exists() else f"swarm {r.swarm!r} is still draining")
    return 0


def cmd_gc(args: argparse.Namespace) -> int:
    from .runtime.leftovers import collect

    for line in collect():
        print(line)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .headless import detach, run_notebook

    if args.detach:
        return detach(args.notebook, kernel=args.kernel, timeout=args.timeout)
    return run_notebook(args.notebook, kernel=args.kernel, timeout=args.timeout, ready_fd=args.ready_fd)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bytewax-nb", description=__doc__)
    parser.add_argument("--version", action="version", version=f"bytewax-nb {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "run", help="execute a notebook headless and keep its swarms serving until SIGINT/SIGTERM"
    )
    p.add_argument("notebook")
    p.add_argument("--kernel", default=None, help="kernel name (default: the notebook's)")
    p.add_argument("--timeout", type=float, default=600, help="seconds a cell may run")
    p.add_argument("--detach", action="store_true", help="serve in the background, return once all cells ran")
    p.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)
    p.set_defaults(fn=cmd_run)

    p = sub.add_parser("list", help="swarms on this machine")
    p.set_defaults(fn=cmd_list)

    p = sub.add_parser("status", help="readiness and counters of a swarm")
    p.add_argument("swarm")
    p.set_defaults(fn=cmd_status)

    p = sub.add_parser("logs", help="a bee's output, crashed replicas included")
    p.add_argument("swarm")
    p.add_argument("bee")
    p.add_argument("-n", "--lines", type=int, default=0, help="only the last N lines")
    p.set_defaults(fn=cmd_logs)

    p = sub.add_parser("send", help="send a JSON payload to a gateway and print the answer")
    p.add_argument("gateway")
    p.add_argument("json")
    p.add_argument("--url", default=None, help="the gateway's URL (default: found by name)")
    p.add_argument("--swarm", default=None, help="the swarm, when several have that gateway")
    p.add_argument("--token-env", default=None, help="variable holding the bearer token")
    p.add_argument("--timeout", type=float, default=35)
    p.add_argument("--wait", type=float, default=0, help="seconds to wait for the gateway to appear")
    p.set_defaults(fn=cmd_send)

    p = sub.add_parser("stop", help="drain and stop a swarm, wherever it runs")
    p.add_argument("swarm")
    p.add_argument("--timeout", type=float, default=60)
    p.set_defaults(fn=cmd_stop)

    p = sub.add_parser("gc", help="remove what dead owners and older installs left behind")
    p.set_defaults(fn=cmd_gc)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    try:
        code: int = args.fn(args)
        return code
    except BytewaxNBError as exc:
        print(f"bytewax-nb: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
