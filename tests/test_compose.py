"""The Compose file a stack is deployed from, read back as YAML (pure logic; the stack
tests deploy it on the real engine)."""

from __future__ import annotations

from typing import Any

import yaml

from bytewax_nb.model.spec import BeeSpec, GatewaySpec, Topology
from bytewax_nb.stack.compose import Plan, compose


def _plan(**kw: Any) -> Plan:
    topo = Topology()
    topo.add_gateway(GatewaySpec("predict", timeout=45.0))
    topo.add_bee(BeeSpec("prep", lambda p: p, ("predict",)))
    topo.add_bee(BeeSpec("model", lambda p: p, ("prep",), replicas=3, cpus=1.5, memory="2g", gpus=1))
    return Plan(
        stack="iris",
        topology=topo,
        system_image="bytewax-nb-bee:sys",
        images={"prep": "bytewax-nb-code:prep-1", "model": "bytewax-nb-code:model-2"},
        ports={"predict": 8123},
        topology_config="iris_topology_abc",
        **kw,
    )


def test_one_service_per_bee_with_its_replicas_and_resources() -> None:
    doc = yaml.safe_load(compose(_plan()))
    services = doc["services"]
    assert list(services) == ["controller", "hub", "prep", "model"]
    model = services["model"]
    assert model["image"] == "bytewax-nb-code:model-2"
    assert model["deploy"]["replicas"] == 3 and services["prep"]["deploy"]["replicas"] == 1
    resources = model["deploy"]["resources"]
    assert resources["limits"] == {"cpus": "1.5", "memory": "2g"}
    assert resources["reservations"]["cpus"] == "1.5"
    gpu = resources["reservations"]["generic_resources"][0]["discrete_resource_spec"]
    assert gpu == {"kind": "gpu", "value": 1}
    assert "resources" not in services["prep"]["deploy"]
    # a changed bee rolls over start-first; its tasks are healthy once wired
    assert model["deploy"]["update_config"]["order"] == "start-first"
    assert model["healthcheck"]["test"] == ["CMD", "test", "-e", "/tmp/bytewax-nb-ready"]
    # a task may drain for longer than the longest gateway timeout
    assert model["stop_grace_period"] == "55s"


def test_no_virtual_ip_and_gateway_ports_published_on_the_hubs_node() -> None:
    doc = yaml.safe_load(compose(_plan()))
    assert {s["deploy"]["endpoint_mode"] for s in doc["services"].values()} == {"dnsrr"}
    hub = doc["services"]["hub"]
    assert hub["ports"] == [{"target": 8123, "published": 8123, "protocol": "tcp", "mode": "host"}]
    assert hub["deploy"]["update_config"]["order"] == "stop-first"  # two hubs cannot share a port


def test_secrets_are_referenced_never_inlined_and_the_overlay_is_encrypted() -> None:
    deployed = yaml.safe_load(compose(_plan(tokens_secret="iris_tokens_1")))
    assert deployed["secrets"] == {
        "boot": {"name": "iris_boot", "external": True},
        "tokens": {"name": "iris_tokens_1", "external": True},
    }
    assert deployed["networks"]["bus"]["driver_opts"] == {"encrypted": "true"}
    for name, service in deployed["services"].items():
        assert service["secrets"][0]["target"] == "bytewax-nb-boot"
        assert not any("key" in k.lower() or "curve" in k.lower() for k in service["environment"]), name
    # only the hub and the controller see the tokens
    with_tokens = {n for n, s in deployed["services"].items() if len(s["secrets"]) == 2}
    assert with_tokens == {"controller", "hub"}
    exported = yaml.safe_load(
        compose(_plan(encrypt_overlay=False, secret_files={"boot": "./secrets/boot.json"}))
    )
    assert exported["secrets"] == {"boot": {"name": "iris_boot", "file": "./secrets/boot.json"}}
    assert "driver_opts" not in exported["networks"]["bus"]


def test_only_an_autoscaled_stacks_controller_gets_the_engines_api_on_a_manager() -> None:
    plain = yaml.safe_load(compose(_plan()))["services"]["controller"]
    assert "volumes" not in plain and "placement" not in plain["deploy"]
    plan = _plan()
    plan.topology.bees["prep"] = BeeSpec("prep", len, ("predict",), max_replicas=4)
    scaled = yaml.safe_load(compose(plan))["services"]["controller"]
    assert scaled["volumes"] == [
        {
            "type": "bind",
            "source": "/var/run/docker.sock",
            "target": "/var/run/docker.sock",
            "read_only": False,
        }
    ]
    assert scaled["deploy"]["placement"] == {"constraints": ["node.role == manager"]}


def test_a_stack_caps_replicas_by_the_cpus_its_ready_nodes_hold() -> None:
    from bytewax_nb.stack.scaler import cpus_cap

    def node(cpus: float, state: str = "ready", availability: str = "active") -> dict[str, Any]:
        return {
            "Status": {"State": state},
            "Spec": {"Availability": availability},
            "Description": {"Resources": {"NanoCPUs": int(cpus * 1e9)}},
        }

    nodes = [node(4), node(2), node(8, state="down"), node(8, availability="drain")]
    assert cpus_cap(nodes, 1.5) == 4  # 6 cpus on ready, active nodes
    assert cpus_cap(nodes, None) is None  # no reservation: only max_replicas
    assert cpus_cap([node(1)], 2.0) == 1  # one at least
