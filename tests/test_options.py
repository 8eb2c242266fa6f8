"""A bee's options are declared once, on `BeeSpec`: the decorator, `%%bee`, fusion's
must-match rule and the docs follow from that one list."""

from __future__ import annotations

import inspect
import re
import typing
from pathlib import Path
from typing import Any

import pytest

from bytewax_nb import Swarm
from bytewax_nb.model import fusion
from bytewax_nb.model.options import default_of, options_of, options_table
from bytewax_nb.model.spec import BeeOptions, BeeSpec

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = [f.name for f, _ in options_of(BeeSpec)]


def test_the_decorator_takes_exactly_the_declared_options_typed() -> None:
    params = inspect.signature(Swarm.bee).parameters
    # nothing but the function, where it listens, its name and the declared options
    assert list(params) == ["self", "fn", "input", "name", "options"]
    assert params["options"].kind is inspect.Parameter.VAR_KEYWORD
    assert list(typing.get_type_hints(BeeOptions)) == OPTIONS


def test_every_option_reaches_the_spec_from_the_decorator_with_the_specs_defaults() -> None:
    swarm = Swarm("opts", runtime="process", on_log=None)
    swarm.gateway("in")
    swarm.bee(lambda p: p, input="in", name="plain")
    plain = swarm.topology.bees["plain"]
    assert {n: getattr(plain, n) for n in OPTIONS} == {f.name: default_of(f) for f, _ in options_of(BeeSpec)}
    given: dict[str, Any] = {
        "replicas": 3,
        "batch_size": 4,
        "batch_timeout_ms": 5.0,
        "retries": 0,
        "timeout": 7.0,
        "fuse": False,
        "env": {"K": "V"},
    }
    swarm.bee(lambda p: p, input="in", name="set", **given)
    spec = swarm.topology.bees["set"]
    assert {n: getattr(spec, n) for n in given} == given


def test_the_magic_has_one_flag_per_option_with_its_help() -> None:
    from bytewax_nb.notebook.magics import SwarmMagics

    usage = SwarmMagics.bee.__doc__ or ""
    for f, opt in options_of(BeeSpec):
        assert opt.flag(f.name) in usage, f.name
        words = re.sub(r"\s+", " ", usage)
        assert opt.help.split(";")[0][:40] in words, f.name


def test_fused_bees_must_agree_on_every_shared_option_and_only_on_those() -> None:
    shared = [f.name for f, opt in options_of(BeeSpec) if opt.shared]
    assert tuple(shared) == fusion._SHARED
    top_values = {"replicas": 2, "requirements": ("x",), "image": "i", "env": {"a": "b"}, "cpus": 1.0}
    top_values |= {"memory": "1g", "gpus": 1, "timeout": 3.0, "retries": 0}
    top_values |= {"min_replicas": 0, "max_replicas": 3, "target_in_flight": 4.0, "idle_s": 5.0}
    assert set(top_values) == set(shared)
    for name, value in top_values.items():
        # autoscaling's settings are compared between two autoscaled bees
        base: dict[str, Any] = (
            {"max_replicas": 4} if name in ("min_replicas", "target_in_flight", "idle_s") else {}
        )
        a = BeeSpec("a", len, ("in",), **base)
        b = BeeSpec("b", len, ("a",), **{**base, name: value})
        assert not fusion.same_processes(a, b), name
    # an option that is not shared (how the second bee is called) does not split the chain
    assert fusion.same_processes(BeeSpec("a", len, ("in",)), BeeSpec("b", len, ("a",), batch_timeout_ms=9.0))


def test_the_docs_table_is_the_declared_one() -> None:
    text = (ROOT / "docs" / "python-api.md").read_text()
    start = text.index("<!-- bee options:")
    shown = text[text.index("\n", start) + 1 : text.index("<!-- end of bee options -->")].strip()
    assert shown == options_table(BeeSpec), (
        "docs/python-api.md's options table is stale: paste what "
        "`python -c 'from bytewax_nb.model.options import options_table as t; "
        "from bytewax_nb.model.spec import BeeSpec; print(t(BeeSpec))'` prints"
    )


def test_swarm_deploy_of_a_spec_still_adds_the_bee_with_a_deprecation_warning() -> None:
    swarm = Swarm("old-deploy", runtime="process", on_log=None)
    swarm.gateway("in")
    with pytest.warns(DeprecationWarning, match=r"Swarm.add_bee\(spec\)"):
        assert swarm.deploy(BeeSpec("echo", len, ("in",))) is None
    assert "echo" in swarm.topology.bees


def test_the_old_magics_module_still_gives_current_swarm_with_a_deprecation_warning() -> None:
    import bytewax_nb

    with pytest.warns(DeprecationWarning, match="import it from bytewax_nb"):
        from bytewax_nb.magics import current_swarm
    assert current_swarm is bytewax_nb.current_swarm


def test_swarm_widget_is_back_and_is_the_one_live_graph() -> None:
    from bytewax_nb import SwarmWidget

    swarm = Swarm("widgeted", runtime="process", on_log=None)
    swarm.gateway("in")
    widget = swarm.widget()
    try:
        assert isinstance(widget, SwarmWidget) and widget is swarm.widget()
        assert [n["id"] for n in widget.nodes] == ["in"]
    finally:
        widget.close()
