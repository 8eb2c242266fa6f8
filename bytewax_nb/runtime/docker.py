"""The `docker` runtime: every bee replica is a container (the only module importing docker).

Containers use the host network, so they reach the bus on 127.0.0.1 as a process
would (on Docker Desktop, where the host network is the VM's, run the swarm with
`host.docker.internal` reachable instead; see docs/decisions.md). The boot line goes
in through the container's stdin, which closes when the owner goes away: the replica
exits and the container is removed by Docker. The hub (bus and gateways) stays a
process of the owner.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import docker
import docker.errors
from docker.types import DeviceRequest

from ..bus.child import Boot
from ..model.protocol import Runtime
from ..model.settings import BASE_IMAGE, BIND_HOST, DOCKER_NETWORK, OWNER
from ..model.spec import BeeSpec
from .base import Handle, Launcher, LogSink
from .images import ImageBuilder, Progress
from .process import ProcessLauncher

__all__ = ["LABEL", "DockerLauncher", "base_image_here", "daemon_answers"]

LABEL = "bytewax-nb"  # every container: bytewax-nb.swarm, .bee, .replica, .owner


def daemon_answers() -> bool:
    try:
        docker.from_env(timeout=3).ping()
    except Exception:  # noqa: BLE001 - any failure means "no usable daemon"
        return False
    return True


def base_image_here() -> str | None:
    """The default base image, if this machine already has it."""
    from .images import kernel_python

    base = BASE_IMAGE.get() or f"python:{kernel_python()}-slim"
    try:
        docker.from_env(timeout=3).images.get(base)
    except Exception:  # noqa: BLE001 - missing, or no daemon after all
        return None
    return base


def _memory_bytes(memory: str) -> str:
    return memory.lower().removesuffix("b") if memory else memory


class _ContainerHandle(Handle):
    def __init__(
        self,
        identity: str,
        container: Any,
        sock: Any,
        on_line: LogSink,
        on_gone: Callable[[str], None],
    ) -> None:
        self.identity = identity
        self.container = container
        self.pid = None
        self._sock = sock
        self._on_gone = on_gone  # the launcher forgets it: its close has nothing to remove
        self._code: int | None = None
        self._done = threading.Event()
        threading.Thread(target=self._wait, name=f"bytewax-nb-wait-{identity}", daemon=True).start()
        self._reader = threading.Thread(
            target=self._pump, args=(on_line,), name=f"bytewax-nb-log-{identity}", daemon=True
        )
        self._reader.start()

    def _wait(self) -> None:
        # until Docker has removed it (auto_remove), not only until it exits: a replica
        # seen to end, or a stop that returned, leaves no container behind, not even one
        # Docker is still removing
        gone = True
        try:
            self._code = int(self.container.wait(condition="removed")["StatusCode"])
        except docker.errors.NotFound:
            self._code = -1  # gone (removed) before we could ask
        except Exception:  # noqa: BLE001 - the daemon went away: count it as an exit
            self._code, gone = -1, False
        if gone:
            self._on_gone(self.container.id)
        self._done.set()

    def _pump(self, on_line: LogSink) -> None:
        rest = b""
        try:
            for chunk in self.container.logs(stream=True, follow=True):
                rest += chunk
                *lines, rest = rest.split(b"\n")
                for line in lines:
                    on_line(self.identity, line.decode(errors="replace"))
        except docker.errors.APIError:
            pass
        if rest:
            on_line(self.identity, rest.decode(errors="replace"))

    def exit_code(self) -> int | None:
        return self._code if self._done.is_set() else None

    def _signal(self, sig: str) -> None:
        with contextlib.suppress(docker.errors.APIError):  # already gone
            self.container.kill(signal=sig)

    def terminate(self) -> None:
        self._signal("SIGTERM")

    def kill(self) -> None:
        self._signal("SIGKILL")

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()
        if not self._done.wait(10):
            self.kill()
            self._done.wait(5)
        self._reader.join(timeout=5)


class DockerLauncher(Launcher):
    """Bee replicas as containers from images built for them; the hub as a process."""

    name = Runtime.DOCKER

    def __init__(self, swarm: str, progress: Progress | None = None) -> None:
        self.network = DOCKER_NETWORK.get()
        if self.network not in ("host", "bridge"):
            raise ValueError(f"{DOCKER_NETWORK.name} must be 'host' or 'bridge', not {self.network!r}")
        if self.network == "bridge":
            # containers dial host.docker.internal: the owner's sockets must listen beyond
            # loopback (every frame on them is still signed and verified)
            self.bind_host = BIND_HOST.get()
            self.peer_host = "auto"
        self._docker = docker.from_env()
        self._swarm = swarm
        self._builder = ImageBuilder(self._docker, progress)
        self._images: dict[str, str] = {}
        self._processes = ProcessLauncher()
        # containers made and not yet seen removed: what `close` makes sure are gone
        self._made: set[str] = set()
        self._made_lock = threading.Lock()

    def advertise(self, address: str, spec: BeeSpec | None) -> str:
        if spec is not None and self.network == "bridge":
            port = address.rsplit(":", 1)[1]
            return f"tcp://host.docker.internal:{port}"
        return super().advertise(address, spec)

    def prepare(self, spec: BeeSpec, upstream: Sequence[BeeSpec] = ()) -> None:
        """Build (or find) the bee's image before its replicas start."""
        self._images[spec.name] = self._builder.image_for(spec, upstream)

    def launch(
        self,
        identity: str,
        module: str,
        boot: Boot,
        env: Mapping[str, str],
        on_line: LogSink,
        spec: BeeSpec | None = None,
    ) -> Handle:
        if spec is None:  # the hub
            return self._processes.launch(identity, module, boot, env, on_line)
        image = self._images.get(spec.name) or self._builder.image_for(spec)
        _, name, replica, launch = identity.split(":")
        launch = launch.split(".")[0]  # its secret part stays out of `docker ps`
        owner = str(os.getpid())
        limits: dict[str, Any] = {}
        if spec.cpus:
            limits["nano_cpus"] = int(spec.cpus * 1e9)
        if spec.memory:
            limits["mem_limit"] = _memory_bytes(spec.memory)
        if spec.gpus:
            limits["device_requests"] = [DeviceRequest(count=spec.gpus, capabilities=[["gpu"]])]
        api = self._docker.api
        created = api.create_container(
            image,
            ["python3", "-m", module],
            # named as Compose names containers (swarm, bee, replica), plus what keeps two
            # generations or two owners of one swarm apart
            name=f"{self._swarm}-{name}-{replica}.{launch}-{owner}",
            stdin_open=True,
            detach=False,  # docker-py's way to set StdinOnce: our attach closing ends stdin
            environment={**env, OWNER.name: owner},
            labels={
                f"{LABEL}.swarm": self._swarm,
                f"{LABEL}.bee": name,
                f"{LABEL}.replica": replica,
                f"{LABEL}.owner": owner,
            },
            host_config=api.create_host_config(auto_remove=True, **self._network(), **limits),
        )
        with self._made_lock:
            self._made.add(created["Id"])
        container = self._docker.containers.get(created["Id"])
        sock = container.attach_socket(params={"stdin": 1, "stream": 1})
        container.start()
        raw = getattr(sock, "_sock", sock)
        raw.sendall(boot.line())
        return _ContainerHandle(identity, container, raw, on_line, self._forget)

    def _forget(self, container_id: str) -> None:
        with self._made_lock:
            self._made.discard(container_id)

    def _network(self) -> dict[str, Any]:
        if self.network == "host":
            return {"network_mode": "host"}
        # Docker Desktop names the host host.docker.internal; on Linux we add the name
        return {"network_mode": "bridge", "extra_hosts": {"host.docker.internal": "host-gateway"}}

    def close(self) -> None:
        """Stop the hub's process and make sure no container of ours is left: one whose
        launch raced the swarm's stop is removed here."""
        self._processes.close()
        with self._made_lock:
            left, self._made = set(self._made), set()
        api = self._docker.api
        for container_id in left:
            try:
                api.remove_container(container_id, force=True)
            except docker.errors.NotFound:
                continue
            except docker.errors.APIError:  # Docker is removing it already (auto_remove)
                with contextlib.suppress(Exception):
                    api.wait(container_id, condition="removed", timeout=10)
        self._docker.close()
