"""What the `bytewax-nb` command can see of swarms run elsewhere on this machine.

Each running swarm keeps a small record (no key, no token) and its log files under
the user's state directory, plus a local control socket only this user can reach, so
the CLI can list, inspect, tail and stop swarms that a notebook kernel started.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from dataclasses import asdict, dataclass, field
from logging.handlers import RotatingFileHandler
from pathlib import Path
from typing import Any

import platformdirs

from ..model.settings import STATE_DIR

__all__ = [
    "LogFiles",
    "Record",
    "log_lines",
    "owner_alive",
    "pid_alive",
    "read_all",
    "remove",
    "state_dir",
    "update",
    "write",
]


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
    pids: dict[str, int] = field(default_factory=dict)  # "role:name:replica:pid" -> pid

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


def update(
    record: Record, gateways: dict[str, str], bees: dict[str, list[str]], pids: dict[str, int]
) -> None:
    """Write the record again if what it shows changed."""
    if (gateways, bees, pids) != (record.gateways, record.bees, record.pids):
        record.gateways, record.bees, record.pids = gateways, bees, pids
        write(record)


def remove(record: Record, *, logs: bool = False) -> None:
    for suffix in (".json", ".sock"):
        (state_dir() / f"{record.stem}{suffix}").unlink(missing_ok=True)
    if logs and record.log_dir.exists():
        for f in record.log_dir.iterdir():
            f.unlink(missing_ok=True)
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
    """Whether the record's owner still runs: not gone, not a zombie (dead, its exit not
    yet reaped by its parent), and not another process that took its pid since."""
    return pid_alive(record.owner, since=record.started)


def pid_alive(pid: int, since: float | None = None) -> bool:
    """A running process has `pid` (started no later than `since`, if given)."""
    import psutil  # here: a stack's controller keeps records, has no owner, and no psutil

    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return since is None or proc.create_time() <= since + 1.0  # clock ticks: a second of slack
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # another user's: it runs
        return True


LOG_MAX_BYTES = 10 * 1024 * 1024  # a log file's size before it is rotated (one older file kept)


class LogFiles:
    """Appends each log line to `<state>/<swarm>.<owner>/<name>.log` (crashed replicas
    too); a file past LOG_MAX_BYTES becomes `<name>.log.1` (the older one goes), so a
    chatty bee costs at most twice that on disk."""

    def __init__(self, folder: Path, max_bytes: int = LOG_MAX_BYTES) -> None:
        self._folder = folder
        self._max_bytes = max_bytes
        self._files: dict[str, logging.Handler] = {}
        self._lock = threading.Lock()

    def write(self, name: str, line: str) -> None:
        with self._lock:
            handler = self._files.get(name)
            if handler is None:
                self._folder.mkdir(parents=True, exist_ok=True, mode=0o700)
                handler = RotatingFileHandler(
                    self._folder / f"{name}.log", maxBytes=self._max_bytes, backupCount=1, delay=True
                )
                self._files[name] = handler
        handler.handle(logging.makeLogRecord({"msg": line, "levelno": logging.INFO}))

    def close(self) -> None:
        with self._lock:
            for handler in self._files.values():
                handler.close()
            self._files.clear()


def log_lines(folder: Path, name: str) -> list[str]:
    """A log's lines, its rotated older file's first."""
    lines: list[str] = []
    for path in (folder / f"{name}.log.1", folder / f"{name}.log"):
        with contextlib.suppress(FileNotFoundError):
            lines += path.read_text(errors="replace").splitlines()
    return lines
