"""A notebook (or the command line) attached to a deployed stack.

What a `Swarm` asks of its supervisor, answered by the stack: the status is the
controller's, read from the hub's `GET /swarm`; scaling is the engine's (`docker
service scale`, which the controller follows); logs are `docker service logs`. The
graph comes from the controller's topology config (configs, unlike secrets, can be
read back).
"""

from __future__ import annotations

import base64
import contextlib
import json
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any

from ..bus.wire import TRACEBACK_HEADER
from ..model.errors import BytewaxNBError
from ..model.protocol import SwarmStatus
from ..model.spec import BeeSpec, GatewaySpec, Topology
from . import skeleton
from .deploy import NAMESPACE, StackError, _client, docker_cli, hub_host, saved_token

__all__ = ["StackLink", "stacks"]

_LOGS_WAIT = 10.0  # seconds a task elsewhere has to send its logs


def stacks() -> list[str]:
    """The bytewax-nb stacks on the cluster the Docker client points at."""
    try:
        services = _client().services.list(filters={"label": "bytewax-nb.ports"})
    except Exception:  # noqa: BLE001 - no engine, or not a manager: no stacks to show
        return []
    return sorted({s.attrs["Spec"]["Labels"].get(NAMESPACE, "") for s in services} - {""})


def _task_logs(task: str, lines: int) -> list[str]:
    command = ["docker", "service", "logs", "--raw", "--timestamps", "--tail", str(lines), task]
    try:
        done = subprocess.run(command, capture_output=True, timeout=_LOGS_WAIT)
        out = done.stdout
    except subprocess.TimeoutExpired as late:  # the stream was left open: keep what came
        out = late.stdout or b""
    return out.decode(errors="replace").splitlines()


def _written(line: str) -> tuple[str, float]:
    """An RFC 3339 timestamp (its fraction's trailing zeros trimmed) as a sort key."""
    stamp = line.partition(" ")[0].rstrip("Z")
    seconds, _, fraction = stamp.partition(".")
    return seconds, float(f"0.{fraction or 0}")


class StackLink:
    """A deployed stack, as a `Swarm` attached to it sees it."""

    runtime = "stack"
    unprocessed = 0
    stopped = False

    def __init__(self, stack: str, token: str | None = None) -> None:
        self.stack = stack
        self._docker = _client()
        try:
            controller = self._docker.services.get(f"{stack}_controller")
            hub = self._docker.services.get(f"{stack}_hub")
        except Exception:  # noqa: BLE001 - NotFound, or no manager to ask
            raise StackError(f"no deployed stack named {stack!r} here (see `bytewax-nb list`)") from None
        configs = controller.attrs["Spec"]["TaskTemplate"]["ContainerSpec"].get("Configs", [])
        data = self._docker.configs.get(configs[0]["ConfigID"]).attrs["Spec"]["Data"]
        self.topology: Topology = skeleton.load(base64.b64decode(data).decode())
        self.ports: dict[str, int] = json.loads(hub.attrs["Spec"]["Labels"]["bytewax-nb.ports"])
        self.host = ""
        self._moved(hub_host(self._docker, stack))  # where callers reach the hub's node
        self.traceback_token = saved_token(stack) or ""
        self._token = token

    def _get(self, path: str, timeout: float = 5.0) -> Any:
        gateway = next(iter(self.ports))
        headers = {TRACEBACK_HEADER: self.traceback_token} if self.traceback_token else {}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            request = urllib.request.Request(
                f"http://{self.host}:{self.ports[gateway]}{path}", headers=headers
            )
            with urllib.request.urlopen(request, timeout=timeout) as r:
                return json.loads(r.read())
        except OSError:
            host = hub_host(self._docker, self.stack)  # the hub's task may run elsewhere now
            if host == self.host:
                raise
            self._moved(host)
            return self._get(path, timeout)

    def _moved(self, host: str) -> None:
        self.host = host
        for spec in self.topology.gateways.values():
            spec.host = host

    def status(self, fresh: float = 0.5) -> SwarmStatus:
        try:
            status: SwarmStatus = self._get("/swarm")
        except (OSError, urllib.error.HTTPError) as exc:
            return SwarmStatus(swarm=self.stack, ready=False, running=True, error=f"{exc}")  # type: ignore[typeddict-unknown-key]
        status["running"] = True
        return status

    def scale(self, name: str, replicas: int, timeout: float) -> None:
        """`docker service scale`, then wait until the controller has them serving."""
        self._bee(name)
        docker_cli("service", "scale", "--detach", f"{self.stack}_{name}={replicas}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            bee = self.status().get("bees", {}).get(name)
            if bee is not None and bee["wanted"] == bee["ready"] == replicas and bee["state"] == "ready":
                return
            time.sleep(0.25)  # the status is polled over HTTP: nothing to wait on instead
        raise StackError(
            f"bee {name!r} of stack {self.stack!r}: {replicas} replicas not serving after {timeout:g} s"
        )

    def log_lines(self, name: str, lines: int = 2000) -> list[str]:
        """Its tasks' last `lines` each, in the order they were written.

        A task on this node is read from its container; one elsewhere through the
        swarm (`docker service logs TASK`), which sometimes leaves the stream open after
        the last line (moby/moby#38640, docker/cli#4678): what came within
        `_LOGS_WAIT` seconds is what there is."""
        service = "hub" if name == "hub" else self._bee(name).name
        here = self._docker.info()["Swarm"]["NodeID"]
        stamped: list[str] = []
        for task in self._docker.services.get(f"{self.stack}_{service}").tasks():
            container = task["Status"].get("ContainerStatus", {}).get("ContainerID")
            if task.get("NodeID") == here and container:
                with contextlib.suppress(Exception):  # removed meanwhile
                    raw = self._docker.containers.get(container).logs(tail=lines, timestamps=True)
                    stamped += raw.decode(errors="replace").splitlines()
            elif task.get("NodeID"):
                stamped += _task_logs(task["ID"], lines)
        stamped.sort(key=_written)
        return [f"[{name}] {line.partition(' ')[2]}" for line in stamped]

    def _bee(self, name: str) -> BeeSpec:
        spec = self.topology.bees.get(name)
        if spec is None:
            raise BytewaxNBError(f"stack {self.stack!r} has no bee {name!r}")
        return spec

    def _redeploy_only(self, what: str) -> BytewaxNBError:
        return BytewaxNBError(
            f"{what} on a deployed stack: change the notebook and deploy again "
            f"(`swarm.deploy({self.stack!r})` or `bytewax-nb deploy NOTEBOOK --stack {self.stack}`)"
        )

    def deploy(self, spec: BeeSpec, timeout: float) -> None:
        raise self._redeploy_only(f"changing bee {spec.name!r}")

    def remove(self, name: str, timeout: float) -> None:
        raise self._redeploy_only(f"removing bee {name!r}")

    def add_gateway(self, spec: GatewaySpec, timeout: float) -> None:
        raise self._redeploy_only(f"adding gateway {spec.name!r}")

    def stop(self, drain_timeout: float | None = None) -> None:
        """Detach: the stack serves on (`bytewax-nb undeploy` removes it)."""
        self._docker.close()
