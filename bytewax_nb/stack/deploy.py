"""Deploying a swarm as a stack: images, secrets, the Compose file, `docker stack deploy`.

The Docker engine does the engine's work: `docker stack deploy` creates or updates the
services (a service whose spec is unchanged is not touched, so only a changed bee rolls
over), and `docker stack rm` removes them. We build the images, keep the stack's
secrets (made once: every later deploy keeps the same key, so old and new tasks talk
during an update), and wait until the gateways answer.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..bus.curve import BusKeys
from ..bus.wire import traceback_token
from ..engine import state
from ..model.spec import Topology
from . import skeleton
from .compose import BOOT, BUS, TOKENS, Plan, compose
from .images import build_images, images_text
from .watch import NAMESPACE, StackError, hub_host, wait_serving

__all__ = [
    "NAMESPACE",
    "Deployment",
    "StackError",
    "deploy",
    "export",
    "hub_host",
    "undeploy",
]

LABEL = "bytewax-nb.stack"
Progress = Callable[[str], None]


@dataclass
class Deployment:
    """A deployed stack, as `deploy` leaves it."""

    stack: str
    urls: dict[str, str]  # gateway -> URL
    images: dict[str, str]  # service -> image
    seconds: float  # from the call to every gateway answering


def _client(timeout: float | None = None) -> Any:
    import docker

    return docker.from_env(timeout=timeout) if timeout else docker.from_env()


def _check_swarm(client: Any) -> None:
    info = client.info().get("Swarm", {})
    if info.get("LocalNodeState") != "active" or not info.get("ControlAvailable"):
        raise StackError(
            "the Docker engine is not a Swarm mode manager: run `docker swarm init` "
            "(or point DOCKER_HOST at a manager of your cluster)"
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def _ports(client: Any, stack: str, topology: Topology) -> dict[str, int]:
    """Each gateway's published port: its own, else the one it had, else a free one."""
    had: dict[str, int] = {}
    with contextlib.suppress(Exception):
        labels = client.services.get(f"{stack}_hub").attrs["Spec"]["Labels"]
        had = {k: int(v) for k, v in json.loads(labels.get("bytewax-nb.ports", "{}")).items()}
    return {n: g.port or had.get(n) or _free_port() for n, g in topology.gateways.items()}


def _boot_secret(client: Any, stack: str) -> None:
    """The stack's keys, made on its first deploy and kept: tasks of two deploys must
    talk during an update. The owner's traceback token is kept beside the records."""
    name = f"{stack}_{BOOT}"
    if client.secrets.list(filters={"name": name}):
        return
    key = secrets.token_bytes(32)
    keys = BusKeys.make()
    body = {"key": key.hex(), "curve": keys.to_boot() if keys else None}
    client.secrets.create(name=name, data=json.dumps(body).encode(), labels={NAMESPACE: stack, LABEL: stack})
    _save_token(stack, traceback_token(key).decode())


def _save_token(stack: str, token: str) -> None:
    path = state.state_dir() / "stacks" / f"{stack}.json"
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump({"traceback_token": token}, f)


def saved_token(stack: str) -> str | None:
    """The traceback token of a stack deployed from here (the owner's privilege)."""
    try:
        return str(
            json.loads((state.state_dir() / "stacks" / f"{stack}.json").read_text())["traceback_token"]
        )
    except (OSError, ValueError, KeyError):
        return None


def _tokens(topology: Topology) -> bytes | None:
    tokens = {n: g.token for n, g in topology.gateways.items() if g.token}
    return json.dumps(tokens, sort_keys=True).encode() if tokens else None


def _plan(
    stack: str, topology: Topology, system: str, images: dict[str, str], ports: dict[str, int], **kw: Any
) -> tuple[Plan, str]:
    graph = skeleton.dump(topology, ports)
    tokens = _tokens(topology)
    plan = Plan(
        stack=stack,
        topology=topology,
        system_image=system,
        images=images,
        ports=ports,
        topology_config=f"{stack}_topology_{hashlib.sha256(graph.encode()).hexdigest()[:12]}",
        tokens_secret=f"{stack}_{TOKENS}_{hashlib.sha256(tokens).hexdigest()[:12]}" if tokens else None,
        **kw,
    )
    return plan, graph


def _write(folder: Path, plan: Plan, graph: str) -> None:
    (folder / "compose.yaml").write_text(compose(plan))
    (folder / "topology.json").write_text(graph)


def deploy(
    stack: str,
    topology: Topology,
    *,
    encrypt_overlay: bool = True,
    registry: str | None = None,
    timeout: float = 300.0,
    progress: Progress = print,
    keep_on_failure: bool = False,
) -> Deployment:
    """Build, deploy or update the stack, and return once every gateway answers.
    `registry` (HOST[:PORT]): push the images there, for nodes to pull.

    A first deploy that fails is removed again (`keep_on_failure`: left to look at); an
    update that fails leaves what the engine's rollback leaves (bees roll back)."""
    from ..model.spec import check_name

    check_name("stack", stack)
    topology.validate()
    t0 = time.monotonic()
    client = _client()
    _check_swarm(client)
    existed = bool(client.services.list(filters={"label": f"{NAMESPACE}={stack}"}))
    try:
        return _deploy(client, stack, topology, encrypt_overlay, registry, timeout, progress, t0)
    except StackError as exc:
        if existed or keep_on_failure:
            raise
        removed: list[str] = []
        with contextlib.suppress(StackError):  # nothing was made yet
            removed = undeploy(stack)
        note = " (the new stack was removed; --keep-on-failure keeps it)" if removed else ""
        raise StackError(f"{exc}{note}") from None


def _deploy(
    client: Any,
    stack: str,
    topology: Topology,
    encrypt_overlay: bool,
    registry: str | None,
    timeout: float,
    progress: Progress,
    t0: float,
) -> Deployment:
    since = time.time() - 1  # the engine's clock is this machine's (or close): tasks of this deploy
    system, images = build_images(topology, progress, registry)
    ports = _ports(client, stack, topology)
    _boot_secret(client, stack)
    plan, graph = _plan(stack, topology, system, images, ports, encrypt_overlay=encrypt_overlay)
    tokens = _tokens(topology)
    if tokens and plan.tokens_secret and not client.secrets.list(filters={"name": plan.tokens_secret}):
        client.secrets.create(name=plan.tokens_secret, data=tokens, labels={NAMESPACE: stack, LABEL: stack})
    with tempfile.TemporaryDirectory(prefix="bytewax-nb-stack-") as folder:
        _write(Path(folder), plan, graph)
        _stack_deploy(Path(folder) / "compose.yaml", stack)
    hint = _OVERLAY_HINT if encrypt_overlay and len(client.nodes.list()) > 1 else ""
    urls = wait_serving(client, stack, topology, ports, timeout - (time.monotonic() - t0), hint, since)
    _prune(client, stack, plan)
    return Deployment(stack, urls, {"hub": system, "controller": system, **images}, time.monotonic() - t0)


def _stack_deploy(path: Path, stack: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            docker_cli("stack", "deploy", "-c", str(path), "--prune", "--resolve-image", "never", stack)
            return
        except StackError as exc:
            # a stack of this name removed moments ago: the engine still removes its
            # network in the background, and the deploy found it half gone
            if not re.search(r"network \S+ not found", str(exc)) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def docker_cli(*args: str) -> str:
    """The docker command itself, where the SDK does not do what a person typing it
    does (`stack deploy` has no SDK call; the SDK's `Service.scale` rewrites defaults in
    the spec, and the engine then rolls every task of the service)."""
    if shutil.which("docker") is None:
        raise StackError(f"the docker command is not installed: `docker {args[0]} {args[1]}` needs it")
    result = subprocess.run(["docker", *args], capture_output=True, text=True)
    if result.returncode != 0:
        said = " ".join(result.stderr.split())
        raise StackError(f"docker {args[0]} {args[1]} failed: {said}")
    return result.stdout


_OVERLAY_HINT = (
    "If tasks on other nodes never become ready: the overlay's encryption (IPsec ESP, "
    "AES-GCM) may be missing from these kernels (the engine's log then says "
    "'Failed Adding rSA ... function not implemented'); deploy with "
    "--no-overlay-encryption: the bus stays CurveZMQ-encrypted and signed"
)


def _prune(client: Any, stack: str, plan: Plan) -> None:
    """Configs and secrets of earlier deploys of this stack that no service uses now."""
    keep = {plan.topology_config, plan.tokens_secret, f"{stack}_{BOOT}"}
    for kind in (client.configs, client.secrets):
        for obj in kind.list(filters={"label": f"{NAMESPACE}={stack}"}):
            if obj.name not in keep:
                with contextlib.suppress(Exception):  # still used by a task on its way out
                    obj.remove()


def undeploy(stack: str, timeout: float = 60.0) -> list[str]:
    """Remove everything the stack made (services, networks, secrets, configs, its
    journal volume) and nothing else; what was removed."""
    client = _client()
    label = {"label": f"{NAMESPACE}={stack}"}
    services = [s.name for s in client.services.list(filters=label)]
    if not services and not client.secrets.list(filters=label) and not client.networks.list(filters=label):
        raise StackError(f"no stack named {stack!r} on this cluster")
    docker_cli("stack", "rm", stack)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:  # the engine removes tasks and networks in the background
        bus = f"{stack}_{BUS}"  # listed by name too: it outlives its label for a moment
        containers = client.containers.list(all=True, filters=label, sparse=True, ignore_removed=True)
        left = [*_remove_ended(containers), *client.networks.list(filters=label)]
        left += [n for n in client.networks.list(names=[bus]) if n.name == bus]
        if not left:
            break
        time.sleep(0.25)
    removed = [*services]
    for kind in (client.secrets, client.configs, client.volumes):
        for obj in kind.list(filters=label):
            with contextlib.suppress(Exception):
                obj.remove()
                removed.append(obj.name)
    with contextlib.suppress(FileNotFoundError):
        (state.state_dir() / "stacks" / f"{stack}.json").unlink()
    return removed


def _remove_ended(containers: list[Any]) -> list[Any]:
    """Remove the containers of ended tasks (with their service gone nothing needs them,
    and the engine's task reaper can leave them for good); those still running."""
    running = []
    for c in containers:
        if c.status in ("exited", "dead", "created"):
            with contextlib.suppress(Exception):  # the reaper got there first
                c.remove(force=True)
        else:
            running.append(c)
    return running


def export(
    stack: str,
    topology: Topology,
    folder: Path,
    *,
    encrypt_overlay: bool = True,
    registry: str | None = None,
    progress: Progress = print,
) -> Path:
    """Write the stack as files for `docker stack deploy -c FOLDER/compose.yaml STACK`:
    the Compose file, the graph, the secrets (mode 600) and what the images hold."""
    from ..model.spec import check_name

    check_name("stack", stack)
    topology.validate()
    system, images = build_images(topology, progress, registry)
    ports = {n: g.port or 8000 + i for i, (n, g) in enumerate(topology.gateways.items())}
    folder.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    keys = BusKeys.make()
    files = {BOOT: json.dumps({"key": key.hex(), "curve": keys.to_boot() if keys else None})}
    tokens = _tokens(topology)
    if tokens:
        files[TOKENS] = tokens.decode()
    (folder / "secrets").mkdir(exist_ok=True, mode=0o700)
    for name, body in files.items():
        fd = os.open(folder / "secrets" / f"{name}.json", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(body)
    plan, graph = _plan(
        stack,
        topology,
        system,
        images,
        ports,
        encrypt_overlay=encrypt_overlay,
        secret_files={name: f"./secrets/{name}.json" for name in files},
    )
    _write(folder, plan, graph)
    (folder / "images.txt").write_text(images_text(_client(), {"hub": system, **images}))
    return folder
