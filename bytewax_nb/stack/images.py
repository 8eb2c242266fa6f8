"""A stack's images: the hub's and controller's (the system image), and one per bee,
its code inside (a stack's controller has no code to send), keyed by that code so the
same code is the same image; pushed to a registry when nodes must pull them."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import pickletools
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cloudpickle

from ..model.source import capture, imported_modules
from ..model.spec import BeeSpec, Topology
from ..replica.start import BUNDLE
from .watch import StackError

__all__ = ["SYSTEM_NEEDS", "build_images", "code_image", "images_text", "push"]

# the hub's and the controller's (jsonschema: a gateway's declared schema is checked there)
SYSTEM_NEEDS = ("aiohttp", "prometheus-client", "uvloop", "platformdirs", "jsonschema")
GRPC_NEEDS = ("grpcio", "protobuf")  # a hub with a gateway on the inference protocol's gRPC
SCALER_NEEDS = ("docker",)  # a controller that scales its stack's services (autoscaled bees)
Progress = Callable[[str], None]


def _client() -> Any:
    import docker

    return docker.from_env()


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
            f"FROM {bee_image}\nCOPY bee.pkl {BUNDLE}\n"
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
    grpc = any(g.grpc_port is not None for g in topology.gateways.values())
    scaled = any(spec.autoscaled for spec in topology.bees.values())
    needs = SYSTEM_NEEDS + (GRPC_NEEDS if grpc else ()) + (SCALER_NEEDS if scaled else ())
    system = builder.image_with(needs, "the hub and the controller")
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


def images_text(client: Any, images: dict[str, str]) -> str:
    """images.txt: each service's image and the requirements it holds."""
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
