"""A stack on two nodes of one machine: a second Docker engine in its own network
namespace joins the swarm as a worker (`scripts/second-node.sh`) and runs a bee's tasks
beside the first node's.

One stack is written by `bytewax-nb export`, its images copied by `docker save | docker
load`, and deployed by hand (`docker stack deploy -c DIR/compose.yaml`), as a person
would; another is deployed with `--registry`, the second node pulling its images.
Requests cross nodes; a bus frame captured on one node and replayed from the other is
dropped; a peer without the bus's keys gets nothing through; the stack's keys are
nowhere but in its secret. The overlay is not encrypted here: these kernels lack the IPsec ESP
AES-GCM the engine asks for (docs/deploying.md). Skip locally with --no-stack.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker.types
import pytest
from conftest import Load, missing, wait_until
from test_stack import NAMESPACE, ROOT, _cli, _engine, _leftovers

from bytewax_nb.bus.child import LINK_PORT
from bytewax_nb.client import post
from bytewax_nb.stack.attach import StackLink, _task_logs

# a deploy builds images and runs a notebook first: minutes on a loaded machine, not seconds
pytestmark = [pytest.mark.stack, pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(300)]
STACK = "bxnb-test-nodes"
SCRIPT = ROOT / "scripts" / "second-node.sh"
SECOND_ENGINE = "unix:///var/run/docker2.sock"  # the second node's engine (second-node.sh)

# A process on the stack's network holding the stack's secret: an insider. It sends a
# response frame to the hub signed with the stack's key ("-"), or frames it is given
# (hex, as captured elsewhere), and prints what it sent. Without keys ("outsider") its
# connection never gets past the CurveZMQ handshake.
INSIDER = """
import json, sys, zmq
from bytewax_nb.bus.curve import BusKeys, Curve
from bytewax_nb.bus.wire import Enc, Header, Kind, Signer, next_seq
mode, hub, given = sys.argv[1:4]
boot = json.load(open("/run/secrets/bytewax-nb-boot"))
ctx = zmq.Context()
sock = ctx.socket(zmq.DEALER)
sock.setsockopt(zmq.IDENTITY, b"intruder")
sock.setsockopt(zmq.LINGER, 3000)
if mode == "insider":
    Curve(ctx, BusKeys.from_boot(boot["curve"])).client(sock)
sock.connect(f"tcp://hub:{LINK_PORT}")
if given == "-":
    h = Header(Kind.RESPONSE, "f" * 32, "hello-world", "goodbye", enc=Enc.JSON,
               seq=next_seq(), src="intruder", dst=hub)
    frames = Signer(bytes.fromhex(boot["key"])).frames(h, b'"forged"')
else:
    frames = [bytes.fromhex(f) for f in given.split(",")]
sock.send_multipart(frames)
print("FRAMES", ",".join(bytes(f).hex() for f in frames), flush=True)
sock.close()
ctx.term()
""".replace("LINK_PORT", str(LINK_PORT))


def _node2(*args: str) -> str:
    result = subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, f"second-node.sh {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout.strip()


MANAGER = "10.77.0.1"  # where the second engine, in its network namespace, reaches this host
REGISTRY = f"{MANAGER}:5000"  # scripts/registry.sh


def _need_a_second_node(client: Any) -> None:
    """What starting a second engine here needs: root, the tools, and a swarm manager it
    can reach (scripts/swarm-init.sh says which it found)."""
    if os.geteuid() != 0:
        missing("the two-node tests start a second Docker engine: they need root", "run them as root")
    tools = [t for t in ("ip", "iptables", "nsenter", "unshare", "dockerd") if shutil.which(t) is None]
    if tools:
        missing(f"missing {', '.join(tools)}", "apt-get install iproute2 iptables util-linux docker.io")
    if subprocess.run(["ip", "link", "show", "bxnb-host"], capture_output=True).returncode != 0:
        missing("no network namespace for the second engine", "scripts/swarm-init.sh makes it")
    found = client.info()["Swarm"].get("NodeAddr")
    if found != MANAGER:
        missing(
            f"this engine's swarm advertises {found}, which a second engine reaches only on {MANAGER}",
            "scripts/swarm-init.sh --reinit (leaves that swarm)",
        )


def _need_a_registry(client: Any) -> None:
    if shutil.which("docker-registry") is None:
        missing("no docker-registry command", "apt-get install docker-registry")
    trusted = client.info().get("RegistryConfig", {}).get("IndexConfigs", {})
    if REGISTRY not in trusted or trusted[REGISTRY].get("Secure", True):
        missing(
            f"the engine does not trust the plain-HTTP registry {REGISTRY}",
            f"start dockerd with --insecure-registry {REGISTRY} (.ci/run does)",
        )


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str, Path]]:
    """The hello tutorial exported, its images copied to a second node, deployed by hand."""
    client = _engine()
    _need_a_second_node(client)
    folder = tmp_path_factory.mktemp("export") / "hello"
    try:
        second = _node2("start")
        wait_until(
            lambda: client.nodes.get(second).attrs["Status"]["State"] == "ready",
            timeout=60,
            what="the second node ready",
        )
        _cli(
            "export",
            str(ROOT / "notebooks" / "01-hello-swarm.ipynb"),
            "--stack",
            STACK,
            "-o",
            str(folder),
            "--no-overlay-encryption",
        )
        images = sorted(
            {line.split("\t")[1] for line in (folder / "images.txt").read_text().splitlines() if "\t" in line}
        )
        _node2("load", *images)
        subprocess.run(
            ["docker", "stack", "deploy", "-c", "compose.yaml", STACK],
            cwd=folder,
            check=True,
            capture_output=True,
        )
        link = wait_until(lambda: _link(), timeout=60, what="the stack's services")
        wait_until(lambda: link.status().get("ready"), timeout=120, what="the stack serving on two nodes")
        yield client, second, folder
    finally:
        if client.services.list(filters={"label": f"{NAMESPACE}={STACK}"}):
            subprocess.run([sys.executable, "-m", "bytewax_nb.cli", "undeploy", STACK], capture_output=True)
        subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, timeout=120)
        client.close()


def _link() -> StackLink | None:
    try:
        return StackLink(STACK)
    except Exception:  # noqa: BLE001 - not created yet
        return None


def _nodes_of(client: Any, service: str) -> dict[int, str]:
    """Slot -> node of the running tasks."""
    tasks = client.services.get(f"{STACK}_{service}").tasks(filters={"desired-state": "running"})
    return {t["Slot"]: t["NodeID"] for t in tasks if t["Status"]["State"] == "running"}


def test_requests_cross_nodes_to_a_bee_whose_tasks_run_on_both(two_nodes: tuple[Any, str, Path]) -> None:
    client, second, _ = two_nodes
    link = StackLink(STACK)
    # running = healthy (wired): the engine's view lags the controller's by a health check
    hello = wait_until(
        lambda: len(h := _nodes_of(client, "hello")) == 2 and h, timeout=60, what="hello running"
    )
    # the engine spreads a service's tasks over its nodes: hello has one on each
    assert set(hello.values()) == {second, client.info()["Swarm"]["NodeID"]}, hello
    url = f"http://{link.host}:{link.ports['hello-world']}/gateways/hello-world"
    with Load(url, callers=6, payload=lambda n: {"name": f"n{n}"}) as load:
        wait_until(lambda: len(load.outcomes) > 2000, timeout=60, what="2000 requests")
    assert {o[1] for o in load.outcomes} == {200}
    assert all(o[2] == f"goodbye n{o[3]}" for o in load.outcomes)
    # each replica of hello served: from the hub's node to the other one and back
    handled = wait_until(
        lambda: (
            (h := {r["replica"]: r.get("handled", 0) for r in link.status()["bees"]["hello"]["replicas"]})
            and sum(h.values()) >= len(load.outcomes)
            and h
        ),
        timeout=15,
        what="the requests counted",
    )
    assert set(handled) == set(hello) and all(n > 0 for n in handled.values()), handled
    hub_node = _nodes_of(client, "hub")[1]
    across = [slot for slot, node in hello.items() if node != hub_node]
    assert across and all(handled[slot] > 0 for slot in across)


def _run_insider(client: Any, image: str, node: str, mode: str, hub: str, frames: str) -> str:
    """A one-off task of the insider on `node`, on the stack's network; its output."""
    name = f"{STACK}_{mode}-{node[:6]}"
    service = client.services.create(
        image,
        command=["python3", "-c", INSIDER, mode, hub, frames],
        name=name,
        networks=[f"{STACK}_bus"],
        secrets=[_secret(client)],
        constraints=[f"node.id=={node}"],
        mode={"ReplicatedJob": {"MaxConcurrent": 1, "TotalCompletions": 1}},
        labels={NAMESPACE: STACK},
    )
    try:
        wait_until(
            lambda: any(t["Status"]["State"] in ("complete", "failed") for t in service.tasks()),
            timeout=60,
            what=f"the {mode} on {node[:6]} done",
        )
        states = [(t["Status"]["State"], t["Status"].get("Err")) for t in service.tasks()]
        out = b"".join(service.logs(stdout=True, stderr=True)).decode(errors="replace")
        assert [s for s, _ in states] == ["complete"], (states, out)
        return out
    finally:
        service.remove()
        # a job's finished containers outlive its service: remove them, on either node
        label = f"com.docker.swarm.service.id={service.id}"
        for engine in ([], ["-H", SECOND_ENGINE]):
            found = subprocess.run(
                ["docker", *engine, "ps", "-aq", "--filter", f"label={label}"], capture_output=True, text=True
            ).stdout.split()
            if found:
                subprocess.run(["docker", *engine, "rm", "-f", *found], capture_output=True)


def _secret(client: Any) -> Any:
    boot = client.secrets.list(filters={"name": f"{STACK}_boot"})[0]
    return docker.types.SecretReference(boot.id, boot.name, filename="bytewax-nb-boot")


def test_a_frame_captured_on_one_node_and_replayed_from_the_other_is_dropped(
    two_nodes: tuple[Any, str, Path],
) -> None:
    client, second, folder = two_nodes
    link = StackLink(STACK)
    first = client.info()["Swarm"]["NodeID"]
    hub_task = client.services.get(f"{STACK}_hub").tasks(filters={"desired-state": "running"})[0]
    hub = f"hub:hub:{hub_task['Slot']}:{hub_task['ID']}"
    image = next(
        line.split("\t")[1]
        for line in (folder / "images.txt").read_text().splitlines()
        if line.startswith("hub\t")
    )
    before = dict(link.status()["hub"]["dropped_by"])
    sent = _run_insider(client, image, second, "insider", hub, "-")
    captured = next(line.split()[-1] for line in sent.splitlines() if "FRAMES" in line)

    def dropped() -> dict[str, int]:
        now = link.status()["hub"]["dropped_by"]
        return {k: v - before.get(k, 0) for k, v in now.items() if v != before.get(k, 0)}

    # the genuine frame is accepted once (it answers no request of ours: nothing happens)
    _run_insider(client, image, first, "insider", hub, captured)  # the same frame, from the other node
    wait_until(lambda: dropped() == {"replayed": 1}, timeout=15, what="the replay dropped and counted")
    # a peer without the bus's keys replays it too: its handshake fails, so nothing
    # reaches the hub (had it, the replay would be counted a second time)
    _run_insider(client, image, second, "outsider", hub, captured)
    forged = captured[:-64] + "00" * 32  # a captured frame with its signature gone
    _run_insider(client, image, first, "insider", hub, forged)
    wait_until(
        lambda: dropped() == {"replayed": 1, "signature": 1}, timeout=15, what="the unsigned frame dropped"
    )
    # the swarm served on throughout
    assert post(f"http://{link.host}:{link.ports['hello-world']}/gateways/hello-world", {"name": "x"})[
        :2
    ] == (
        200,
        "goodbye x",
    )


def test_the_stacks_keys_are_nowhere_but_in_its_secret(two_nodes: tuple[Any, str, Path]) -> None:
    """Not in the Compose file, a config, an image, a spec, an environment, argv or a log."""
    client, _, folder = two_nodes
    boot = json.loads((folder / "secrets" / "boot.json").read_text())
    hidden = [boot["key"], boot["curve"]["server_secret"], boot["curve"]["client_secret"]]
    seen = {name: (folder / name).read_text() for name in ("compose.yaml", "topology.json", "images.txt")}
    label = {"label": f"{NAMESPACE}={STACK}"}
    for service in client.services.list(filters=label):
        seen[f"spec of {service.name}"] = json.dumps(service.attrs)
        for task in service.tasks():  # through the swarm, as for a task on another node
            seen[f"logs of task {task['ID']}"] = "\n".join(_task_logs(task["ID"], 5000))
        image = service.attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].split("@")[0]
        seen[f"image {image}"] = json.dumps(client.images.get(image).attrs) + json.dumps(
            client.images.get(image).history()
        )
    for container in client.containers.list(filters=label):  # environment and argv as run
        seen[f"container {container.name}"] = json.dumps(container.attrs)
        seen[f"processes of {container.name}"] = json.dumps(container.top())
    assert len(seen) > 10
    leaks = [where for where, text in seen.items() for secret in hidden if secret in text]
    assert leaks == []


def test_deploying_with_a_registry_lets_the_second_node_pull_the_images(
    two_nodes: tuple[Any, str, Path],
) -> None:
    client, second, _ = two_nodes
    _need_a_registry(client)
    subprocess.run(["bash", str(ROOT / "scripts" / "registry.sh"), "start"], check=True, timeout=60)
    stack = "bxnb-test-pulled"
    try:
        out = _cli(
            "deploy",
            str(ROOT / "notebooks" / "01-hello-swarm.ipynb"),
            "--stack",
            stack,
            "--registry",
            REGISTRY,
            "--no-overlay-encryption",
        )
        url = next(line.split(" at ")[1].strip() for line in out.splitlines() if " at http" in line)
        assert post(url, {"name": "pulled"})[:2] == (200, "goodbye pulled")
        # the second node runs tasks from images it pulled from the registry by name
        tasks = [
            t
            for s in client.services.list(filters={"label": f"{NAMESPACE}={stack}"})
            for t in s.tasks(filters={"desired-state": "running"})
            if t["NodeID"] == second
        ]
        assert tasks, "no task of the stack on the second node"
        pulled = subprocess.run(
            ["docker", "-H", SECOND_ENGINE, "images", "--format", "{{.Repository}}:{{.Tag}}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        for t in tasks:
            image = t["Spec"]["ContainerSpec"]["Image"]
            assert image.startswith(f"{REGISTRY}/") and image.split("@")[0] in pulled, (image, pulled)
    finally:
        subprocess.run([sys.executable, "-m", "bytewax_nb.cli", "undeploy", stack], capture_output=True)
        subprocess.run(["bash", str(ROOT / "scripts" / "registry.sh"), "stop"], timeout=60)


def test_undeploy_on_two_nodes_leaves_nothing(two_nodes: tuple[Any, str, Path]) -> None:
    client, _, _ = two_nodes
    _cli("undeploy", STACK)
    assert _leftovers(client, STACK) == []
    # nor, once the engine has stopped them, on the second node (undeploy waits for
    # this engine's containers; another node's go in the background)
    second = ["docker", "-H", SECOND_ENGINE, "ps", "-aq"]

    def on_second() -> str:
        found = subprocess.run(
            [*second, "--filter", f"label={NAMESPACE}={STACK}"], capture_output=True, text=True, check=True
        )
        return found.stdout.strip()

    wait_until(lambda: on_second() == "", timeout=60, what="the second node's containers gone")
