"""The `process` runtime: every replica is a local subprocess of the owner."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Mapping

from ..bus.child import Boot
from ..model.protocol import Runtime
from ..model.settings import OWNER
from ..model.spec import BeeSpec
from .base import Handle, Launcher, LogSink

__all__ = ["ProcessLauncher"]


class _ProcessHandle(Handle):
    def __init__(self, identity: str, proc: subprocess.Popen[bytes], on_line: LogSink) -> None:
        self.identity = identity
        self.proc = proc
        self.pid = proc.pid
        self._reader = threading.Thread(
            target=self._pump, args=(on_line,), name=f"bytewax-nb-log-{identity}", daemon=True
        )
        self._reader.start()

    def _pump(self, on_line: LogSink) -> None:
        for raw in self.proc.stdout or ():
            on_line(self.identity, raw.decode(errors="replace").rstrip("\n"))

    def exit_code(self) -> int | None:
        return self.proc.poll()

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()

    def close(self) -> None:
        if self.proc.stdin:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(timeout=5)
        if self.proc.stdout:
            self.proc.stdout.close()


class ProcessLauncher(Launcher):
    """Subprocesses with the owner's interpreter and import path."""

    name = Runtime.PROCESS

    def launch(
        self,
        identity: str,
        module: str,
        boot: Boot,
        env: Mapping[str, str],
        on_line: LogSink,
        spec: BeeSpec | None = None,
    ) -> Handle:
        child_env = dict(os.environ)
        child_env.update(env)
        child_env["PYTHONUNBUFFERED"] = "1"
        child_env[OWNER.name] = str(os.getpid())  # what `bytewax-nb gc` recognises
        # functions pickled by reference must import in the child as in the owner
        child_env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        proc = subprocess.Popen(
            [sys.executable, "-m", module],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=child_env,
            start_new_session=True,  # Ctrl-C in the owner's terminal must not skip the drain
            close_fds=True,
        )
        if proc.stdin is None:  # pragma: no cover - stdin=PIPE always gives one
            raise RuntimeError("no stdin pipe to the child")
        proc.stdin.write(boot.line())
        proc.stdin.flush()
        return _ProcessHandle(identity, proc, on_line)
