"""What the supervisor needs of a runtime: start a process, watch it, end it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence

from ..bus.child import Boot
from ..model.spec import BeeSpec

__all__ = ["Handle", "Launcher", "LogSink", "NeverStarted"]

LogSink = Callable[[str, str], None]  # (identity, line)


class Handle(ABC):
    """One launched replica or gateway."""

    identity: str
    pid: int | None

    @abstractmethod
    def exit_code(self) -> int | None:
        """None while it runs."""

    @abstractmethod
    def terminate(self) -> None: ...

    @abstractmethod
    def kill(self) -> None: ...

    @abstractmethod
    def close(self) -> None:
        """Release pipes and threads once it has exited."""


class NeverStarted(Handle):
    """What a failed launch leaves: a handle that has already exited."""

    def __init__(self, identity: str) -> None:
        self.identity = identity
        self.pid = None

    def exit_code(self) -> int | None:
        return -1

    def terminate(self) -> None:
        pass

    def kill(self) -> None:
        pass

    def close(self) -> None:
        pass


class Launcher(ABC):
    """Starts processes that run `python -m <module>` with a boot line on stdin."""

    name: str
    # where the owner's sockets (control, bus) listen: loopback unless containers on a
    # bridge network must reach them
    bind_host = "127.0.0.1"
    # where a bee replica's own publisher listens for its consumers: an address, or
    # "auto" (all interfaces, advertised as the container's own address on its network)
    peer_host = "127.0.0.1"

    def advertise(self, address: str, spec: BeeSpec | None) -> str:
        """The address a bee's replica should dial for one of the owner's sockets."""
        return address.replace("tcp://0.0.0.0:", "tcp://127.0.0.1:")

    @abstractmethod
    def launch(
        self,
        identity: str,
        module: str,
        boot: Boot,
        env: Mapping[str, str],
        on_line: LogSink,
        spec: BeeSpec | None = None,
    ) -> Handle:
        """Start `python -m module`; `spec` is the bee's (None for the hub)."""

    def prepare(self, spec: BeeSpec, upstream: Sequence[BeeSpec] = ()) -> None:  # noqa: B027
        """Get ready to launch this bee, which listens to the bees `upstream` (build its
        image); may take long, runs off-loop. Only containers need it."""

    def close(self) -> None:  # noqa: B027 - most launchers hold nothing
        """Release what the launcher itself holds."""
