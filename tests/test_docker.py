"""The docker runtime against a real Docker engine, real images and real containers.

Needs `BYTEWAX_NB_BASE_IMAGE` (scripts/base-image.sh builds one without a registry);
`.ci/run` provides both. Skip locally with `--no-docker`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import numpy as np
import psutil
import pytest
from conftest import Load, hello_swarm, missing, wait_until

from bytewax_nb import RemoteError, Swarm
from bytewax_nb.bus.child import Boot
from bytewax_nb.model.settings import BASE_IMAGE
from bytewax_nb.model.spec import BeeSpec
from bytewax_nb.runtime.docker import DockerLauncher, base_image_here, daemon_answers
from bytewax_nb.runtime.images import ImageBuilder

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def engine() -> Iterator[Any]:
    """The Docker engine, with a base image found as `runtime="auto"` finds one; images
    the tests built are removed at the end (the ones that were there stay)."""
    if not daemon_answers():
        missing("no Docker engine answers", "apt-get install docker.io; dockerd &", "--no-docker")
    if base_image_here() is None:
        missing(
            f"no base image: neither {BASE_IMAGE.name} names one present here nor is python:3.11-slim pulled",
            f"export {BASE_IMAGE.name}=$(scripts/base-image.sh) builds one without a registry",
            "--no-docker",
        )
    client = docker.from_env()
    before = len(ImageBuilder.built)
    yield client
    for tag in ImageBuilder.built[before:]:
        with contextlib.suppress(docker.errors.APIError):  # one a container still uses stays
            client.images.remove(tag, force=False)
    client.close()


def ours(engine: Any, swarm: str | None = None) -> list[dict[str, Any]]:
    """The swarm's containers as the list API gives them (no inspect: they come and go)."""
    label = "bytewax-nb.swarm" + (f"={swarm}" if swarm else "")
    found: list[dict[str, Any]] = engine.api.containers(all=True, filters={"label": label})
    return found


def test_hello_world_runs_in_labeled_containers_and_leaves_none(make_swarm: Any, engine: Any) -> None:
    # hello -> goodbye is a fused pair: one container per replica runs both bees
    swarm = hello_swarm(make_swarm, name="dk-hello", runtime="docker").start()
    assert swarm.status()["bees"]["goodbye"]["group"] == ["hello", "goodbye"]
    assert swarm.request("hello-world", {"name": "Bee"}) == "goodbye Bee"
    wait_until(lambda: any("hello Bee" in line for line in swarm.logs("hello")), what="the container's print")
    assert not any("hello Bee" in line for line in swarm.logs("goodbye"))  # each bee's lines its own
    bees = swarm.status()["bees"]
    assert (bees["hello"]["handled"], bees["goodbye"]["handled"]) == (1, 1)
    containers = ours(engine, "dk-hello")
    assert sorted(c["Labels"]["bytewax-nb.bee"] for c in containers) == ["hello"]
    names = sorted(c["Names"][0].rsplit(".", 1)[0] for c in containers)  # named as Compose does
    assert names == ["/dk-hello-hello-0"]
    assert {c["Labels"]["bytewax-nb.owner"] for c in containers} == {str(os.getpid())}
    assert all(c["HostConfig"]["NetworkMode"] == "host" for c in containers)
    swarm.stop()
    wait_until(lambda: not ours(engine, "dk-hello"), what="containers removed after stop")


def test_a_captured_numpy_array_works_and_the_image_is_reused(make_swarm: Any, engine: Any) -> None:
    weights = np.arange(5.0)

    def dot(payload: list[float]) -> float:
        return float(np.dot(weights, np.asarray(payload)))

    first = make_swarm("dk-np1", runtime="docker")
    first.gateway("in")
    first.bee(dot, input="in", name="dot")
    first.start()
    assert first.request("in", [1, 1, 1, 1, 1]) == 10.0
    built = ImageBuilder.builds
    first.stop()
    second = make_swarm("dk-np2", runtime="docker")  # same needs: nothing is built again
    second.gateway("in")
    second.bee(dot, input="in", name="dot", replicas=2)
    second.start()
    assert second.request("in", [0, 0, 0, 0, 2]) == 8.0
    assert ImageBuilder.builds == built
    # a redeploy reuses the image too: the function travels at start, not in the image
    second.bee(lambda p: float(np.sum(p)), input="in", name="dot", replicas=2)
    assert second.request("in", [1, 2, 3]) == 6.0
    assert ImageBuilder.builds == built


def test_a_captured_scikit_learn_model_is_served(make_swarm: Any, engine: Any) -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    iris = load_iris()
    model = LogisticRegression(max_iter=500).fit(iris.data, iris.target)
    swarm = make_swarm("dk-sk", runtime="docker")
    swarm.gateway("in")
    swarm.bee(lambda rows: model.predict(np.asarray(rows)).tolist(), input="in", name="model")
    swarm.start()
    rows = iris.data[::30].tolist()
    assert swarm.request("in", rows) == model.predict(iris.data[::30]).tolist()


def test_resource_limits_reach_docker(make_swarm: Any, engine: Any) -> None:
    swarm = make_swarm("dk-limits", runtime="docker")
    swarm.gateway("in")
    swarm.bee(lambda p: p, input="in", name="small", cpus=0.5, memory="256m", env={"SECRET": "s3"})
    swarm.start()
    (listed,) = ours(engine, "dk-limits")
    container = engine.api.inspect_container(listed["Id"])
    host = container["HostConfig"]
    assert host["NanoCpus"] == 500_000_000 and host["Memory"] == 256 * 1024 * 1024
    assert "SECRET=s3" in container["Config"]["Env"]
    assert "s3" not in json.dumps(swarm.status())  # env= reaches the container, not the status


def test_a_base_image_with_another_python_is_refused_clearly(make_swarm: Any, engine: Any) -> None:
    base = os.environ["BYTEWAX_NB_BASE_IMAGE"]
    with tempfile.TemporaryDirectory() as ctx:
        Path(ctx, "Dockerfile").write_text(
            f"FROM {base}\nRUN printf '#!/bin/sh\\necho 3.99\\n' > /usr/local/bin/python3 "
            "&& chmod +x /usr/local/bin/python3\n"
        )
        engine.images.build(path=ctx, tag="bytewax-nb-test:other-python", network_mode="none", rm=True)
    swarm = make_swarm("dk-old", runtime="docker")
    swarm.gateway("in")
    swarm.bee(lambda p: p, input="in", name="b", image="bytewax-nb-test:other-python")
    want = f"{sys.version_info.major}.{sys.version_info.minor}"
    try:
        with pytest.raises(Exception, match=rf"has Python 3\.99 but the kernel runs Python {want}"):
            swarm.start()
    finally:
        engine.images.remove("bytewax-nb-test:other-python", force=True)


@pytest.mark.slow
def test_a_killed_container_is_replaced_while_requests_keep_being_answered(
    make_swarm: Any, engine: Any
) -> None:
    swarm = make_swarm("dk-kill", runtime="docker")
    swarm.gateway("in", timeout=3)
    swarm.bee(lambda p: p, input="in", name="echo", replicas=2)
    swarm.start()
    with Load(swarm.url(), callers=3) as load:
        victim = next(c["Id"] for c in ours(engine, "dk-kill") if c["Labels"]["bytewax-nb.replica"] == "1")
        engine.api.kill(victim)

        def replaced() -> bool:
            ids = {c["Id"] for c in ours(engine, "dk-kill") if c["State"] == "running"}
            return victim not in ids and len(ids) == 2 and swarm.status()["bees"]["echo"]["ready"] == 2

        wait_until(replaced, timeout=30, what="a new container for replica 1")
        healed = time.monotonic()
        wait_until(lambda: len(load.sent_after(healed)) > 30, what="load after the restart")
    statuses = [status for _, status, _, _ in load.outcomes]
    assert set(statuses) <= {200, 504} and statuses.count(504) <= 6
    assert all(status == 200 for _, status, _, _ in load.sent_after(healed))


def test_a_stuck_call_is_answered_and_its_container_replaced(make_swarm: Any, engine: Any) -> None:
    def stuck(payload: Any) -> Any:
        if payload == "hang":
            time.sleep(3600)
        return payload

    swarm = make_swarm("dk-stuck", runtime="docker")
    swarm.gateway("in", timeout=30)
    swarm.bee(stuck, input="in", timeout=1)
    swarm.start()
    before = {c["Id"] for c in ours(engine, "dk-stuck")}
    with pytest.raises(RemoteError) as err:
        swarm.request("in", "hang")
    assert err.value.ename == "BeeTimeout" and "time.sleep(3600)" in err.value.traceback

    def replaced() -> bool:
        running = {c["Id"] for c in ours(engine, "dk-stuck") if c["State"] == "running"}
        return bool(running) and not running & before and swarm.status()["bees"]["stuck"]["ready"] == 1

    wait_until(replaced, timeout=30, what="a new container for the stuck bee")
    assert swarm.request("in", "ok") == "ok"


@pytest.mark.slow
def test_a_killed_owner_leaves_no_container(engine: Any, tmp_path: Path) -> None:
    script = tmp_path / "owner.py"
    script.write_text(
        "import os, signal\n"
        "from bytewax_nb import Swarm\n"
        "s = Swarm('dk-orphan', runtime='docker', on_log=None)\n"
        "s.gateway('in')\n"
        "s.bee(lambda p: p, input='in', name='echo', replicas=2)\n"
        "s.start()\n"
        "print('up', flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
    assert proc.wait(timeout=60) == -signal.SIGKILL
    wait_until(lambda: not ours(engine, "dk-orphan"), timeout=30, what="the orphaned containers gone")


def test_gc_removes_containers_of_a_dead_owner(
    engine: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BYTEWAX_NB_STATE_DIR", str(tmp_path / "state"))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    owner = dead.stdout.decode().strip()
    base = os.environ["BYTEWAX_NB_BASE_IMAGE"]
    stuck = engine.containers.run(
        base, ["sleep", "300"], detach=True, labels={"bytewax-nb.swarm": "dk-gc", "bytewax-nb.owner": owner}
    )
    mine = engine.containers.run(
        base,
        ["sleep", "300"],
        detach=True,
        labels={"bytewax-nb.swarm": "dk-gc", "bytewax-nb.owner": str(os.getpid())},
    )
    try:
        out = subprocess.run(["bytewax-nb", "gc"], capture_output=True, text=True, check=True).stdout
        assert f"removed container {stuck.short_id}, whose owner {owner} is gone" in out
        assert [c["Id"] for c in ours(engine, "dk-gc")] == [mine.id]  # a live owner's stays
    finally:
        for c in (stuck, mine):
            with contextlib.suppress(docker.errors.NotFound):
                c.remove(force=True)


def test_gc_removes_bee_images_of_another_bytewax_nb_and_keeps_the_rest(engine: Any) -> None:
    from io import BytesIO

    from bytewax_nb.runtime.images import IMAGE_LABEL, INSTALL_LABEL, RUNNER_LABEL, install_id, runner_hash

    dockerfile = f"FROM {os.environ['BYTEWAX_NB_BASE_IMAGE']}\n".encode()

    def image(tag: str, runner: str, install: str = install_id()) -> None:
        labels = {IMAGE_LABEL: "1", RUNNER_LABEL: runner, INSTALL_LABEL: install}
        engine.images.build(fileobj=BytesIO(dockerfile), tag=tag, labels=labels, network_mode="none", rm=True)

    names = ("stale", "used", "current", "elsewhere")
    stale, used, current, elsewhere = (f"bytewax-nb-bee:gc-{what}" for what in names)
    image(stale, "0" * 64)
    image(used, "1" * 64)
    image(current, runner_hash())
    image(elsewhere, "2" * 64, install="f" * 16)  # another venv's: its own gc decides
    user = engine.containers.create(used, ["true"])
    try:
        out = subprocess.run(["bytewax-nb", "gc"], capture_output=True, text=True, check=True).stdout
        assert f"removed image {stale}, built for another bytewax-nb" in out
        assert f"kept image {used}: a container uses it" in out
        tags = {t for i in engine.images.list(filters={"label": IMAGE_LABEL}) for t in i.tags}
        assert stale not in tags and {used, current, elsewhere} <= tags
        assert elsewhere not in out
        assert all(
            i.labels.get(RUNNER_LABEL) == runner_hash()
            for i in engine.images.list(filters={"label": IMAGE_LABEL})
            if used not in i.tags and i.labels.get(INSTALL_LABEL, install_id()) == install_id()
        )
    finally:
        user.remove(force=True)
        for tag in (stale, used, current, elsewhere):
            with contextlib.suppress(docker.errors.ImageNotFound):
                engine.images.remove(tag)


@pytest.mark.slow
@pytest.mark.parametrize("notebook", ["01-hello-swarm.ipynb", "02-ml-inference.ipynb"])
def test_the_tutorials_run_on_docker(notebook: str, tmp_path: Path, engine: Any) -> None:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(ROOT / "notebooks" / notebook, as_version=4)
    env_before = os.environ.get("BYTEWAX_NB_RUNTIME")
    os.environ["BYTEWAX_NB_RUNTIME"] = "docker"  # the kernel inherits it: "auto" means docker
    try:
        resources = {"metadata": {"path": str(tmp_path)}}
        NotebookClient(nb, timeout=300, kernel_name="python3", resources=resources).execute()
    finally:
        os.environ["BYTEWAX_NB_RUNTIME"] = env_before or "process"
    text = json.dumps(nb)
    assert "runtime auto -> docker" in text
    assert (
        "goodbye Bee" in text
        if notebook.startswith("01")
        else "all answers match the notebook's model: True" in text
    )
    assert not psutil.Process().children(recursive=True)


def test_a_failed_build_says_why(make_swarm: Any, engine: Any) -> None:
    swarm = make_swarm("dk-fail", runtime="docker")
    swarm.gateway("in")
    swarm.bee(lambda p: p, input="in", name="b", requirements=["bytewax-nb-no-such-package-xyz"])
    with pytest.raises(Exception, match=r"downloading wheels failed:(.|\n)*bytewax-nb-no-such-package-xyz"):
        swarm.start()
    assert not ours(engine, "dk-fail")


def test_a_crashed_container_leaves_its_output_in_the_logs(make_swarm: Any, engine: Any) -> None:
    from bytewax_nb import RemoteError

    def fragile(payload: str) -> str:
        if payload == "die":
            print("about to die", flush=True)
            os._exit(3)
        return payload

    swarm = make_swarm("dk-crash", runtime="docker")
    swarm.gateway("in", timeout=20)
    swarm.bee(fragile, input="in", name="fragile", retries=0)
    swarm.start()
    with pytest.raises(RemoteError) as info:  # at once, with how it died: not the gateway's 504
        swarm.request("in", "die", timeout=15)
    assert info.value.ename == "ReplicaDied" and "exited with code 3" in info.value.evalue
    assert "about to die" in info.value.traceback
    wait_until(
        lambda: any("exited with code 3" in line for line in swarm.logs("fragile")),
        what="the crash in the logs",
    )
    assert any("about to die" in line for line in swarm.logs("fragile"))
    wait_until(lambda: swarm.status()["bees"]["fragile"]["ready"] == 1, timeout=30, what="a new container")
    assert swarm.request("in", "alive") == "alive"


@pytest.mark.slow
def test_a_build_in_a_notebook_shows_a_progress_bar(engine: Any, tmp_path: Path) -> None:
    import nbformat
    from nbclient import NotebookClient

    from bytewax_nb.model.spec import BeeSpec

    def uses_six(payload: Any) -> Any:
        return payload

    tag = ImageBuilder(engine).tag_of(BeeSpec("b", uses_six, ("in",), requirements=("six",)))
    with contextlib.suppress(docker.errors.ImageNotFound):
        engine.images.remove(tag, force=True)  # so that this run has to build it
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(s)
        for s in (
            "%load_ext bytewax_nb\n%swarm new dk-bar --runtime docker\n%gateway in",
            "%%bee b --input in --requirements six\ndef uses_six(payload):\n    return payload",
            "%swarm stop",
        )
    ]
    resources = {"metadata": {"path": str(tmp_path)}}
    NotebookClient(nb, timeout=300, kernel_name="python3", resources=resources).execute()
    shown = [o.data["text/plain"] for o in nb.cells[1].outputs if o.output_type == "display_data"]
    assert any("[########################] 6/6 LABEL bytewax-nb.image=1" in text for text in shown), shown


def test_bridge_network_for_docker_desktop(
    make_swarm: Any, engine: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # what Docker Desktop needs: containers on a bridge, dialing host.docker.internal
    monkeypatch.setenv("BYTEWAX_NB_DOCKER_NETWORK", "bridge")
    swarm = hello_swarm(make_swarm, name="dk-bridge", runtime="docker").start()
    assert swarm.request("hello-world", {"name": "Bridge"}) == "goodbye Bridge"
    for listed in ours(engine, "dk-bridge"):
        host = engine.api.inspect_container(listed["Id"])["HostConfig"]
        assert host["NetworkMode"] == "bridge" and host["ExtraHosts"] == ["host.docker.internal:host-gateway"]


@pytest.mark.slow
@pytest.mark.parametrize("now", [False, True], ids=["shutdown", "killed"])
def test_a_kernel_exit_leaves_no_container(engine: Any, kernel: tuple[Any, Any], now: bool) -> None:
    km, kc = kernel
    reply = kc.execute_interactive("%load_ext bytewax_nb\n%swarm new dk-kernel --runtime docker\n%gateway in")
    assert reply["content"]["status"] == "ok"
    reply = kc.execute_interactive("%%bee --input in --replicas 2\ndef echo(p):\n    return p", timeout=120)
    assert reply["content"]["status"] == "ok"
    assert len(ours(engine, "dk-kernel")) == 2
    km.shutdown_kernel(now=now)  # polite: atexit stops the swarm; killed: stdin closes
    wait_until(lambda: not ours(engine, "dk-kernel"), timeout=30, what="the kernel's containers gone")


def test_a_module_imported_inside_the_bee_is_in_its_image(make_swarm: Any, engine: Any) -> None:
    def norm(payload: list[float]) -> float:
        import numpy as np  # imported here only: no captured value shows it

        return float(np.linalg.norm(payload))

    swarm = make_swarm("dk-inner", runtime="docker")
    swarm.gateway("in")
    swarm.bee(norm, input="in", name="norm")
    swarm.start()
    assert swarm.request("in", [3.0, 4.0]) == 5.0


def test_an_image_is_built_once_and_holds_what_its_tag_promises(engine: Any, tmp_path: Path) -> None:
    import threading

    from bytewax_nb.model.spec import BeeSpec

    def uses_six(payload: Any) -> Any:
        return payload

    spec = BeeSpec("b", uses_six, ("in",), requirements=("six",))
    builder = ImageBuilder(engine)
    tag = builder.tag_of(spec)
    with contextlib.suppress(docker.errors.ImageNotFound):
        engine.images.remove(tag, force=True)
    # a download cut short by an older version left a folder without its marker
    base_id = engine.images.get(os.environ["BYTEWAX_NB_BASE_IMAGE"]).id
    _, digest, _ = ImageBuilder.tag_for(spec, base_id)
    stale = builder._cache / digest[:16]
    shutil.rmtree(stale, ignore_errors=True)
    stale.mkdir(parents=True)
    (stale / "six-0.0.1-py3-none-any.whl").write_bytes(b"not a wheel")
    # two owners wanting the same image at once: one builds, the other finds it
    before = ImageBuilder.builds
    tags: list[str] = []
    threads = [
        threading.Thread(target=lambda: tags.append(ImageBuilder(engine).image_for(spec))) for _ in "ab"
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert tags == [tag, tag] and ImageBuilder.builds == before + 1
    out = engine.containers.run(tag, ["python3", "-c", "import six; print(six.__name__)"], remove=True)
    assert out.decode().strip() == "six"
    # a tag that does not hold what it promises (here: another image under that name) is built again
    engine.images.get(os.environ["BYTEWAX_NB_BASE_IMAGE"]).tag(tag)
    assert ImageBuilder(engine).image_for(spec) == tag and ImageBuilder.builds == before + 2
    pinned = engine.images.get(tag).labels["bytewax-nb.requirements"].split()
    assert {p.split("==")[0] for p in pinned} >= {"blake3", "cloudpickle", "pyzmq", "six"}


def test_a_bee_gets_what_it_needs_to_read_its_producers_results(make_swarm: Any, engine: Any) -> None:
    scale = np.array([1.0, 2.0])

    def scaled(payload: list[float]) -> Any:
        return scale * payload  # a numpy array travels to the next bee

    def biggest(values: Any) -> float:  # never names numpy, yet unpickles its array
        return float(values.max())

    swarm = make_swarm("dk-up", runtime="docker", fuse=False)  # the array crosses processes
    swarm.gateway("in")
    swarm.bee(scaled, input="in", name="scaled")
    swarm.bee(biggest, input="scaled", name="biggest")
    swarm.start()
    assert swarm.request("in", [3.0, 1.0]) == 3.0


def test_a_stream_crosses_containers_chunk_by_chunk(make_swarm: Any, engine: Any) -> None:
    # two containers: the generator's chunks travel over the bus to the next bee's
    swarm = make_swarm("dk-stream", runtime="docker", fuse=False)
    swarm.gateway("in", timeout=20)

    def words(text: str) -> Any:
        yield from text.split()

    swarm.bee(words, input="in", name="words")
    swarm.bee(lambda w: w.upper() if w != "skip" else None, input="words", name="upper", replicas=2)
    swarm.start()
    assert list(swarm.stream("in", "a swarm skip streams")) == ["A", "SWARM", "STREAMS"]
    assert swarm.request("in", "one two") == ["ONE", "TWO"]  # no Accept: the chunks as one list
    assert {c["Labels"]["bytewax-nb.bee"] for c in ours(engine, "dk-stream")} == {"words", "upper"}


def test_an_autoscaled_bee_in_containers_follows_a_step_load_down_to_zero_and_back(engine: Any) -> None:
    swarm = Swarm("autodock", runtime="docker", on_log=None)
    try:
        swarm.gateway("in", timeout=30)

        @swarm.bee(input="in", min_replicas=0, max_replicas=2, idle_s=2.0)
        def work(p: Any) -> Any:
            import time

            end = time.perf_counter() + 0.005  # about 5 ms of CPU a call
            while time.perf_counter() < end:
                pass
            return p

        swarm.start()
        with Load(swarm.url("in"), callers=8) as load:
            wait_until(
                lambda: swarm.status()["bees"]["work"]["ready"] == 2, timeout=60, what="a second container"
            )
        assert not load.failed(), load.failed()[:3]  # every request answered
        assert len(ours(engine, "autodock")) == 2  # a container per replica
        # idle: one drained container at a time, down to none
        wait_until(lambda: ours(engine, "autodock") == [], timeout=60, what="the bee's containers gone")
        assert swarm.status()["bees"]["work"]["state"] == "idle"
        assert swarm.request("in", {"n": 7}) == {"n": 7}  # a new container, at once
        cold = wait_until(
            lambda: swarm.status()["bees"]["work"]["autoscale"]["cold_start_s"],
            what="the cold start measured",
        )
        print(f"docker cold start: {cold:.2f} s")
        assert any("cold start took" in line for line in swarm.logs("work"))
    finally:
        swarm.stop(drain_timeout=1)
    assert ours(engine, "autodock") == []


def test_the_launchers_close_removes_a_container_no_one_stopped(engine: Any) -> None:
    """A launch that raced the swarm's stop leaves a running container no member holds:
    the launcher's close removes it (and any it made and has not seen removed)."""
    launcher = DockerLauncher("close-test")
    spec = BeeSpec(name="idle", fn=lambda p: p, inputs=("in",))
    launcher._images["idle"] = str(base_image_here())  # no bee image needed: nothing runs a bee
    boot = Boot(key=b"k" * 32, control="tcp://127.0.0.1:1", identity="bee:idle:0:1.x")
    # a process that outlives its stdin, as a replica in start-up would for a while
    launcher.launch("bee:idle:0:1.x", "http.server", boot, {}, lambda *_: None, spec)
    assert len(ours(engine, "close-test")) == 1
    launcher.close()
    assert ours(engine, "close-test") == []


@pytest.mark.parametrize("moment", ["1 -> 0", "0 -> 1"])
# the change the stop ends must end quietly, not as an exception in the autoscaler's thread
@pytest.mark.filterwarnings("error::pytest.PytestUnhandledThreadExceptionWarning")
def test_a_stop_while_the_autoscaler_retires_or_starts_a_container_leaves_none(
    engine: Any, moment: str
) -> None:
    """The stop races the autoscaler's change: every container is gone when it returns,
    and the caller that woke the bee gets an answer or an error, never silence."""
    name = "autostop-" + ("down" if moment == "1 -> 0" else "up")
    swarm = Swarm(name, runtime="docker", on_log=None)
    outcome: list[Any] = []
    caller = threading.Thread(target=lambda: outcome.append(_outcome(swarm, {"n": 1})), daemon=True)
    try:
        swarm.gateway("in", timeout=30)
        swarm.bee(lambda p: p, input="in", name="echo", min_replicas=0, max_replicas=2, idle_s=0.5)
        swarm.start()
        assert swarm.request("in", {"n": 0}) == {"n": 0}
        if moment == "0 -> 1":  # idle, down to none, then woken: a container starts
            wait_until(lambda: ours(engine, name) == [], timeout=30, what="down to none")
            caller.start()
        # when the autoscaler says it decided, its change is under way
        line = f"autoscale: {moment} replicas"
        wait_until(lambda: any(line in x for x in swarm.logs("echo")), timeout=30, what=line)
    finally:
        swarm.stop(drain_timeout=1)  # at once: the change is under way
    assert ours(engine, name) == []
    if moment == "0 -> 1":
        caller.join(timeout=30)
        assert len(outcome) == 1 and outcome[0] in ({"n": 1}, "error"), outcome


def _outcome(swarm: Swarm, payload: Any) -> Any:
    try:
        return swarm.request("in", payload)
    except Exception:  # noqa: BLE001 - an error is an answer here; silence is not
        return "error"
