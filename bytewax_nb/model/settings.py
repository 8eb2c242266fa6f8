"""Every `BYTEWAX_NB_*` environment variable, in one place (the docs' table is made from it).

Modules read a variable through its `Setting`, never by spelling its name, so a name
and its meaning cannot drift apart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import BytewaxNBError

__all__ = [
    "BASE_IMAGE",
    "BIND_HOST",
    "DECLARE",
    "DOCKER_NETWORK",
    "ENCRYPT",
    "HEARTBEAT",
    "OWNER",
    "RUNTIME",
    "SETTINGS",
    "STACK",
    "STATE_DIR",
    "TASK",
    "Setting",
    "secret_from",
]


@dataclass(frozen=True)
class Setting:
    """One environment variable: its name, what it is when unset, and what it does."""

    name: str
    default: str
    meaning: str

    def get(self) -> str:
        """Its value, or the default when unset or empty."""
        return os.environ.get(self.name) or self.default


RUNTIME = Setting(
    "BYTEWAX_NB_RUNTIME",
    "",
    'What `runtime="auto"` means here: `process` or `docker`. Unset: docker when a Docker '
    "daemon answers and the base image is on this machine, else process.",
)
BASE_IMAGE = Setting(
    "BYTEWAX_NB_BASE_IMAGE",
    "",
    "The image bee images are built FROM; its Python must have the kernel's major.minor. "
    "Unset: `python:<major>.<minor>-slim` (pulled if missing).",
)
DOCKER_NETWORK = Setting(
    "BYTEWAX_NB_DOCKER_NETWORK",
    "host",
    "`host` (Linux) or `bridge` (Docker Desktop, where the host network is the VM's): "
    "containers then dial the owner as `host.docker.internal`.",
)
BIND_HOST = Setting(
    "BYTEWAX_NB_BIND_HOST",
    "0.0.0.0",
    "With `BYTEWAX_NB_DOCKER_NETWORK=bridge`: where the owner's control and link sockets "
    "listen so containers reach them (every frame on them stays signed and encrypted).",
)
ENCRYPT = Setting(
    "BYTEWAX_NB_ENCRYPT",
    "1",
    "`0` turns the bus's CurveZMQ encryption off for swarms on this machine (it costs a few "
    "percent of throughput): any local user can then read payloads and configurations on the "
    "sockets, though not forge, replay or take over a link (docs/wire.md). Stacks always encrypt.",
)
STATE_DIR = Setting(
    "BYTEWAX_NB_STATE_DIR",
    "",
    "Where swarms keep their records, logs, control sockets and journals for the "
    "`bytewax-nb` command. Unset: the platform's user state directory.",
)
OWNER = Setting(
    "BYTEWAX_NB_OWNER",
    "",
    "Set by bytewax-nb on every process and container it starts (the owner's pid), so "
    "`bytewax-nb gc` finds what a dead owner left. Not for users to set.",
)
STACK = Setting(
    "BYTEWAX_NB_STACK",
    "",
    "Set by a deployed stack's Compose file on every service (the stack's name): the "
    "process boots from the stack's Docker secret and reports by heartbeats. Not for users to set.",
)
TASK = Setting(
    "BYTEWAX_NB_TASK",
    "",
    "Set by a deployed stack's Compose file: the identity of a task on the control "
    "channel, made by the engine from the task's slot and id. Not for users to set.",
)
DECLARE = Setting(
    "BYTEWAX_NB_DECLARE",
    "",
    "Set by `bytewax-nb deploy|export` in the kernel that reads the notebook: `1` makes its "
    "swarms only declared (nothing starts locally). Not for users to set.",
)
HEARTBEAT = Setting(
    "BYTEWAX_NB_HEARTBEAT",
    "0.5",
    "Seconds between a stack's tasks' heartbeats; a task silent for six of them is taken for dead "
    "(what it held is sent elsewhere).",
)
SETTINGS = (
    RUNTIME,
    BASE_IMAGE,
    DOCKER_NETWORK,
    BIND_HOST,
    ENCRYPT,
    STATE_DIR,
    OWNER,
    STACK,
    TASK,
    HEARTBEAT,
    DECLARE,
)


def secret_from(variable: str) -> str:
    """The value of a variable the user named for a secret (a gateway's token): it must be
    set, and it is never printed."""
    value = os.environ.get(variable)
    if not value:
        raise BytewaxNBError(f"the variable {variable} is not set (or empty)")
    return value
