"""The socket the `bytewax-nb` command talks to, served by the supervisor.

A REP socket on the swarm's state record (a unix socket in a folder only this user can
read). Requests are read on the supervisor's thread; answers that need that same
thread to work (a status waits for the replicas' counters, a scale for the change to
settle) are computed on a helper thread and sent back through `post`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from typing import Any

import zmq

from ..model.errors import BytewaxNBError, StartError
from ..model.spec import BeeSpec

__all__ = ["CHANGE_TIMEOUT", "Action", "CommandSocket", "ask", "swarm_actions"]

Post = Callable[[Callable[[], None]], None]
# what a command does, given the request's fields: an answer (merged into {"ok": True})
Action = Callable[[Mapping[str, Any]], dict[str, Any]]


class CommandSocket:
    """Serves the commands it is given; `socket` is None when the address cannot be bound."""

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
        self, *, stopping: bool, stop: Callable[[], None], actions: Mapping[str, Action], post: Post
    ) -> None:
        """Answer one request. Each action runs on its own thread: it may wait for the
        caller's loop (the supervisor's), which must go on meanwhile."""
        if self.socket is None:
            return
        try:
            request = json.loads(self.socket.recv())
        except ValueError:
            request = {}
        cmd = request.get("cmd") if isinstance(request, dict) else None
        if cmd == "stop" and not stopping:
            self.reply({"ok": True})
            threading.Thread(target=stop, name="bytewax-nb-cli-stop", daemon=True).start()
        elif isinstance(cmd, str) and cmd in actions and not stopping:
            self._busy = True
            action = actions[cmd]

            def answer() -> None:
                try:
                    body = {"ok": True, **action(request)}
                except Exception as exc:  # noqa: BLE001 - the CLI prints it; the swarm serves on
                    body = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
                post(lambda: self.reply(body))

            threading.Thread(target=answer, name=f"bytewax-nb-cli-{cmd}", daemon=True).start()
        else:
            self.reply({"ok": False, "error": f"cannot {cmd!r} now"})

    def reply(self, body: dict[str, Any]) -> None:
        self._busy = False
        if self.socket is not None:
            self.socket.send(json.dumps(body).encode())

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close(linger=0)


def ask(address: str, who: str, cmd: str, timeout: float = 10.0, **fields: Any) -> dict[str, Any]:
    """One request to the socket at `address` (what `bytewax-nb` and the JupyterLab
    panel send); a refusal or silence raises, in words naming `who` answers there."""
    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
    try:
        sock = ctx.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(address)
        sock.send(json.dumps({"cmd": cmd, **fields}).encode())
        if not sock.poll(int(timeout * 1000)):
            raise BytewaxNBError(f"{who} did not answer {cmd!r}")
        reply: dict[str, Any] = json.loads(sock.recv())
    finally:
        ctx.destroy(linger=0)
    if not reply.get("ok"):
        raise BytewaxNBError(f"{who}: {reply.get('error')}")
    return reply


CHANGE_TIMEOUT = 60.0  # seconds a scale or restart asked by the command line may take


def swarm_actions(
    *,
    status: Callable[[], Any],
    bees: Callable[[], Mapping[str, BeeSpec]],
    scale: Callable[[str, int, float], None],
    redeploy: Callable[[BeeSpec, float], None],
    runtime: str,
) -> dict[str, Action]:
    """What `bytewax-nb status|scale|restart SWARM ...` does to a running swarm."""

    def known(bee: Any) -> BeeSpec:
        spec = bees().get(str(bee))
        if spec is None:
            raise StartError(f"no bee {bee!r}")
        return spec

    def do_scale(request: Mapping[str, Any]) -> dict[str, Any]:
        spec, replicas = known(request.get("bee")), request.get("replicas")
        if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 1:
            raise ValueError(f"replicas must be an integer >= 1, not {replicas!r}")
        scale(spec.name, replicas, CHANGE_TIMEOUT)
        return {}

    def do_restart(request: Mapping[str, Any]) -> dict[str, Any]:
        # every replica replaced, the way a redeploy does it: no request lost
        redeploy(known(request.get("bee")), CHANGE_TIMEOUT)
        return {}

    return {
        "status": lambda _: {"status": status(), "runtime": runtime},
        "scale": do_scale,
        "restart": do_restart,
    }
