"""Deployed stacks on the real Docker engine in Swarm mode (`.ci/run` runs `docker swarm init`).

The tutorials are deployed with the real command (`bytewax-nb deploy NOTEBOOK`), loaded
with real HTTP callers while tasks are scaled, killed and rolled over, attached to from
a real kernel, and undeployed; every request is counted (answered, each error status,
unanswered). Skip locally with --no-stack.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from conftest import Load, swarm_manager, wait_until

from bytewax_nb.client import post
from bytewax_nb.stack.attach import StackLink

# a deploy builds images and runs a notebook first: minutes on a loaded machine, not seconds
pytestmark = [pytest.mark.stack, pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(300)]
ROOT = Path(__file__).resolve().parents[1]
STACK = "bxnb-test-hello"
NAMESPACE = "com.docker.stack.namespace"


def _engine() -> Any:
    return swarm_manager()


def _cli(*args: str, timeout: float = 600) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "bytewax_nb.cli", *args], capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"bytewax-nb {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _url(out: str) -> str:
    return next(line.split(" at ")[1].strip() for line in out.splitlines() if " at http" in line)


def _leftovers(client: Any, stack: str) -> list[str]:
    label = {"label": f"{NAMESPACE}={stack}"}
    found = [
        *(f"service {s.name}" for s in client.services.list(filters=label)),
        *(f"container {c.id[:12]}" for c in client.containers.list(all=True, filters=label, sparse=True)),
        *(f"network {n.name}" for n in client.networks.list(filters=label)),
        *(f"secret {s.name}" for s in client.secrets.list(filters=label)),
        *(f"config {c.name}" for c in client.configs.list(filters=label)),
        *(f"volume {v.name}" for v in client.volumes.list(filters=label)),
    ]
    return found


def _tally(load: Load) -> Counter[str]:
    """Every request: answered (200), each error status, or unanswered (no HTTP answer)."""
    return Counter(
        "answered" if s == 200 else ("unanswered" if s == 0 else str(s)) for _, s, _, _ in load.outcomes
    )


def _task_ids(client: Any, service: str) -> set[str]:
    return {t["ID"] for t in client.services.get(service).tasks(filters={"desired-state": "running"})}


@pytest.fixture(scope="module")
def hello() -> Iterator[tuple[Any, str]]:
    """The hello tutorial deployed as a stack by the real command; removed at the end."""
    client = _engine()
    try:
        out = _cli("deploy", str(ROOT / "notebooks" / "01-hello-swarm.ipynb"), "--stack", STACK)
        yield client, _url(out)
    finally:
        if client.services.list(filters={"label": f"{NAMESPACE}={STACK}"}):
            subprocess.run([sys.executable, "-m", "bytewax_nb.cli", "undeploy", STACK], capture_output=True)
        client.close()


def _report(client: Any) -> str:
    """What the engine says of the stack's tasks, and its controller's and hub's last
    lines: printed when a wait on the stack fails, as CI keeps nothing else."""
    lines = []
    for service in client.services.list(filters={"label": f"{NAMESPACE}={STACK}"}):
        for task in sorted(service.tasks(), key=lambda t: t["CreatedAt"])[-4:]:
            st = task["Status"]
            lines.append(
                f"{service.name} task {task['ID'][:8]} slot {task.get('Slot')}: {st['State']}"
                f" (wants {task['DesiredState']}) at {st['Timestamp']}: {st.get('Message', '')}"
                f" {st.get('Err', '')} exit {st.get('ContainerStatus', {}).get('ExitCode')}"
            )
        if service.name.endswith(("_controller", "_hub")):
            logs = b"".join(service.logs(stdout=True, stderr=True, tail=25, timestamps=True))
            lines += [f"  | {line}" for line in logs.decode(errors="replace").splitlines()]
    return "\n".join(lines)


def _running_container(client: Any, service: str) -> Any:
    """The container of the service's running task (the stack's services have one each,
    or the first of hello's)."""
    task = client.services.get(f"{STACK}_{service}").tasks(filters={"desired-state": "running"})[0]
    return client.containers.get(task["Status"]["ContainerStatus"]["ContainerID"])


def _serving(client: Any, link: StackLink) -> None:
    """The stack serves, both hello replicas ready (what each test starts from)."""

    def serving() -> bool:
        st = link.status()
        return bool(st.get("ready")) and st["bees"]["hello"]["ready"] == 2

    wait_until(
        serving,
        timeout=120,
        what="the stack serving with 2 hello replicas",
        show=lambda: _report(client),
    )


def _named(n: int) -> dict[str, str]:
    return {"name": f"caller-{n}"}


def test_the_deployed_tutorial_answers_and_serves_its_status(hello: tuple[Any, str]) -> None:
    client, url = hello
    status, body, _ = post(url, {"name": "Stack"})
    assert (status, body) == (200, "goodbye Stack")
    services = {s.name: s for s in client.services.list(filters={"label": f"{NAMESPACE}={STACK}"})}
    assert set(services) == {f"{STACK}_{n}" for n in ("controller", "hub", "hello", "goodbye")}
    for service in services.values():  # no virtual IP: the kernel here has no IPVS
        assert service.attrs["Spec"]["EndpointSpec"]["Mode"] == "dnsrr"
    # the tutorial scaled `hello` to 2 before it was deployed: the service has 2 tasks
    assert services[f"{STACK}_hello"].attrs["Spec"]["Mode"]["Replicated"]["Replicas"] == 2
    link = StackLink(STACK)

    # the deploy returns once the gateway answers; a bee is "ready" in the status once its
    # replicas are linked to every replica of their producers, which follows within seconds
    def both_ready() -> dict[str, Any] | None:
        s = link.status()
        bees = s.get("bees", {})
        hello, goodbye = bees.get("hello", {}), bees.get("goodbye", {})
        ok = s.get("ready") and hello.get("ready") == 2 and goodbye.get("state") == "ready"
        return s if ok else None

    st = wait_until(both_ready, timeout=60, what="the stack's status: hello 2 ready, goodbye ready")
    assert st["bees"]["hello"]["state"] == "ready" and st["bees"]["goodbye"]["ready"] == 1
    # the controller's figures reach `/swarm` within a second or so
    wait_until(
        lambda: link.status()["bees"]["goodbye"]["handled"] >= 1, timeout=10, what="the request counted"
    )
    # the key never appears where it could be read: not in any service's spec
    specs = json.dumps([s.attrs["Spec"] for s in services.values()])
    assert "curve" not in specs and '"key"' not in specs


def test_scaling_by_hand_and_by_the_api_under_load_loses_nothing(hello: tuple[Any, str]) -> None:
    client, url = hello
    link = StackLink(STACK)
    _serving(client, link)
    running = _task_ids(client, f"{STACK}_hello")
    with Load(url, callers=6, payload=_named) as load:
        subprocess.run(["docker", "service", "scale", "--detach", f"{STACK}_hello=3"], check=True)
        wait_until(
            lambda: link.status()["bees"]["hello"]["ready"] == 3,
            timeout=60,
            what="3 replicas of hello serving",
        )
        # scaling up adds tasks: the running ones are not replaced
        assert running < _task_ids(client, f"{STACK}_hello")
        link.scale("hello", 1, timeout=60)
        wait_until(
            lambda: len(link.status()["bees"]["hello"]["replicas"]) == 1, timeout=60, what="one replica left"
        )
        link.scale("hello", 2, timeout=60)
    tally = _tally(load)
    assert tally == Counter(answered=len(load.outcomes)), tally
    wait_until(lambda: len(link.status()["bees"]["hello"]["replicas"]) == 2, timeout=30, what="2 replicas")


def _cut(body: Any) -> str:
    """How a caller with no HTTP answer was left: never accepted, cut off, or waiting."""
    text = str(body)
    if "refused" in text:
        return "refused"  # no hub listened: the request never entered
    if "timed out" in text or "timeout" in text.lower():
        return "timed out"  # silence: what must never happen
    return "cut off"  # its connection closed with the hub's task: an error, not silence


def test_killed_tasks_bee_hub_and_controller_heal_and_every_request_is_counted(
    hello: tuple[Any, str],
) -> None:
    client, url = hello
    link = StackLink(STACK)

    def kill(service: str) -> Any:
        container = _running_container(client, service)
        container.kill()
        return container

    def gone(container: Any) -> bool:
        container.reload()
        return bool(container.status != "running")

    def figures() -> tuple[int, int, bool]:
        st = link.status()
        hello_bee = st.get("bees", {}).get("hello", {})
        healed = bool(st.get("ready")) and hello_bee.get("ready") == 2
        return (st.get("hub") or {}).get("restarts", 0), hello_bee.get("deaths", 0), healed

    def seen() -> str:
        return f"{figures()} (hub restarts, hello deaths, healed)\n{_report(client)}"

    _serving(client, link)
    with Load(url, callers=6, payload=_named) as load:
        # all three die while no controller runs: the restarted one still counts them
        killed = time.monotonic()
        hub = [kill(service) for service in ("controller", "hello", "hub")][-1]
        wait_until(lambda: gone(hub), timeout=30, what="the hub's task gone")
        hub_gone = time.monotonic()  # seen dead: no request sent after this met it
        wait_until(
            lambda: figures() == (1, 1, True),
            timeout=90,
            what="hub and hello healed and counted",
            show=seen,
        )
        healed = time.monotonic()  # the new hub answered, ready, with both hello replicas
        # a bee task dying with a controller watching: counted, and nothing lost
        again = time.monotonic()
        kill("hello")
        wait_until(lambda: figures() == (1, 2, True), timeout=60, what="hello healed again", show=seen)
        # a new controller carries on from the counts the hub last heard, not from zero
        since = link.status()["controller_since"]
        kill("controller")
        wait_until(
            lambda: link.status().get("controller_since", since) != since, timeout=60, what="a new controller"
        )
        # (had it started from zero, the counts would stay (0, 0) however long one waits)
        wait_until(lambda: figures() == (1, 2, True), timeout=30, what="the counts carried on", show=seen)
        mark = len(load.outcomes)
        wait_until(lambda: len(load.outcomes) > mark + 300, timeout=30, what="requests after healing")
    tally = _tally(load)
    cuts = Counter(_cut(o[2]) for o in load.outcomes if o[1] == 0)
    print("kill test tally:", dict(tally), dict(cuts), f"healed {healed - killed:.1f} s after the kills")
    # every caller got an answer or an error, none was left waiting; only requests that
    # reached the hub's task before it was gone were cut off (those it held, and those
    # the dying task's socket still took in); the rest of the outage was refused
    # connections: requests that never entered
    assert set(tally) <= {"answered", "unanswered"}, tally
    assert set(cuts) <= {"refused", "cut off"}, cuts
    cut = [o[0] for o in load.outcomes if o[1] == 0 and _cut(o[2]) == "cut off"]
    assert all(t < hub_gone for t in cut), [round(t - killed, 2) for t in cut]
    # before the kills, and once the new hub answers, every request is answered: the
    # killed bee task's messages are sent again, the controller is not on their path
    assert {o[1] for o in load.answered_before(killed)} == {200}
    after = load.sent_after(healed)
    assert after and all(o[1] == 200 for o in after), Counter(
        (o[1], _cut(o[2])) for o in after if o[1] != 200
    )
    assert load.sent_after(again) and all(o[1] == 200 for o in load.sent_after(again))
    assert all(o[2] == f"goodbye caller-{o[3]}" for o in load.outcomes if o[1] == 200)


def test_a_controller_cut_off_without_a_word_is_replaced_and_every_task_finds_the_new_one(
    hello: tuple[Any, str],
) -> None:
    """The killed controller's network is cut first, so no FIN or RST reaches the tasks
    (as when a node vanishes, or a busy engine tears a namespace down first): each
    task's connection to it looks alive, yet it must find the controller's next task."""
    client, url = hello
    link = StackLink(STACK)
    _serving(client, link)
    since = link.status()["controller_since"]
    container = _running_container(client, "controller")
    pid = str(container.attrs["State"]["Pid"])
    for chain in ("OUTPUT", "INPUT"):
        subprocess.run(["nsenter", "-t", pid, "-n", "iptables", "-I", chain, "-j", "DROP"], check=True)
    container.kill()
    wait_until(
        lambda: link.status().get("controller_since", since) != since,
        timeout=60,
        what="a new controller",
        show=lambda: _report(client),
    )
    # the new controller's status: every task registered with it, both hello replicas
    _serving(client, link)
    wait_until(
        lambda: link.status()["bees"]["goodbye"]["ready"] == 1,
        timeout=30,
        what="goodbye registered",
        show=lambda: _report(client),
    )
    with Load(url, callers=4, payload=_named) as load:
        mark = len(load.outcomes)
        wait_until(lambda: len(load.outcomes) > mark + 200, timeout=30, what="requests after the cut")
    assert _tally(load) == Counter(answered=len(load.outcomes)), _tally(load)


def test_a_changed_bee_rolls_over_under_load_and_nothing_else_restarts(
    hello: tuple[Any, str], tmp_path: Path
) -> None:
    client, url = hello
    nb = json.loads((ROOT / "notebooks" / "01-hello-swarm.ipynb").read_text())
    for cell in nb["cells"]:
        source = "".join(cell["source"])
        if 'ctx.respond(f"goodbye' in source:
            cell["source"] = source.replace("goodbye {payload", "farewell {payload")
    changed = tmp_path / "hello-changed.ipynb"
    changed.write_text(json.dumps(nb))
    _serving(client, StackLink(STACK))
    untouched = {s: _task_ids(client, f"{STACK}_{s}") for s in ("hub", "hello", "controller")}
    with Load(url, callers=6, payload=_named) as load:
        _cli("deploy", str(changed), "--stack", STACK)
        wait_until(
            lambda: str(load.outcomes[-1][2]).startswith("farewell"), timeout=30, what="the new version"
        )
    tally = _tally(load)
    assert tally == Counter(answered=len(load.outcomes)), tally
    answers = [str(o[2]).split()[0] for o in sorted(load.outcomes)]
    assert answers[0] == "goodbye" and answers[-1] == "farewell"
    assert {s: _task_ids(client, f"{STACK}_{s}") for s in untouched} == untouched


def test_a_kernel_attaches_reads_status_sends_and_sees_the_widget(
    hello: tuple[Any, str], kernel: tuple[Any, Any]
) -> None:
    _, kc = kernel
    code = (
        "%load_ext bytewax_nb\n"
        f"%swarm attach {STACK}\n"
        "from bytewax_nb.notebook.magics import current_swarm\n"
        "from bytewax_nb.widget import SwarmWidget\n"
        "s = current_swarm()\n"
        "answer = s.request('hello-world', {'name': 'kernel'})\n"
        "w = SwarmWidget.of(s)\n"
        "st = s.status()\n"
    )
    reply = kc.execute_interactive(
        code,
        timeout=60,
        user_expressions={
            "answer": "answer",
            "ready": "st['ready']",
            "bees": "sorted(st['bees'])",
            "graph": "sorted(n['id'] for n in w.nodes)",
        },
    )
    assert reply["content"]["status"] == "ok", reply["content"]
    found = {k: v["data"]["text/plain"] for k, v in reply["content"]["user_expressions"].items()}
    assert found["answer"] in ("'goodbye kernel'", "'farewell kernel'")
    assert found["ready"] == "True"
    assert found["bees"] == "['goodbye', 'hello']"
    assert found["graph"] == "['goodbye', 'hello', 'hello-world']"
    # `%bee logs` reads the bee's service logs; `%send` goes through the stack's gateway
    shown: list[str] = []

    def keep(msg: dict[str, Any]) -> None:
        if msg["msg_type"] == "stream":
            shown.append(msg["content"]["text"])
        elif msg["msg_type"] in ("execute_result", "display_data"):
            shown.append(msg["content"]["data"].get("text/plain", ""))

    cells = '%bee logs hello\n%send hello-world {"name": "magic"}\n'
    reply = kc.execute_interactive(cells, timeout=60, output_hook=keep)
    assert reply["content"]["status"] == "ok", reply["content"]
    text = "".join(shown)
    assert "hello kernel" in text  # printed by the hello task that took the kernel's request
    assert "goodbye magic" in text or "farewell magic" in text


def test_the_command_line_works_on_a_stack(hello: tuple[Any, str]) -> None:
    assert STACK in _cli("list")
    assert "goodbye" in _cli("status", STACK)
    assert json.loads(_cli("send", "hello-world", '{"name": "cli"}', "--swarm", STACK)).endswith("cli")
    assert any(line.startswith("[hello]") for line in _cli("logs", STACK, "hello", "-n", "5").splitlines())


def test_undeploy_removes_everything_the_stack_made_and_nothing_else(hello: tuple[Any, str]) -> None:
    client, _ = hello
    others = sorted(s.name for s in client.secrets.list())
    assert _leftovers(client, STACK)
    _cli("undeploy", STACK)
    assert _leftovers(client, STACK) == []
    mine = f"{STACK}_"
    assert sorted(s.name for s in client.secrets.list()) == [n for n in others if not n.startswith(mine)]
    assert shutil.which("docker")


def test_the_ml_tutorial_deployed_answers_as_the_notebooks_model() -> None:
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression

    client = _engine()
    stack = "bxnb-test-iris"
    try:
        url = _url(_cli("deploy", str(ROOT / "notebooks" / "02-ml-inference.ipynb"), "--stack", stack))
        iris = load_iris()  # the notebook's model, fitted the same way here
        clf = LogisticRegression(max_iter=500).fit(iris.data, iris.target)
        rows = list(range(len(iris.data)))
        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(lambda i: post(url, {"features": iris.data[i].tolist()}), rows))
        assert {status for status, _, _ in answers} == {200}
        expected = [str(iris.target_names[k]) for k in clf.predict(iris.data)]
        assert [body["species"] for _, body, _ in answers] == expected
        assert all(0.0 < body["confidence"] <= 1.0 for _, body, _ in answers)
        # the model bee's 2 replicas are the stack's, counted by its controller
        link = StackLink(stack)
        status = wait_until(
            lambda: (st := link.status())["bees"]["model"]["handled"] >= 150 and st,
            timeout=15,
            what="the controller's figures counting the requests",
        )
        assert status["bees"]["model"]["ready"] == 2
        # a caller's mistake is an error for that caller only
        bad_status, bad, _ = post(url, {"features": [1, 2]})
        assert bad_status == 500 and bad["bee"] == "preprocess" and "expected 4 features" in bad["error"]
        assert post(url, {"features": iris.data[0].tolist()})[1]["species"] == expected[0]
    finally:
        if client.services.list(filters={"label": f"{NAMESPACE}={stack}"}):
            subprocess.run([sys.executable, "-m", "bytewax_nb.cli", "undeploy", stack], capture_output=True)
        client.close()


_CANNOT_START = [
    "from bytewax_nb import Swarm\nimport os\nswarm = Swarm('cannot-start')\nswarm.gateway('in')",
    # a bee whose code loads here but not in a stack's task: what works in the notebook
    # and fails where it is deployed (a path, a variable, a driver that is not there)
    "class Bomb:\n    def __reduce__(self):\n        return (explode, ())\n\n"
    "def explode():\n    if os.environ.get('BYTEWAX_NB_STACK'):\n"
    "        raise RuntimeError('this bee cannot start in a stack')\n\n"
    "bomb = Bomb()\n\n@swarm.bee(input='in')\ndef fragile(p):\n    return [p, bomb is None]\n\n"
    "swarm.start()",
]


def test_a_deploy_that_cannot_start_says_why_in_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    import nbformat

    client = _engine()
    stack = "bxnb-test-fails"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(src) for src in _CANNOT_START]
    path = tmp_path / "fails.ipynb"
    nbformat.write(nb, str(path))
    try:
        for keep in (False, True):
            command = ["deploy", str(path), "--stack", stack, "--deploy-timeout", "900"]
            done = subprocess.run(
                [sys.executable, "-m", "bytewax_nb.cli", *command, *(["--keep-on-failure"] if keep else [])],
                capture_output=True,
                text=True,
                timeout=900,
            )
            assert done.returncode == 1, done.stdout + done.stderr
            said = [line for line in done.stderr.splitlines() if line.startswith("bytewax-nb:")]
            assert len(said) == 1 and "Traceback" not in done.stderr and "\x1b[" not in done.stderr, (
                done.stderr
            )
            # from the tasks failing alike, not from the 900 s deadline
            assert f"deploy of stack '{stack}' failed: StackError: stack '{stack}' cannot start:" in said[0]
            assert f"service {stack}_fragile failed 3 times: RuntimeError: this bee cannot start" in said[0]
            if keep:
                assert "removed" not in said[0]
                assert f"service {stack}_fragile" in _leftovers(client, stack)
            else:
                assert said[0].endswith("(the new stack was removed; --keep-on-failure keeps it)")
                assert _leftovers(client, stack) == []
    finally:
        if client.services.list(filters={"label": f"{NAMESPACE}={stack}"}):
            subprocess.run([sys.executable, "-m", "bytewax_nb.cli", "undeploy", stack], capture_output=True)
        client.close()


def _fixed_port_notebook(folder: Path, port: int) -> Path:
    """What anyone who wants a stable URL writes: a gateway on a fixed port, and cells
    that talk to the swarm as one does while building it."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(src)
        for src in (
            "%load_ext bytewax_nb\n%swarm new fixed-port",
            f"%gateway gw --port {port}",
            "%%bee --input gw\ndef echo(payload):\n    return {'echo': payload}",
            '%send gw {"x": 1}',
            "from bytewax_nb import current_swarm\nanswer = current_swarm().request('gw', 2)",
            "assert answer == {'echo': 2}",
            "%swarm stop",
        )
    ]
    path = folder / "fixed.ipynb"
    nbformat.write(nb, str(path))
    return path


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def test_a_fixed_port_notebook_deploys_from_its_declaration_alone_and_answers_on_that_port(
    tmp_path: Path,
) -> None:
    import socket

    client = _engine()
    stack, port = "bxnb-test-fixed", _free_port()
    path = _fixed_port_notebook(tmp_path, port)
    state = tmp_path / "state"  # records a swarm started here would leave
    env = {**os.environ, "BYTEWAX_NB_STATE_DIR": str(state)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "bytewax_nb.cli", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
        )

    try:
        # the port is held by another process all through the export: nothing of the swarm
        # binds it (or anything) here, so the export does not notice
        with socket.socket() as holder:
            holder.bind(("0.0.0.0", port))
            holder.listen()
            done = cli("export", str(path), "--stack", stack, "-o", str(tmp_path / "out"))
        assert done.returncode == 0, done.stderr
        said = done.stdout + done.stderr
        assert "without encryption" not in said  # the kernel reading the notebook speaks over IPC
        # the cells that talk to the swarm are skipped (and the one that uses their answer)
        assert said.count("skipped: NotRunningHere") == 2 and "cell 5 skipped: NameError" in said, said
        assert f"published: {port}" in (tmp_path / "out" / "compose.yaml").read_text()
        assert not list(state.glob("*.json")) and not [p for p in state.glob("*") if p.is_dir()]
        # deployed, it answers on that port
        done = cli("deploy", str(path), "--stack", stack)
        assert done.returncode == 0, done.stderr
        url = _url(done.stdout)
        assert url.endswith(f":{port}/gateways/gw")
        assert post(url, {"y": 3})[:2] == (200, {"echo": {"y": 3}})
    finally:
        if client.services.list(filters={"label": f"{NAMESPACE}={stack}"}):
            subprocess.run([sys.executable, "-m", "bytewax_nb.cli", "undeploy", stack], capture_output=True)
        client.close()


def test_the_streaming_tutorial_deployed_streams_and_speaks_the_inference_protocol() -> None:
    import json as _json

    import numpy as np
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    from bytewax_nb import client as bxclient

    client = _engine()
    stack = "bxnb-test-stream"
    try:
        url = _url(_cli("deploy", str(ROOT / "notebooks" / "04-streaming-text.ipynb"), "--stack", stack))
        prompt = {"start": "Beautiful is ", "words": 6}
        chunks = list(bxclient.stream(url, prompt))  # NDJSON, chunk by chunk, through the stack's hub
        assert len(chunks) == 6 and all(isinstance(c, str) for c in chunks)
        assert bxclient.call(url, prompt).value == chunks  # the same chunks as one list
        status, err, _ = post(url, {"start": 4})
        assert status == 422 and {e["pointer"] for e in err["errors"]} == {"", "/start"}
        base = url.rsplit("/gateways/", 1)[0]
        doc = _json.loads(subprocess.run(["curl", "-s", base + "/openapi.json"], capture_output=True).stdout)
        assert doc["paths"]["/gateways/complete"]["post"]["requestBody"]["content"]["application/json"]
        # the inference protocol, HTTP (the JSON bridge) and gRPC (the port the notebook chose)
        triton = httpclient.InferenceServerClient(url.split("/")[2])
        payload = httpclient.InferInput("payload", [1], "BYTES")
        payload.set_data_from_numpy(np.array([_json.dumps(prompt).encode()], dtype=object))
        assert _json.loads(triton.infer("complete", [payload]).as_numpy("answer")[0]) == chunks
        triton.close()
        (hub,) = [
            s
            for s in client.services.list(filters={"label": f"{NAMESPACE}={stack}"})
            if s.name.endswith("_hub")
        ]
        published = {p["PublishedPort"] for p in hub.attrs["Spec"]["EndpointSpec"]["Ports"]}
        (grpc_port,) = published - {int(url.split(":")[2].split("/")[0])}
        streamed: list[Any] = []
        rpc = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        rpc.start_stream(
            callback=lambda result, error: streamed.append(error or result.as_numpy("answer")[0])
        )
        request = grpcclient.InferInput("payload", [1], "BYTES")
        request.set_data_from_numpy(np.array([_json.dumps(prompt).encode()], dtype=object))
        rpc.async_stream_infer("complete", [request])
        rpc.stop_stream()
        rpc.close()
        assert [_json.loads(s) for s in streamed] == chunks  # one response per chunk
    finally:
        if client.services.list(filters={"label": f"{NAMESPACE}={stack}"}):
            subprocess.run([sys.executable, "-m", "bytewax_nb.cli", "undeploy", stack], capture_output=True)
        client.close()


def _autoscaled_notebook(folder: Path) -> Path:
    """A notebook with a CPU-bound bee that may run none to two replicas."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(src)
        for src in (
            "%load_ext bytewax_nb\n%swarm new autoscaled",
            "%gateway gw --timeout 30",
            "%%bee --input gw --replicas 0:2 --idle-s 3\n"
            "def work(payload):\n"
            "    import time\n"
            "    end = time.process_time() + 0.005\n"
            "    while time.process_time() < end:\n"
            "        pass\n"
            "    return payload",
        )
    ]
    path = folder / "autoscaled.ipynb"
    nbformat.write(nb, str(path))
    return path


def _service_replicas(client: Any, service: str) -> int:
    return int(client.services.get(service).attrs["Spec"]["Mode"]["Replicated"]["Replicas"])


def test_a_deployed_stack_scales_its_bee_with_the_load_to_zero_and_back_answering_every_request(
    tmp_path: Path,
) -> None:
    client = _engine()
    stack = "bxnb-test-auto"
    try:
        out = _cli("deploy", str(_autoscaled_notebook(tmp_path)), "--stack", stack)
        url = _url(out)
        task = client.services.get(f"{stack}_controller").attrs["Spec"]["TaskTemplate"]
        assert "node.role == manager" in task["Placement"]["Constraints"]  # it holds the engine's API
        assert _service_replicas(client, f"{stack}_work") == 1
        with Load(url, callers=8) as load:
            wait_until(lambda: _service_replicas(client, f"{stack}_work") == 2, timeout=60, what="scaled up")
            link = StackLink(stack)
            wait_until(
                lambda: link.status()["bees"]["work"]["ready"] == 2, timeout=90, what="2 tasks serving"
            )
        counted = _tally(load)
        assert set(counted) == {"answered"}, counted  # every request answered
        view = link.status()["bees"]["work"]["autoscale"]
        assert (view["min"], view["max"]) == (0, 2) and "in flight" in view["reason"]
        # the load gone: one task at a time down to none after idle_s; the next request
        # starts one and is answered
        wait_until(lambda: _service_replicas(client, f"{stack}_work") == 0, timeout=90, what="scaled to zero")
        gone = {"state": "idle", "replicas": []}  # its last task drained and left, too
        wait_until(
            lambda: {k: link.status()["bees"]["work"][k] for k in gone} == gone, timeout=60, what="no task"
        )
        assert post(url, {"n": 1}, timeout=60)[:2] == (200, {"n": 1})
        label = {"label": f"com.docker.swarm.service.name={stack}_controller"}
        try:
            cold = wait_until(
                lambda: link.status()["bees"]["work"]["autoscale"]["cold_start_s"], what="measured"
            )
        except AssertionError:
            said = "".join(c.logs().decode(errors="replace") for c in client.containers.list(filters=label))
            print(said[-4000:], link.status()["bees"]["work"])
            raise
        print(f"stack cold start: {cold:.2f} s")
        # its decisions are in the controller's log
        label = {"label": f"com.docker.swarm.service.name={stack}_controller"}
        said = "".join(c.logs().decode(errors="replace") for c in client.containers.list(filters=label))
        assert "[work/0] bytewax-nb autoscale: 1 -> 2 replicas" in said, said[-2000:]
        assert "[work/0] bytewax-nb autoscale: 2 -> 1 replicas" in said, said[-2000:]
        assert "[work/0] bytewax-nb autoscale: 1 -> 0 replicas" in said, said[-2000:]
    finally:
        if client.services.list(filters={"label": f"{NAMESPACE}={stack}"}):
            subprocess.run([sys.executable, "-m", "bytewax_nb.cli", "undeploy", stack], capture_output=True)
        client.close()
