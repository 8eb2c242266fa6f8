"""Launchers: how a replica or gateway process comes to life (process, docker)."""

from __future__ import annotations

from collections.abc import Callable

from ..model.protocol import Runtime
from ..model.settings import RUNTIME
from ..model.spec import BeeSpec
from .base import Handle, Launcher, LogSink
from .process import ProcessLauncher

__all__ = [
    "Handle",
    "Launcher",
    "LogSink",
    "ProcessLauncher",
    "make_launcher",
    "Runtime",
    "resolve",
    "runtime_unsupported",
]

_CONTAINER_ONLY = ("requirements", "image", "cpus", "memory", "gpus")


def runtime_unsupported(runtime: str, spec: BeeSpec) -> list[str]:
    """The bee options this runtime would have to ignore (an error, never silence)."""
    if runtime == Runtime.DOCKER:
        return []
    return [opt for opt in _CONTAINER_ONLY if getattr(spec, opt)]


def resolve(runtime: str) -> tuple[Runtime, str]:
    """(runtime, why): "auto" is $BYTEWAX_NB_RUNTIME, else docker when a daemon answers and
    the base image is on this machine (nothing is pulled behind the user's back), else process."""
    try:
        asked = Runtime(runtime)
    except ValueError:
        names = ", ".join(repr(str(r)) for r in Runtime)
        raise ValueError(f"unknown runtime {runtime!r}: use one of {names}") from None
    if asked != Runtime.AUTO:
        return asked, "asked for"
    chosen = RUNTIME.get()
    if chosen in (Runtime.PROCESS, Runtime.DOCKER):
        return Runtime(chosen), f"{RUNTIME.name}={chosen}"
    from .docker import base_image_here, daemon_answers

    if not daemon_answers():
        return Runtime.PROCESS, "no Docker daemon"
    base = base_image_here()
    if base is None:
        return Runtime.PROCESS, "no base image here: pull python:X.Y-slim or set BYTEWAX_NB_BASE_IMAGE"
    return Runtime.DOCKER, f"a Docker daemon answers, base image {base}"


def make_launcher(runtime: str, swarm: str, progress: Callable[[str], None] | None = None) -> Launcher:
    """The launcher for a resolved runtime name."""
    if runtime == Runtime.DOCKER:
        from .docker import DockerLauncher

        return DockerLauncher(swarm, progress)
    return ProcessLauncher()
