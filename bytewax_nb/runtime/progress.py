"""Image build progress: a bar that updates in place in a notebook, lines elsewhere."""

from __future__ import annotations

import re
from typing import Any

__all__ = ["BuildProgress"]

_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_WIDTH = 24


def _kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return False
    return getattr(get_ipython(), "kernel", None) is not None


class BuildProgress:
    """Called with each progress line of the swarm's image builds."""

    def __init__(self, swarm: str) -> None:
        self._swarm = swarm
        self._handle: Any = None
        self._in_kernel = _kernel()
        self._bar = ""

    def __call__(self, line: str) -> None:
        if not self._in_kernel:
            print(f"[{self._swarm}] {line}", flush=True)
            return
        from IPython.display import Pretty, display

        step = _STEP.match(line)
        if step:
            done, total, what = int(step[1]), int(step[2]), step[3]
            filled = _WIDTH * done // total
            text = self._bar = f"[{'#' * filled}{'.' * (_WIDTH - filled)}] {done}/{total} {what[:60]}"
        else:
            text = f"{self._bar}\n{line}" if self._bar else line
        if self._handle is None:
            self._handle = display(Pretty(text), display_id=True)
        else:
            self._handle.update(Pretty(text))
        if line.startswith("built "):
            self._handle, self._bar = None, ""  # the next build gets a bar of its own
