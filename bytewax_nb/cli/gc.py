"""`bytewax-nb gc`: remove what owners that died left behind.

Children exit by themselves when their owner's pipe closes, so this is for the rare
rest: a record whose owner is gone, a process stopped or stuck while its owner died.
Only processes that carry a dead owner's mark are touched, never anyone else's. With
Docker: containers labeled with a dead owner, and bee images built from another
bytewax-nb source (their tags never come up again; a set of them with scikit-learn
holds ~430 MB of layers of its own).
"""

from __future__ import annotations

import os
from typing import Any

import psutil

from ..engine import state
from ..model.settings import OWNER

__all__ = ["collect"]

_MODULES = ("bytewax_nb.replica", "bytewax_nb.gateway")


def _ours(proc: psutil.Process) -> bool:
    try:
        cmd = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
    return "-m" in cmd and any(m in cmd for m in _MODULES)


def _kill(proc: psutil.Process) -> None:
    # SIGKILL cannot be ignored; reaping is the parent's business (gc is not the parent)
    proc.kill()


def collect() -> list[str]:
    """Kill orphaned bytewax-nb processes and drop dead owners' records; what was done."""
    done = []
    for r in state.read_all():
        if state.owner_alive(r):
            continue
        for pid in r.pids.values():
            if state.pid_alive(pid) and _ours(psutil.Process(pid)):
                _kill(psutil.Process(pid))
                done.append(f"killed process {pid} of swarm {r.swarm!r}")
        state.remove(r, logs=True)
        done.append(f"removed swarm {r.swarm!r} of owner {r.owner}, which is gone")
    me = os.getpid()
    for proc in psutil.process_iter():
        if proc.pid == me or not _ours(proc):
            continue
        try:
            owner = proc.environ().get(OWNER.name)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if owner and owner.isdigit() and not state.pid_alive(int(owner)):
            _kill(proc)
            done.append(f"killed process {proc.pid}, whose owner {owner} is gone")
    done += _run_logs()
    done += _docker_leftovers()
    return done or ["nothing to clean"]


def _run_logs() -> list[str]:
    """Logs of background runs (`run --detach`) whose process is gone (one that stopped
    removes its own; a failed or killed one's stays until now)."""
    done = []
    for path in state.state_dir().glob("run-*.log"):
        pid = path.stem.rsplit("-", 1)[-1]
        if pid.isdigit() and not state.pid_alive(int(pid)) and not path.stem.startswith("run-starting-"):
            path.unlink(missing_ok=True)
            done.append(f"removed {path.name}, the log of a background run that ended")
    return done


def _docker_leftovers() -> list[str]:
    try:
        import docker

        client = docker.from_env(timeout=5)
        client.ping()
    except Exception:  # noqa: BLE001 - no docker here: nothing of ours can be there
        return []
    try:
        return _containers(client) + _images(client)
    finally:
        client.close()


def _containers(client: Any) -> list[str]:
    """Containers labeled with an owner that is gone (docker runtime)."""
    import docker.errors

    # the list API, not inspect per container: containers come and go meanwhile
    found = client.api.containers(all=True, filters={"label": "bytewax-nb.owner"})
    done = []
    for container in found:
        owner = container["Labels"].get("bytewax-nb.owner", "")
        if owner.isdigit() and not state.pid_alive(int(owner)):
            try:
                client.api.remove_container(container["Id"], force=True)
            except docker.errors.NotFound:
                continue  # removed by Docker itself meanwhile
            done.append(f"removed container {container['Id'][:12]}, whose owner {owner} is gone")
    return done


def _images(client: Any) -> list[str]:
    """Bee images this installation built from an older source of its own: no tag it
    makes names them. Another installation's (another venv's) are left to its own gc."""
    import docker.errors

    from ..runtime.images import IMAGE_LABEL, INSTALL_LABEL, RUNNER_LABEL, install_id, runner_hash

    current, me = runner_hash(), install_id()
    done = []
    for image in client.api.images(filters={"label": IMAGE_LABEL}):
        labels = image.get("Labels") or {}
        if labels.get(RUNNER_LABEL) == current or labels.get(INSTALL_LABEL, me) != me:
            continue
        names = image.get("RepoTags") or [image["Id"]]
        try:
            for name in names:  # untagging the last name removes the image
                client.api.remove_image(name)
        except docker.errors.NotFound:
            continue
        except docker.errors.APIError as exc:
            why = "a container uses it" if exc.status_code == 409 else exc.explanation  # stopped ones too
            done.append(f"kept image {names[0]}: {why}")
            continue
        done.append(f"removed image {', '.join(names)}, built for another bytewax-nb")
    return done
