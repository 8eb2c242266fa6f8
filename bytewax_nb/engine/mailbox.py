"""How other threads reach the supervisor's thread: commands in a queue, and an inproc
socket that wakes its poll, so a call waits on an event, never on a sleep."""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import zmq

__all__ = ["Mailbox"]

T = TypeVar("T")
Guard = Callable[[str, Callable[[], Any]], Any]


class Mailbox:
    """Commands for one thread; `socket` is what that thread polls."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]]) -> None:
        wake = f"inproc://bytewax-nb-wake-{id(self)}"
        self.socket = ctx.socket(zmq.PULL)
        self.socket.bind(wake)
        self._wake = ctx.socket(zmq.PUSH)
        self._wake.connect(wake)
        self._lock = threading.Lock()  # the PUSH socket is shared by every posting thread
        self._commands: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()

    def post(self, fn: Callable[[], None]) -> None:
        """Run `fn` on the owning thread, soon."""
        self._commands.put(fn)
        with self._lock:
            self._wake.send(b"", zmq.NOBLOCK)

    def call(self, fn: Callable[[], T], timeout: float = 30.0) -> T:
        """Run `fn` on the owning thread and return its result (or raise its error)."""
        fut: Future[T] = Future()

        def run() -> None:
            try:
                fut.set_result(fn())
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                fut.set_exception(exc)

        self.post(run)
        return fut.result(timeout=timeout)

    def run_all(self, guard: Guard) -> None:
        """On the owning thread: clear the wake-ups, run every command queued (each
        through `guard`, which keeps the thread alive whatever a command raises)."""
        with contextlib.suppress(zmq.Again):
            while True:
                self.socket.recv(zmq.NOBLOCK)
        while True:
            try:
                command = self._commands.get_nowait()
            except queue.Empty:
                return
            guard("running a command", command)

    def close(self) -> None:
        self.socket.close(linger=0)
        self._wake.close(linger=0)
