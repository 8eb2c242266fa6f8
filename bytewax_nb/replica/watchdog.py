"""A replica's second thread: what its loop cannot do while a bee's call blocks it.

The loop is single-threaded, so a call that does not return leaves it deaf: to the
owner's exit (stdin closing) and to every message queued behind the call. This
thread looks a few times a second and, while a call runs,
- ends the process when the owner is gone (nothing outlives its kernel, hung or not);
- in a deployed stack, sends the heartbeats the loop cannot (a slow call is no death);
- once the call has run long (`busy_after`, well past this bee's usual time), hands
  every message waiting in the replica back to its producer, which sends it to a
  replica that is free: nothing waits behind a long or stuck call;
- once it has run far longer (`stuck_after`, seconds), says so to the supervisor, once
  per call, with where it runs: status shows the stuck call, and a bee whose replicas
  are all stuck is not ready (`/healthz` answers 503) until one returns;
- past the bee's timeout, takes over: the replica answers every caller it owes (see
  `Replica.give_up`) and the process ends; the supervisor restarts it as after any
  crash.
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
from typing import Any

from ..bus.child import Child
from ..bus.wire import Header
from ..model.source import PACKAGE_DIR

__all__ = ["EXIT_TIMEOUT", "STUCK_AFTER", "GiveBack", "GiveUp", "Stuck", "Watchdog"]

EXIT_TIMEOUT = 70  # a replica's exit code after a call ran past its bee's timeout
_PERIOD = 0.1  # seconds between looks; also how late an owner's exit is noticed

GiveUp = Callable[[list[Header], list[Any], float, str], None]  # (headers, acks, timeout, stack)
GiveBack = Callable[[], int]  # hand the queue back; how many messages went
Beat = Callable[[], None]  # a stack's heartbeat
Stuck = Callable[[float, list[Header], str], None]  # (started, epoch seconds; headers; where it runs)
STUCK_AFTER = 5.0  # seconds a call runs before it counts as stuck, at the least


class Watchdog(threading.Thread):
    """Watches the loop's calls into bee code; the loop marks them with enter/leave."""

    def __init__(
        self,
        child: Child,
        timeout: float | None,
        give_up: GiveUp,
        give_back: GiveBack,
        beat: Beat | None = None,
        beat_every: float = 0.0,
        stuck: Stuck | None = None,
    ) -> None:
        super().__init__(name="bytewax-nb-watchdog", daemon=True)
        self._calling: tuple[float, list[Header], list[Any]] | None = None
        # the loop's sockets: held by the loop except while bee code runs, so whoever
        # holds it may use them, and a call that returns meanwhile waits at `leave`
        self._sockets = threading.Lock()
        self._sockets.acquire()
        self._child = child
        self._timeout = timeout
        self._give_up = give_up
        self._give_back = give_back
        self._beat = beat  # a stack's task stays alive to its controller through a long call
        self._beat_every = beat_every
        self._beat_at = 0.0
        # seconds after which a call counts as long, and as stuck (the loop raises both
        # for a slow bee)
        self.busy_after = 0.5
        self.stuck_after = STUCK_AFTER
        self._stuck = stuck
        self._said_stuck = False  # of the call running now
        self._main = threading.main_thread().ident
        self._done = threading.Event()

    def enter(self, since: float, headers: list[Header], acks: list[Any]) -> None:
        self._said_stuck = False
        self._calling = (since, headers, acks)
        self._sockets.release()

    def leave(self) -> bool:
        """The call returned; True if it had been said to be stuck (so say it is over)."""
        self._sockets.acquire()
        self._calling = None
        said, self._said_stuck = self._said_stuck, False
        return said

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
            since, headers, acks = calling
            elapsed = time.perf_counter() - since
            if timeout is not None and elapsed > timeout:
                if not self._sockets.acquire(blocking=False):
                    continue  # the call has just returned
                self._give_up(headers, acks, timeout, self.stack())
                sys.stdout.flush()
                sys.stderr.flush()
                self._child.close()  # returns once the answers have left (or a second passed)
                os._exit(EXIT_TIMEOUT)
            beat = self._beat is not None and time.monotonic() >= self._beat_at
            stuck = self._stuck is not None and not self._said_stuck and elapsed > self.stuck_after
            if (elapsed > self.busy_after or beat or stuck) and self._sockets.acquire(blocking=False):
                try:
                    if elapsed > self.busy_after:
                        self._give_back()  # again each look: messages that were on their way
                    if stuck and self._stuck is not None:
                        self._said_stuck = True
                        self._stuck(time.time() - elapsed, headers, self.where())
                    if beat and self._beat is not None:
                        self._beat_at = time.monotonic() + self._beat_every
                        self._beat()
                finally:
                    self._sockets.release()

    def _entries(self) -> traceback.StackSummary | list[traceback.FrameSummary]:
        """The loop's thread's frames now, without those of `python -m` and our loop."""
        frame = sys._current_frames().get(self._main or 0)
        entries = traceback.extract_stack(frame) if frame is not None else []
        while entries and entries[0].filename.startswith((PACKAGE_DIR, "<frozen")):
            entries.pop(0)
        return entries

    def stack(self) -> str:
        """Where the loop's thread is now, as a traceback."""
        return "Traceback (most recent call last):\n" + "".join(traceback.format_list(self._entries()))

    def where(self) -> str:
        """The line the loop's thread runs now, in one line."""
        entries = self._entries()
        if not entries:
            return "?"
        last = entries[-1]
        return f"{last.filename}, line {last.lineno}, in {last.name}: {(last.line or '').strip()}"
