"""A replica's second thread: what its loop cannot do while a bee's call blocks it.

The loop is single-threaded, so a call that does not return leaves it deaf: to the
owner's exit (stdin closing) and to every caller queued behind. This thread wakes a
few times a second and, while a call runs,
- ends the process when the owner is gone (nothing outlives its kernel, hung or not);
- with a bee `timeout`, answers the callers of a call that ran past it with a
  `BeeTimeout` error whose traceback is where the call is stuck, then ends the
  process: the supervisor restarts the replica as after any crash.
A Python call cannot be interrupted from outside (C code ignores async exceptions),
so ending the process is the one remedy that always works.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import traceback
from typing import Any

import zmq

from .child import Child
from .source import PACKAGE_DIR
from .wire import Header, Signer, error_frames

__all__ = ["EXIT_TIMEOUT", "Watchdog"]

EXIT_TIMEOUT = 70  # a replica's exit code after a call ran past its bee's timeout
_PERIOD = 0.2  # seconds between looks; also how late an owner's exit is noticed


class Watchdog(threading.Thread):
    """Watches the loop's current call; `calling` is the loop's only write to it."""

    def __init__(self, child: Child, bee: str, timeout: float | None, bus: dict[str, str]) -> None:
        super().__init__(name="bytewax-nb-watchdog", daemon=True)
        # (perf_counter at the call's start, its header or the headers of its batch)
        self.calling: tuple[float, Header | list[Header]] | None = None
        self._child = child
        self._bee = bee
        self._timeout = timeout
        self._bus = bus
        self._main = threading.main_thread().ident
        self._done = threading.Event()

    def stop(self) -> None:
        self._done.set()
        if self.is_alive():
            self.join()

    def run(self) -> None:
        timeout = self._timeout
        answers: tuple[zmq.Context[Any], zmq.Socket[bytes]] | None = None
        if timeout is not None:
            # a publisher of its own, dialled now: subscriptions reach it long before a
            # call can time out, and the loop's sockets stay single-threaded
            ctx: zmq.Context[Any] = zmq.Context(1)
            pub = ctx.socket(zmq.PUB)
            pub.connect(self._bus["xsub"])
            answers = (ctx, pub)
        period = _PERIOD if timeout is None else min(_PERIOD, timeout / 4)
        try:
            while not self._done.wait(period):
                calling = self.calling
                if calling is None:
                    continue
                if self._child.owner_gone():
                    os._exit(0)
                since, headers = calling
                if answers is not None and timeout is not None and time.perf_counter() - since > timeout:
                    self._give_up(*answers, timeout, headers if isinstance(headers, list) else [headers])
        finally:
            if answers is not None:
                answers[0].destroy(linger=0)

    def _give_up(
        self, ctx: zmq.Context[Any], pub: zmq.Socket[bytes], timeout: float, headers: list[Header]
    ) -> None:
        message = f"bee {self._bee!r} did not return within its timeout of {timeout:g} s; replica restarted"
        text = self.stack() + f"BeeTimeout: {message}\n"
        signer = Signer(self._child.boot.key)
        for header in headers:
            pub.send_multipart(error_frames(signer, header, self._bee, "BeeTimeout", message, text))
            print(f"[{self._bee}] request {header.request_id}: {message}", file=sys.stderr)
        print(text, file=sys.stderr, end="", flush=True)
        sys.stdout.flush()
        pub.close(linger=2000)
        ctx.term()  # returns once the answers have left (or 2 s passed)
        os._exit(EXIT_TIMEOUT)

    def stack(self) -> str:
        """Where the loop's thread is now, without the frames of `python -m` and our loop."""
        frame = sys._current_frames().get(self._main or 0)
        entries = traceback.extract_stack(frame) if frame is not None else []
        while entries and entries[0].filename.startswith((PACKAGE_DIR, "<frozen")):
            entries.pop(0)
        return "Traceback (most recent call last):\n" + "".join(traceback.format_list(entries))
