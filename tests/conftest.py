"""Fixtures that start real swarms and fail a test that leaks a process or a port."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import psutil
import pytest
from jupyter_client.manager import KernelManager

from bytewax_nb import Swarm

_STATE_DIR = pytest.StashKey[str]()


def pytest_configure(config: pytest.Config) -> None:
    # records of the swarms tests start (some on purpose with a killed owner) go to a
    # folder of this run, never into the user's own `bytewax-nb list`
    folder = tempfile.mkdtemp(prefix="bytewax-nb-test-state-")
    config.stash[_STATE_DIR] = folder
    os.environ["BYTEWAX_NB_STATE_DIR"] = folder


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Close ZeroMQ contexts a library left open (a kernel client's, say) while their
    sockets are still reachable. Left to the garbage collector, a context and its open
    sockets can be collected together, the sockets' weak references cleared first, and
    the context's finalizer then waits forever for sockets it can no longer close (a
    run hung that way in the terminal summary)."""
    import gc

    import zmq

    for obj in gc.get_objects():
        if isinstance(obj, zmq.Context) and not obj.closed and not obj._shadow:
            obj.destroy(linger=0)


def pytest_unconfigure(config: pytest.Config) -> None:
    folder = config.stash.get(_STATE_DIR, None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
    # Python waits for every thread that is no daemon before it exits: a test that left
    # one running would hang the run after its summary, with no word (CI's did)
    left = [t for t in threading.enumerate() if t is not threading.main_thread() and not t.daemon]
    if left:
        frames = sys._current_frames()
        print(f"\nthreads left running, which keep the run from ending: {len(left)}", file=sys.stderr)
        for t in left:
            stack = "".join(traceback.format_stack(frames[t.ident])) if t.ident in frames else ""
            print(f"--- {t.name}\n{stack}", file=sys.stderr)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--fast", action="store_true", help="skip tests marked slow or docker (CI runs them)")
    parser.addoption("--no-docker", action="store_true", help="skip tests that need a Docker engine")
    parser.addoption("--no-browser", action="store_true", help="skip tests that drive JupyterLab in Chromium")
    parser.addoption("--no-stack", action="store_true", help="skip tests that deploy on Docker Swarm mode")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    fast, no_docker = config.getoption("--fast"), config.getoption("--no-docker")
    no_browser, no_stack = config.getoption("--no-browser"), config.getoption("--no-stack")
    for item in items:
        if fast and any(k in item.keywords for k in ("slow", "docker", "browser")):
            item.add_marker(pytest.mark.skip(reason="--fast given"))
        elif no_docker and "docker" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="--no-docker given"))
        elif no_browser and "browser" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="--no-browser given"))
        elif no_stack and "stack" in item.keywords:
            item.add_marker(pytest.mark.skip(reason="--no-stack given"))


def missing(what: str, provide: str, quiet: str = "") -> NoReturn:
    """A real-part test whose prerequisite is missing: in CI a failure (CI runs every
    test), elsewhere a skip that says what is missing and the command that provides it
    (`quiet`: the option that skips these without a word)."""
    if os.environ.get("CI"):
        pytest.fail(f"CI must run this test: {what} ({provide})")
    pytest.skip(f"{what}: {provide}" + (f"; {quiet} skips these quietly" if quiet else ""))


def wait_until(
    predicate: Callable[[], Any],
    timeout: float = 10.0,
    what: str = "condition",
    show: Callable[[], Any] | None = None,
) -> Any:
    """Poll a condition on a live system until it holds; fail with `what` otherwise, and
    with what the predicate last returned (or `show()`), so a CI failure explains itself."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = show() if show is not None else value
            raise AssertionError(f"timed out after {timeout} s waiting for {what}; last seen: {seen!r}")
        time.sleep(0.02)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def swarm_pids(swarm: Swarm) -> list[int]:
    st = swarm.status()
    pids = [g["pid"] for g in st["gateways"].values()]
    pids += [r["pid"] for b in st["bees"].values() for r in b["replicas"]]
    return [p for p in pids if p]


@pytest.fixture
def make_swarm() -> Iterator[Callable[..., Swarm]]:
    """Swarms made here are stopped after the test, and must leave no child behind."""
    made: list[Swarm] = []

    def make(name: str = "t", **kw: Any) -> Swarm:
        kw.setdefault("runtime", "process")
        kw.setdefault("on_log", None)
        swarm = Swarm(name, **kw)
        made.append(swarm)
        return swarm

    yield make
    for swarm in made:
        swarm.stop(drain_timeout=1)
    me = psutil.Process()
    leftovers = [c for c in me.children(recursive=True) if c.is_running() and c.status() != "zombie"]
    assert not leftovers, f"child processes left behind: {leftovers}"


def hello_swarm(
    make_swarm: Callable[..., Swarm], name: str = "hello-world", runtime: str = "process", **gateway: Any
) -> Swarm:
    """The seed's hello-world: gateway -> hello (prints, passes on) -> goodbye (responds)."""
    swarm = make_swarm(name, runtime=runtime)
    swarm.gateway("hello-world", **gateway)

    @swarm.bee(input="hello-world")
    def hello(payload: dict[str, str]) -> dict[str, str]:
        print("hello", payload["name"])
        return payload

    @swarm.bee(input="hello")
    def goodbye(payload: dict[str, str], ctx: Any) -> None:
        ctx.respond(f"goodbye {payload['name']}")

    return swarm


@pytest.fixture
def busy_cpu() -> Iterator[None]:
    """Another program keeping every core busy while the test runs (as a user's machine
    often is): the widget must not blank out, nor edits get lost, under load."""
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 2)]
    yield
    for hog in hogs:
        hog.kill()
        hog.wait()


@contextlib.contextmanager
def other_owner(folder: Path, source: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A script in its own process that starts a swarm and prints one line once it
    serves (yielded with the process); it stops its swarm when its stdin closes."""
    script = folder / "owner.py"  # a file: a bee's source is read from it
    script.write_text(source)
    owner = subprocess.Popen(
        [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert owner.stdin is not None and owner.stdout is not None
    try:
        said = owner.stdout.readline().strip()
        assert said, "the script's swarm did not start"
        yield owner, said
    finally:
        owner.stdin.close()
        owner.wait(timeout=60)


def swarm_manager() -> Any:
    """The Docker engine, a Swarm mode manager with a base image to build from: what a
    deployed stack needs (missing: a skip locally, a failure in CI)."""
    import docker

    try:
        client = docker.from_env(timeout=10)
        swarm = client.info().get("Swarm", {})
    except Exception as exc:  # noqa: BLE001 - no engine at all
        swarm, client = {"error": str(exc)}, None
    if client is None:
        missing("no Docker engine answers", "apt-get install docker.io; dockerd &", "--no-stack")
    if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
        missing("the Docker engine is no Swarm mode manager", "scripts/swarm-init.sh (as root)", "--no-stack")
    if not os.environ.get("BYTEWAX_NB_BASE_IMAGE"):
        missing(
            "BYTEWAX_NB_BASE_IMAGE is not set (a stack's images are built from it)",
            "export BYTEWAX_NB_BASE_IMAGE=$(scripts/base-image.sh)",
            "--no-stack",
        )
    return client


# "auto" means the process runtime in tests (and in the tutorials run by nbval):
# docker tests ask for runtime="docker" explicitly.
os.environ.setdefault("BYTEWAX_NB_RUNTIME", "process")


@pytest.fixture
def kernel(tmp_path: Path) -> Iterator[tuple[KernelManager, Any]]:
    """A real python3 kernel (its state dir in tmp_path), ready; shut down at the end if
    the test left it running."""
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env={**os.environ, "BYTEWAX_NB_STATE_DIR": str(tmp_path / "state")}, cwd=str(tmp_path))
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    yield km, kc
    kc.stop_channels()
    if km.is_alive():
        km.shutdown_kernel(now=True)
    km.context.destroy(linger=0)  # its sockets closed now, not by a garbage collection later


class Load:
    """Closed-loop callers posting 0, 1, 2, ... to a gateway; every outcome is recorded.

    `outcomes` holds (sent at, status, body, payload) per request, in completion order;
    `answered_at[i]` is when `outcomes[i]` came back (monotonic seconds, as `sent at`).
    """

    def __init__(self, url: str, callers: int = 4, payload: Callable[[int], Any] = lambda n: n) -> None:
        self.url = url
        self.payload = payload
        self.outcomes: list[tuple[float, int, Any, int]] = []
        self.answered_at: list[float] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        # daemons: a caller left running by a failed test cannot keep pytest from exiting
        self._threads = [threading.Thread(target=self._loop, daemon=True) for _ in range(callers)]

    def _loop(self) -> None:
        from bytewax_nb.client import post

        n = 0
        while not self._stop.is_set():
            sent = time.monotonic()
            try:
                status, body, _ = post(self.url, self.payload(n), timeout=10)
            except Exception as exc:  # noqa: BLE001 - a caller left without an answer is an outcome too
                status, body = 0, repr(exc)
            with self._lock:  # the two lists stay in step
                self.outcomes.append((sent, status, body, n))
                self.answered_at.append(time.monotonic())
            n += 1

    def failed(self) -> list[tuple[float, int, Any, int]]:
        """Outcomes that were not a 200 (status 0: the caller got no HTTP answer)."""
        return [o for o in self.outcomes if o[1] != 200]

    def sent_after(self, moment: float) -> list[tuple[float, int, Any, int]]:
        return [o for o in self.outcomes if o[0] > moment]

    def answered_before(self, moment: float) -> list[tuple[float, int, Any, int]]:
        with self._lock:
            return [o for o, t in zip(self.outcomes, self.answered_at, strict=True) if t < moment]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        try:
            wait_until(lambda: len(self.outcomes) > 30, what="load flowing", show=self._last)
        except BaseException:
            self.__exit__()  # no `with` body ran, so no __exit__ would stop the callers
            raise
        return self

    def _last(self) -> str:
        with self._lock:
            return f"{len(self.outcomes)} outcomes, the last: {self.outcomes[-3:]}"

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)


class Gate:
    """Unpickling this blocks while a file exists: holds a replica in start-up (its
    configuration carries the bee, and the bee captures a gate)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (_wait_absent, (self.path,))


class Refuse:
    """Unpickling this raises while a file exists: a replica that cannot start (a model
    that claims what the first replica holds, say)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> Any:
        return (_refuse_if_present, (self.path,))


def _refuse_if_present(path: str) -> str:
    if os.path.exists(path):
        raise RuntimeError(f"{path} exists: this replica cannot start")
    return path


def _wait_absent(path: str) -> str:
    while os.path.exists(path):
        threading.Event().wait(0.02)
    return path
