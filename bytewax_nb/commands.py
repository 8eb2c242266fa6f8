"""The socket `bytewax-nb stop` and `bytewax-nb status` talk to, served by the supervisor.

A REP socket on the swarm's state record (a unix socket). Requests are read on the
supervisor's thread; answers that need that same thread (a status waits for the
replicas' counters) are computed on a helper thread and sent back through `post`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import zmq

__all__ = ["CommandSocket"]

Post = Callable[[Callable[[], None]], None]


class CommandSocket:
    """Serves `stop` and `status`; `socket` is None when the address cannot be bound."""

    def __init__(self, ctx: zmq.Context[zmq.Socket[bytes]], address: str) -> None:
        self.socket: zmq.Socket[bytes] | None = ctx.socket(zmq.REP)
        self.socket.setsockopt(zmq.LINGER, 0)
        try:
            self.socket.bind(address)
        except zmq.ZMQError:  # e.g. a path too long for a unix socket: the CLI cannot reach it
            self.socket.close()
            self.socket = None
        self._busy = False  # an answer is being prepared: REP answers in turn

    @property
    def ready(self) -> bool:
        return self.socket is not None and not self._busy

    def handle(
        self,
        *,
        stopping: bool,
        stop: Callable[[], None],
        status: Callable[[], dict[str, Any]],
        post: Post,
    ) -> None:
        """Answer one request. `stop` runs on its own thread: it waits for the caller's loop."""
        if self.socket is None:
            return
        try:
            request = json.loads(self.socket.recv())
        except ValueError:
            request = {}
        cmd = request.get("cmd")
        if cmd == "stop" and not stopping:
            self.reply({"ok": True})
            threading.Thread(target=stop, name="bytewax-nb-cli-stop", daemon=True).start()
        elif cmd == "status" and not stopping:
            self._busy = True

            def answer() -> None:
                body = status()
                post(lambda: self.reply(body))

            threading.Thread(target=answer, name="bytewax-nb-cli-status", daemon=True).start()
        else:
            self.reply({"ok": False, "error": f"cannot {cmd!r} now"})

    def reply(self, body: dict[str, Any]) -> None:
        self._busy = False
        if self.socket is not None:
            self.socket.send(json.dumps(body).encode())

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close(linger=0)
