"""Live output under a cell: each bee's latest lines, refreshed from a background thread.

Lines arrive from the supervisor's reader threads; one refresher thread updates the
cells' display handles at most four times a second, so a chatty bee cannot flood the
browser and the kernel never blocks on the swarm.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Any

from IPython.display import DisplayHandle, Pretty, display

from .cells import cell_namer, name_cells

__all__ = ["LiveOutput"]

_REFRESH_S = 0.25
_LINES = 40


class _Panel:
    """The display under one `%%bee` cell: its bee's latest lines, and how many older
    ones it no longer shows."""

    def __init__(self, bee: str) -> None:
        handle = display(Pretty(""), display_id=True)
        self.handle: DisplayHandle | None = handle if isinstance(handle, DisplayHandle) else None
        self.bee = bee
        self.lines: deque[str] = deque(maxlen=_LINES)
        self.dropped = 0
        self.dirty = False

    def add(self, line: str) -> None:
        if len(self.lines) == self.lines.maxlen:
            self.dropped += 1
        self.lines.append(line)
        self.dirty = True

    def text(self) -> str:
        shown = "\n".join(self.lines)
        if not self.dropped:
            return shown
        return f"... {self.dropped:,} earlier lines not shown; `%bee logs {self.bee}` has them\n{shown}"


class LiveOutput:
    """Routes a swarm's log lines to the panels of the cells that defined the bees."""

    def __init__(self) -> None:
        self._panels: dict[str, _Panel] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._shown = threading.Condition()
        self._last_shown: dict[str, str] = {}
        self._name_of = cell_namer()  # a bee's traceback names its cell as IPython does

    def attach(self, bee: str) -> None:
        """Show this bee's output under the cell running now (a re-run moves it here)."""
        panel = _Panel(bee)
        with self._lock:
            self._panels[bee] = panel
        if self._thread is None:
            self._thread = threading.Thread(target=self._refresh, name="bytewax-nb-live", daemon=True)
            self._thread.start()

    def on_log(self, role: str, name: str, replica: int, line: str) -> None:
        """The swarm's log callback: keep the line for the bee's panel."""
        with self._lock:
            panel = self._panels.get(name) if role == "bee" else None
            if panel is None:
                return
            if self._name_of is not None:
                line = name_cells(line, self._name_of)
            panel.add(f"{name}/{replica} | {line}")

    def _refresh(self) -> None:
        while not self._closed:
            self._wake.wait(_REFRESH_S)
            with self._lock:
                due: list[tuple[Any, str, str]] = []
                for name, panel in self._panels.items():
                    if panel.dirty and panel.handle is not None:
                        panel.dirty = False
                        due.append((panel.handle, name, panel.text()))
            for handle, name, text in due:
                handle.update(Pretty(text))
                with self._shown:
                    self._last_shown[name] = text
                    self._shown.notify_all()

    def wait_shown(self, bee: str, text: str, timeout: float = 10.0) -> bool:
        """Block until the bee's panel was updated to show `text` (for tests and demos)."""
        with self._shown:
            return self._shown.wait_for(lambda: text in self._last_shown.get(bee, ""), timeout)

    def close(self) -> None:
        self._closed = True
        self._wake.set()
