"""Launchers: how a replica or gateway process comes to life (process, docker)."""

from __future__ import annotations

from ..spec import BeeSpec
from .base import Handle, Launcher, LogSink
from .process import ProcessLauncher

__all__ = ["Handle", "Launcher", "LogSink", "ProcessLauncher", "make_launcher", "runtime_unsupported"]

_CONTAINER_ONLY = ("requirements", "image", "cpus", "memory", "gpus")


def runtime_unsupported(runtime: str, spec: BeeSpec) -> list[str]:
    """The bee options this runtime would have to ignore (an error, never silence)."""
    if runtime == "docker":
        return []
    return [opt for opt in _CONTAINER_ONLY if getattr(spec, opt)]


def make_launcher(runtime: str) -> Launcher:
    """The launcher for a runtime name; "auto" falls back to processes."""
    if runtime in ("process", "auto"):
        return ProcessLauncher()
    if runtime == "docker":
        raise NotImplementedError(
            "the docker runtime is not available in this version; use runtime='process'"
        )
    raise ValueError(f"unknown runtime {runtime!r}: use 'process', 'docker' or 'auto'")
