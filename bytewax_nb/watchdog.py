"""A replica's second thread: what its loop cannot do while a bee's call blocks it.

The loop is single-threaded, so a call that does not return leaves it deaf: to the
owner's exit (stdin closing) and to every caller queued behind. This thread wakes a
few times a second and, while a call runs,
- ends the process when the owner is gone (nothing outlives its kernel, hung or not);
- with a bee `timeout`, takes over a call that ran past it: the replica answers every
  caller it owes (see `Replica.give_up`) and the process ends; the supervisor restarts
  it as after any crash.
A Python call cannot be interrupted from outside (C code ignores async exceptions),
so ending the process is the one remedy that always works.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from collections.abc import Callable

from .child import Child
from .source import PACKAGE_DIR
from .wire import Header

__all__ = ["EXIT_TIMEOUT", "GiveUp", "Watchdog"]

EXIT_TIMEOUT = 70  # a replica's exit code after a call ran past its bee's timeout
_PERIOD = 0.2  # seconds between looks; also how late an owner's exit is noticed

GiveUp = Callable[[list[Header], float, str], None]  # (stuck call's headers, timeout, its stack)


class Watchdog(threading.Thread):
    """Watches the loop's calls into bee code; the loop marks them with enter/leave."""

    def __init__(self, child: Child, timeout: float | None, give_up: GiveUp) -> None:
        super().__init__(name="bytewax-nb-watchdog", daemon=True)
        self._calling: tuple[float, list[Header]] | None = None
        # the loop's sockets: held by the loop except while bee code runs, so whoever
        # holds it may use them, and a call that returns meanwhile waits at `leave`
        self._sockets = threading.Lock()
        self._sockets.acquire()
        self._child = child
        self._timeout = timeout
        self._give_up = give_up
        self._main = threading.main_thread().ident
        self._done = threading.Event()

    def enter(self, since: float, headers: list[Header]) -> None:
        self._calling = (since, headers)
        self._sockets.release()

    def leave(self) -> None:
        self._sockets.acquire()
        self._calling = None

    def stop(self) -> None:
        self._done.set()
        if self.is_alive():
            self.join()

    def run(self) -> None:
        timeout = self._timeout
        period = _PERIOD if timeout is None else min(_PERIOD, max(timeout / 4, 0.01))
        while not self._done.wait(period):
            calling = self._calling
            if calling is None:
                continue
            if self._child.owner_gone():
                os._exit(0)
            since, headers = calling
            if timeout is None or time.perf_counter() - since <= timeout:
                continue
            if not self._sockets.acquire(blocking=False):
                continue  # the call has just returned
            self._give_up(headers, timeout, self.stack())
            sys.stdout.flush()
            sys.stderr.flush()
            self._child.close()  # returns once the answers have left (or a second passed)
            os._exit(EXIT_TIMEOUT)

    def stack(self) -> str:
        """Where the loop's thread is now, without the frames of `python -m` and our loop."""
        frame = sys._current_frames().get(self._main or 0)
        entries = traceback.extract_stack(frame) if frame is not None else []
        while entries and entries[0].filename.startswith((PACKAGE_DIR, "<frozen")):
            entries.pop(0)
        return "Traceback (most recent call last):\n" + "".join(traceback.format_list(entries))
