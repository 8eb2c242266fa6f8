"""The commands on swarms of this machine (and, where a name is a deployed stack's, on
that stack): list, status, logs, send, scale, restart, stop, gc, run. Each reads the
swarm's record and asks its owner over the owner's local control socket."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from .. import client
from ..engine import state
from ..engine.commands import ask
from ..model.errors import BytewaxNBError
from ..model.settings import secret_from

__all__ = [
    "cmd_gc",
    "cmd_list",
    "cmd_logs",
    "cmd_restart",
    "cmd_run",
    "cmd_scale",
    "cmd_send",
    "cmd_status",
    "cmd_stop",
]


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


def _stack(name: str) -> Any:
    """A deployed stack of that name, when no swarm of this machine has it (None: neither)."""
    if _alive_records(name):
        return None
    from ..stack.attach import StackLink, stacks

    return StackLink(name) if name in stacks() else None


def _token(var: str | None) -> str | None:
    if not var:
        return None
    return secret_from(var)


# -- commands ------------------------------------------------------------------------


def cmd_list(args: argparse.Namespace) -> int:
    from ..stack.attach import stacks

    records = state.read_all()
    deployed = stacks()
    if args.json:
        rows = [{**dataclasses.asdict(r), "running": state.owner_alive(r)} for r in records]
        rows += [{"swarm": name, "runtime": "stack", "running": True} for name in deployed]
        print(json.dumps(rows, indent=1))
        return 0
    if not records and not deployed:
        print("no swarms")
        return 0
    for name in deployed:
        print(f"{name}  deployed stack (bytewax-nb status {name})")
    for r in records:
        alive = "running" if state.owner_alive(r) else "owner dead (`bytewax-nb gc` removes what it left)"
        print(f"{r.swarm}  owner {r.owner}  {r.runtime}  {alive}")
        for name, url in r.gateways.items():
            print(f"  gateway {name}  {url}")
        for name, inputs in r.bees.items():
            print(f"  bee {name}  <- {', '.join(inputs)}")
    return 0


def _ask(record: state.Record, cmd: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
    """One request over the owner's local control socket."""
    return ask(record.control, f"swarm {record.swarm!r} (owner {record.owner})", cmd, timeout, **fields)


def cmd_status(args: argparse.Namespace) -> int:
    from ..model.table import status_table

    link = _stack(args.swarm)
    if link is not None:
        reply = {"status": link.status(), "runtime": "stack"}
    else:
        reply = _ask(_one(args.swarm), "status")
    if args.json:
        print(json.dumps(reply["status"], indent=1))
    else:
        print(status_table(reply["status"], reply["runtime"]))
    return 0


def cmd_scale(args: argparse.Namespace) -> int:
    link = _stack(args.swarm)
    if link is not None:
        link.scale(args.bee, args.replicas, args.timeout)
        print(f"bee {args.bee!r} of stack {args.swarm!r}: {args.replicas} replica(s) serving")
        return 0
    r = _one(args.swarm)
    _ask(r, "scale", timeout=args.timeout, bee=args.bee, replicas=args.replicas)
    print(f"bee {args.bee!r} of swarm {r.swarm!r}: {args.replicas} replica(s) serving")
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    r = _one(args.swarm)
    _ask(r, "restart", timeout=args.timeout, bee=args.bee)
    print(f"bee {args.bee!r} of swarm {r.swarm!r}: every replica replaced")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    link = _stack(args.swarm)
    if link is not None:  # the engine keeps a stack's logs: `docker service logs -f` follows them
        lines = link.log_lines(args.bee, args.lines or 2000)
        print("\n".join(lines[-args.lines :] if args.lines else lines), flush=True)
        return 0
    r = _one(args.swarm)
    path = r.log_dir / f"{args.bee}.log"
    if not path.exists():
        if args.bee not in r.bees and args.bee != "hub":
            raise BytewaxNBError(f"swarm {args.swarm!r} has no bee {args.bee!r}")
        print(f"(no output from {args.bee!r} yet)")
        return 0
    lines = state.log_lines(r.log_dir, args.bee)
    print("\n".join(lines[-args.lines :] if args.lines else lines), flush=True)
    if args.follow:
        _follow(path, r)
    return 0


def _follow(path: Path, record: state.Record) -> None:
    """Print lines as the swarm writes them, until Ctrl-C or until the swarm stops; a
    rotated file (see `state.LogFiles`) is followed into its successor, as `tail -F` does."""
    f = open(path)  # noqa: SIM115 - reopened when the file is rotated
    f.seek(0, os.SEEK_END)
    try:
        while state.owner_alive(record) and record.log_dir.exists():
            line = f.readline()
            if line:
                print(line, end="", flush=True)
                continue
            with contextlib.suppress(FileNotFoundError):
                if os.stat(path).st_ino != os.fstat(f.fileno()).st_ino:  # rotated: the rest is there
                    f.close()
                    f = open(path)  # noqa: SIM115
                    continue
            time.sleep(0.2)  # a file has no event to wait on; tail -f polls too
    except KeyboardInterrupt:
        pass
    finally:
        f.close()


def _find_url(gateway: str, swarm: str | None) -> str:
    found = [(r, r.gateways[gateway]) for r in _alive_records(swarm) if gateway in r.gateways]
    if not found and swarm is not None and (link := _stack(swarm)) is not None:
        if gateway not in link.ports:
            raise BytewaxNBError(f"stack {swarm!r} has no gateway {gateway!r}")
        return f"http://{link.host}:{link.ports[gateway]}/gateways/{gateway}"
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
    if args.stream:  # each chunk on its own line, as it comes
        count = 0
        for chunk in client.stream(url, payload, token=_token(args.token_env), timeout=args.timeout):
            print(json.dumps(chunk), flush=True)
            count += 1
        print(f"{count} chunks in {(time.perf_counter() - t) * 1000:.1f} ms", file=sys.stderr)
        return 0
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
    from .gc import collect

    for line in collect():
        print(line)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from .headless import detach, run_notebook

    if args.detach:
        return detach(args.notebook, kernel=args.kernel, timeout=args.timeout)
    return run_notebook(args.notebook, kernel=args.kernel, timeout=args.timeout, ready_fd=args.ready_fd)
