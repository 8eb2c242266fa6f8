"""Watching a stack come up: until its gateways answer, or until it is clear they won't.

The engine restarts a task that fails, forever: a bee that cannot start in its image
fails the same way every second, and waiting out the deploy's timeout would only say
so minutes later. A service whose tasks failed `_SAME_FAILURES` times with the same
error since the deploy began ends the wait at once, with that error in one line.
"""

from __future__ import annotations

import contextlib
import time
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

from ..model.errors import BytewaxNBError
from ..model.spec import Topology

__all__ = ["NAMESPACE", "StackError", "hub_host", "keeps_failing", "task_errors", "wait_serving"]

NAMESPACE = "com.docker.stack.namespace"  # the label `docker stack` finds a stack's objects by
_SAME_FAILURES = 3  # tasks of one service failing alike: it will not start by waiting


class StackError(BytewaxNBError):
    """A deployment failed or its cluster is not usable; the message says what to do."""


def hub_host(client: Any, stack: str) -> str:
    """Where the hub's task runs (its node's address), as callers reach it."""
    try:
        tasks = client.services.get(f"{stack}_hub").tasks(filters={"desired-state": "running"})
        node = client.nodes.get(tasks[0]["NodeID"])
        addr = str(node.attrs["Status"]["Addr"])
    except Exception:  # noqa: BLE001 - not scheduled yet
        return "127.0.0.1"
    return "127.0.0.1" if addr in ("0.0.0.0", "") else addr


def wait_serving(
    client: Any,
    stack: str,
    topology: Topology,
    ports: dict[str, int],
    timeout: float,
    hint: str = "",
    since: float = 0.0,
) -> dict[str, str]:
    """Every gateway answers its health check as ready, and no service is mid-update;
    StackError at once if a service's tasks keep failing alike (tasks made after `since`,
    epoch seconds), or after `timeout`."""
    deadline = time.monotonic() + max(timeout, 1.0)
    last = "nothing yet"
    while time.monotonic() < deadline:
        failing = keeps_failing(client, stack, since)
        if failing:
            raise StackError(f"stack {stack!r} cannot start: {failing}")
        host = hub_host(client, stack)
        urls = {n: f"http://{host}:{ports[n]}/gateways/{n}" for n in topology.gateways}
        try:
            for n in topology.gateways:
                with urllib.request.urlopen(f"http://{host}:{ports[n]}/healthz", timeout=2) as r:
                    if r.status != 200:
                        raise OSError(f"gateway {n}: {r.status}")
            busy = _updating(client, stack)
            if not busy:
                return urls
            last = f"services still updating: {', '.join(busy)}"
        except urllib.error.HTTPError as exc:
            last = f"health check: {exc.code} {exc.read()[:300]!r}"
        except OSError as exc:
            last = f"health check: {exc}"
        time.sleep(0.5)  # polling the engine and the gateway: nothing to wait on instead
    errors = task_errors(client, stack)
    raise StackError(
        f"stack {stack!r} not serving after {timeout:.0f} s ({last})"
        + (f"; tasks: {errors}" if errors else "")
        + (f". {hint}" if hint else "")
    )


def _updating(client: Any, stack: str) -> list[str]:
    out = []
    for service in client.services.list(filters={"label": f"{NAMESPACE}={stack}"}):
        update = service.attrs.get("UpdateStatus") or {}
        if update.get("State") in ("updating", "rollback_started"):
            out.append(service.name)
            continue
        wanted = service.attrs["Spec"].get("Mode", {}).get("Replicated", {}).get("Replicas", 1)
        running = [
            t
            for t in service.tasks(filters={"desired-state": "running"})
            if t["Status"]["State"] == "running"
        ]
        if len(running) < wanted:
            out.append(service.name)
    return out


def _created(task: dict[str, Any]) -> float:
    """A task's creation time, epoch seconds (the engine writes RFC 3339 with nanoseconds)."""
    from datetime import datetime

    stamp = str(task.get("CreatedAt", ""))
    head = stamp.partition(".")[0].rstrip("Z")
    try:
        return datetime.fromisoformat(head + "+00:00").timestamp()
    except ValueError:
        return 0.0


def _why(client: Any, task: dict[str, Any]) -> str:
    """Why a task ended: its process's last line when its container is on this engine
    (the engine itself says only 'non-zero exit'), else the engine's word."""
    status = task.get("Status", {})
    container = status.get("ContainerStatus", {}).get("ContainerID")
    if container:
        with contextlib.suppress(Exception):  # removed already, or on another node
            tail = client.containers.get(container).logs(tail=5).decode(errors="replace").splitlines()
            said = [str(line).strip() for line in tail if str(line).strip()]
            if said:
                return said[-1]
    return str(status.get("Err") or status.get("Message") or status.get("State"))


def keeps_failing(client: Any, stack: str, since: float = 0.0) -> str:
    """'' or, for a service whose tasks (made after `since`) failed alike at least
    `_SAME_FAILURES` times, what they say, in one line."""
    for service in client.services.list(filters={"label": f"{NAMESPACE}={stack}"}):
        failed = [
            t
            for t in service.tasks()
            if t.get("Status", {}).get("State") in ("failed", "rejected") and _created(t) >= since
        ]
        if len(failed) < _SAME_FAILURES:
            continue
        why, times = Counter(_why(client, t) for t in failed).most_common(1)[0]
        if times >= _SAME_FAILURES:
            return f"service {service.name} failed {times} times: {why}"
    return ""


def task_errors(client: Any, stack: str) -> str:
    """The engine's last word on each service's failing tasks, in one line ('' if none)."""
    said = []
    for service in client.services.list(filters={"label": f"{NAMESPACE}={stack}"}):
        for task in service.tasks()[:20]:
            status = task.get("Status", {})
            err = status.get("Err")
            if err:
                said.append(f"{service.name}: {status.get('State')}: {err}")
    return "; ".join(dict.fromkeys(said))
