"""The Swarm widget: the kernel side of the live graph.

An anywidget: its front-end (React Flow, built from `labextension/src` into
`static/swarm.js`) travels in this package, so every front-end that speaks anywidget
(JupyterLab, Notebook 7, VS Code, Colab, marimo) draws it, offline. It declares synced
traits and nothing else the front-end relies on. A daemon thread reads the swarm's
status about once a second and sets the traits in one `hold_sync` message; edits the
front-end sends (connect, disconnect, replicas) run one at a time on a worker thread
through the same `Swarm` methods Python users call, and their outcome comes back as
`message`.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from anywidget import AnyWidget
from traitlets import Bool, Dict, List, Unicode

from ..model.errors import BytewaxNBError
from .graph import describe_edit
from .probe import send_probe, sent
from .view import GraphView, Watched, apply_edit, edit_outcome

__all__ = ["SwarmWidget"]

_STATIC = Path(__file__).parent / "static"  # built by `npm run build:widget` (pip install does it)
# a checkout whose front-end was never built still imports (and says so where it draws)
_NOT_BUILT = """export default { render({ el }) {
  el.textContent = "bytewax-nb: the widget's front-end was not built (pip install -e . builds it; needs npm)";
} };"""
_INTERVAL = 1.0
_EDITS = ("connect", "disconnect", "replicas", "remove")
_ASKS = ("probe", "traces")  # not edits: a traced test payload, the kept traces
_SAY_AFTER = 3  # failed refreshes in a row before the widget shows the error
_ONE_PER_SWARM: weakref.WeakKeyDictionary[Watched, SwarmWidget] = weakref.WeakKeyDictionary()


class SwarmWidget(AnyWidget):
    """A live, editable graph of one swarm."""

    _esm = _STATIC / "swarm.js" if (_STATIC / "swarm.js").exists() else _NOT_BUILT
    _css = _STATIC / "swarm.css" if (_STATIC / "swarm.css").exists() else ""

    swarm = Unicode("").tag(sync=True)
    running = Bool(False).tag(sync=True)
    nodes = List(Dict()).tag(sync=True)
    edges = List(Dict()).tag(sync=True)
    message = Dict().tag(sync=True)  # {"text", "level": "info" | "error", "seq"}
    selected = Unicode("").tag(sync=True)  # set by the front-end: the bee clicked
    detail = Dict().tag(sync=True)  # that bee's log lines, recent errors and replicas
    pending = Unicode("").tag(sync=True)  # the edit being applied, in words
    probe = Dict().tag(sync=True)  # the last test payload sent from the widget, traced
    kept = Dict().tag(sync=True)  # the slowest and failed requests' traces, when asked for

    def __init__(self, swarm: Watched, interval: float = _INTERVAL, **kwargs: Any) -> None:
        super().__init__(swarm=swarm.name, **kwargs)
        self._swarm = swarm
        self._interval = interval
        self._view = GraphView()
        self._seq = 0
        self._sync_lock = threading.Lock()  # trait updates come from two threads
        self._refresh_lock = threading.Lock()
        self._closed = threading.Event()
        self._nudge = threading.Event()
        thread = f"bytewax-nb-widget-{swarm.name}"
        self._edits = ThreadPoolExecutor(1, thread_name_prefix=thread)
        self.on_msg(self._on_front_end)
        self.observe(lambda _: self._nudge.set(), names="selected")
        self.refresh()
        self._poller = threading.Thread(target=self._poll, name=thread, daemon=True)
        self._poller.start()

    @classmethod
    def of(cls, swarm: Watched) -> SwarmWidget:
        """The live graph of `swarm`: one per swarm (display it as often as you like)."""
        widget = _ONE_PER_SWARM.get(swarm)
        if widget is None or widget.closed:
            widget = _ONE_PER_SWARM[swarm] = cls(swarm)
        return widget

    def __repr__(self) -> str:  # stable text for notebooks (nbval compares it)
        return f"<SwarmWidget of swarm {self.swarm!r}>"

    # -- state -----------------------------------------------------------------------

    def refresh(self) -> None:
        """Read the swarm once and sync what changed, in one message."""
        with self._refresh_lock:
            self._refresh()

    def _refresh(self) -> None:
        shown = self._view.read(self._swarm, self.selected)
        with self._sync_lock, self.hold_sync():
            for name, value in shown.items():
                setattr(self, name, value)

    def _poll(self) -> None:
        failures = 0
        while not self._closed.is_set():
            self._nudge.wait(self._interval)
            self._nudge.clear()
            if self._closed.is_set():
                return
            try:
                self.refresh()
                failures = 0
            except Exception as exc:  # noqa: BLE001 - a swarm stopping under us: try again
                failures += 1
                if failures == _SAY_AFTER:  # not a passing hiccup: say why the graph is stale
                    self._say("error", f"could not read the swarm: {type(exc).__name__}: {exc}")

    def _say(self, level: str, text: str) -> None:
        self._seq += 1
        with self._sync_lock:
            self.message = {"text": text, "level": level, "seq": self._seq}

    def _set_pending(self, text: str) -> None:
        with self._sync_lock:
            self.pending = text

    # -- edits from the front-end ----------------------------------------------------

    def _on_front_end(self, _widget: Any, content: Any, _buffers: Any) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind not in _EDITS and kind not in _ASKS:
            self._say("error", f"refused: unknown edit {content!r}")
            return
        if not self.closed:  # a closed widget's worker is gone
            self._edits.submit(self._apply if kind in _EDITS else self._ask, content)

    def _ask(self, content: dict[str, Any]) -> None:
        if content["type"] == "traces":
            try:
                kept = self._swarm.traces()
            except BytewaxNBError as exc:
                self._say("error", f"could not read the kept traces: {exc}")
                return
            with self._sync_lock:
                self.kept = dict(kept)
            return
        self._seq += 1
        gateway, text = str(content.get("gateway", "")), str(content.get("payload", ""))
        with self._sync_lock:
            self.probe = dict(sent(gateway, text, self._seq))
        outcome = send_probe(self._swarm, gateway, text, self._seq)
        with self._sync_lock:
            self.probe = dict(outcome)

    def _apply(self, content: dict[str, Any]) -> None:
        what = describe_edit(content)
        self._set_pending(what)
        level, text = edit_outcome(what, lambda: self.edit(content))
        self._set_pending("")
        with contextlib.suppress(Exception):  # the graph shows the outcome before the words do
            self.refresh()
        self._say(level, text)

    def edit(self, content: dict[str, Any]) -> None:
        """Apply one front-end edit to the running swarm (raises on a refused one)."""
        apply_edit(self._swarm, content)
        if content["type"] == "remove" and self.selected == str(content["bee"]):
            self.selected = ""

    def close(self) -> None:
        self._closed.set()
        self._nudge.set()
        self._edits.shutdown(wait=False, cancel_futures=True)
        super().close()

    @property
    def closed(self) -> bool:
        return self._closed.is_set()
