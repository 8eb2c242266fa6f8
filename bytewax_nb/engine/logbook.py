"""Every line a swarm's processes print: the recent ones per bee (status, the widget, a
death's report), log files for the command line, and the owner's callback (the live
output under a cell)."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from ..model.protocol import Role
from ..model.stagelog import untag
from .reports import last_lines
from .state import LogFiles
from .wiring import Member

__all__ = ["LogBook", "LogCallback"]

LogCallback = Callable[[str, str, int, str], None]  # (role, name, replica, line)
_LINES = 2000  # kept per bee (or "hub") in memory; the files keep more


class LogBook:
    """Lines by bee; `add` is called from the launchers' reader threads."""

    def __init__(self, folder: Path, on_log: LogCallback | None) -> None:
        self.lines: dict[str, deque[tuple[float, int, str]]] = {}
        self._files = LogFiles(folder)
        self._on_log = on_log

    def add(self, identity: str, line: str) -> None:
        """One line a process printed (deque.append is atomic; the callback is the user's)."""
        role, name, replica, _ = identity.split(":")
        bee, line = untag(line)  # a fused group's process says which of its bees printed
        name = bee or name
        key = name if role == Role.BEE else "hub"
        self.lines.setdefault(key, deque(maxlen=_LINES)).append((time.time(), int(replica), line))
        self._files.write(key, f"[{key}/{replica}] {line}")
        if self._on_log is not None:
            self._on_log(role, name, int(replica), line)

    def tail(self, m: Member, count: int = 10) -> list[str]:
        """A process's last lines (a fused group's: all its bees', in the order they came)."""
        return last_lines(self.lines, m.bees if m.role == Role.BEE else ["hub"], m.replica, count)

    def of(self, name: str) -> list[str]:
        """A bee's recent lines ("hub": the gateways'), each marked with its replica."""
        return [f"[{name}/{r}] {line}" for _, r, line in list(self.lines.get(name, ()))]

    def close(self) -> None:
        self._files.close()
