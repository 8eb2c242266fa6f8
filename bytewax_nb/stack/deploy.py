"""Deploying a swarm as a stack: images, secrets, the Compose file, `docker stack deploy`.

The Docker engine does the engine's work: `docker stack deploy` creates or updates the
services (a service whose spec is unchanged is not touched, so only a changed bee rolls
over), and `docker stack rm` removes them. We build the images, keep the stack's
secrets (made once: every later deploy keeps the same key, so old and new tasks talk
during an update), and wait until the gateways answer.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import pickletools
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

import cloudpickle

from ..bus.curve import BusKeys
from ..bus.wire import traceback_token
from ..engine import state
from ..model.source import capture, imported_modules
from ..model.spec import BeeSpec, Topology
from . import skeleton
from .compose import BOOT, BUS, TOKENS, Plan, compose
from .watch import NAMESPACE, StackError, hub_host, wait_serving

__all__ = [
    "NAMESPACE",
    "Deployment",
    "StackError",
    "build_images",
    "deploy",
    "export",
    "hub_host",
    "undeploy",
]

LABEL = "bytewax-nb.stack"
SYSTEM_NEEDS = ("aiohttp", "prometheus-client", "uvloop", "platformdirs")  # the hub's, the controller's
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


def _stable_digest(bundle: bytes, salt: str) -> str:
    """A bundle's digest without what differs between two kernels running the same code
    (the kernel's pid in its cells' file names): the same code, the same image. Taken
    over the pickle's opcodes, as a name's length is written before it."""
    h = hashlib.sha256(salt.encode())
    for op, arg, _ in pickletools.genops(bundle):
        if op.name == "FRAME":  # a frame's length: what is inside counts
            continue
        h.update(op.name.encode())
        if isinstance(arg, str):
            h.update(re.sub(r"ipykernel_\d+", "ipykernel", arg).encode())
        else:
            h.update(arg if isinstance(arg, bytes | bytearray) else repr(arg).encode())
    return h.hexdigest()[:16]


def code_image(client: Any, bee_image: str, spec: BeeSpec, progress: Progress) -> str:
    """The bee's image with its code inside (a stack's controller has none to send)."""
    spec = dataclasses.replace(spec, stages=())
    bundle = cloudpickle.dumps(
        {
            "spec": spec,
            "sources": {spec.name: capture(spec.fn)},
            "imports": sorted(imported_modules(spec.fn)),
        },
        protocol=5,
    )
    base_id = client.images.get(bee_image).id
    digest = _stable_digest(bundle, base_id)
    tag = f"bytewax-nb-code:{spec.name.lower()}-{digest}"
    with contextlib.suppress(Exception):
        client.images.get(tag)
        return tag
    from ..runtime.images import IMAGE_LABEL, INSTALL_LABEL, install_id

    with tempfile.TemporaryDirectory(prefix="bytewax-nb-code-") as ctx:
        Path(ctx, "bee.pkl").write_bytes(bundle)
        Path(ctx, "Dockerfile").write_text(
            f"FROM {bee_image}\nCOPY bee.pkl /opt/bytewax-nb/bee.pkl\n"
            f"LABEL {IMAGE_LABEL}=1 {INSTALL_LABEL}={install_id()} bytewax-nb.bee={spec.name}\n"
        )
        progress(f"building {tag} (bee {spec.name!r}: its code)")
        client.images.build(path=ctx, tag=tag, network_mode="none", rm=True, forcerm=True)
    return tag


def build_images(
    topology: Topology, progress: Progress, registry: str | None = None
) -> tuple[str, dict[str, str]]:
    """(the hub's and controller's image, bee -> its image), built or found; pushed to
    `registry` and named there, if one is given."""
    from ..runtime.images import ImageBuilder

    client = _client()
    builder = ImageBuilder(client, progress)
    system = builder.image_with(SYSTEM_NEEDS, "the hub and the controller")
    images = {}
    for name, spec in topology.bees.items():
        images[name] = code_image(client, builder.image_for(spec, topology.upstream(spec)), spec, progress)
    if registry:
        system = push(client, registry, system, progress)
        images = {name: push(client, registry, image, progress) for name, image in images.items()}
    return system, images


def push(client: Any, registry: str, image: str, progress: Progress) -> str:
    """`image` tagged in `registry` and pushed (layers it has already are not sent again)."""
    named = f"{registry.rstrip('/')}/{image}"
    repository, tag = named.rsplit(":", 1)
    client.images.get(image).tag(repository, tag)
    progress(f"pushing {named}")
    for line in client.images.push(repository, tag=tag, stream=True, decode=True):
        if "error" in line:
            raise StackError(f"pushing {named} failed: {line['error']}")
    return named


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
        left = client.containers.list(all=True, filters=label, sparse=True)
        left += client.networks.list(filters=label)
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
    (folder / "images.txt").write_text(_images_text(client=_client(), images={"hub": system, **images}))
    return folder


def _images_text(client: Any, images: dict[str, str]) -> str:
    lines = [
        "# The images this stack runs, built on this machine. Every node that may run a",
        "# service needs its image: export with --registry HOST:PORT (pushed there, named",
        "# so in compose.yaml), or copy them: docker save IMAGE | ssh NODE docker load",
    ]
    for service, image in images.items():
        labels = client.images.get(image).labels or {}
        reqs = labels.get("bytewax-nb.requirements", "")
        lines.append(f"{service}\t{image}\t{reqs}")
    return "\n".join(lines) + "\n"
