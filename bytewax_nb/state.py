"""What the `bytewax-nb` command can see of swarms run elsewhere on this machine.

Each running swarm keeps a small record (no key, no token) and its log files under
the user's state directory, plus a local control socket only this user can reach, so
the CLI can list, inspect, tail and stop swarms that a notebook kernel started.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import platformdirs

from .settings import STATE_DIR

__all__ = ["LogFiles", "Record", "owner_alive", "read_all", "remove", "state_dir", "write"]


def state_dir() -> Path:
    """`$BYTEWAX_NB_STATE_DIR`, else the platform's user state directory."""
    path = Path(STATE_DIR.get() or platformdirs.user_state_dir("bytewax-nb"))
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


@dataclass
class Record:
    """One running swarm, as the CLI sees it."""

    swarm: str
    owner: int  # the pid of the process that runs the supervisor (a kernel, a script)
    started: float
    runtime: str = "process"
    gateways: dict[str, str] = field(default_factory=dict)  # name -> URL
    bees: dict[str, list[str]] = field(default_factory=dict)  # name -> inputs
    pids: dict[str, int] = field(default_factory=dict)  # process identity -> pid

    @property
    def stem(self) -> str:
        return f"{self.swarm}.{self.owner}"

    @property
    def control(self) -> str:
        return f"ipc://{state_dir() / (self.stem + '.sock')}"

    @property
    def log_dir(self) -> Path:
        return state_dir() / self.stem


def write(record: Record) -> None:
    """Replace the record atomically (readers never see half a file)."""
    path = state_dir() / f"{record.stem}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(record), indent=1))
    tmp.replace(path)


def remove(record: Record, *, logs: bool = False) -> None:
    for suffix in (".json", ".sock"):
        (state_dir() / f"{record.stem}{suffix}").unlink(missing_ok=True)
    if logs and record.log_dir.exists():
        for f in record.log_dir.iterdir():
            f.unlink()
        record.log_dir.rmdir()


def read_all() -> list[Record]:
    records = []
    for path in sorted(state_dir().glob("*.json")):
        try:
            data: dict[str, Any] = json.loads(path.read_text())
            records.append(Record(**data))
        except (OSError, ValueError, TypeError):
            continue  # a record being replaced, or not ours
    return records


def owner_alive(record: Record) -> bool:
    try:
        os.kill(record.owner, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LogFiles:
    """Appends each log line to `<state>/<swarm>.<owner>/<name>.log` (crashed replicas too)."""

    def __init__(self, folder: Path) -> None:
        self._folder = folder
        self._files: dict[str, Any] = {}
        self._lock = threading.Lock()

    def write(self, name: str, line: str) -> None:
        with self._lock:
            f = self._files.get(name)
            if f is None:
                self._folder.mkdir(parents=True, exist_ok=True, mode=0o700)
                f = self._files[name] = open(self._folder / f"{name}.log", "a", buffering=1)  # noqa: SIM115
            f.write(line + "\n")

    def close(self) -> None:
        with self._lock:
            for f in self._files.values():
                f.close()
            self._files.clear()
