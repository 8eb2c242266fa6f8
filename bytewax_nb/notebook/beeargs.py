"""`%%bee`'s arguments, made from the options `BeeSpec` declares (`model.options`): each
flag, its help and its form come from there, and an option not given is not passed,
so its default is `BeeSpec`'s too."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable
from typing import Any, cast

from IPython.core.magic_arguments import argument

from ..model.errors import BytewaxNBError
from ..model.options import Form, options_of
from ..model.spec import AUTO, BeeOptions, BeeSpec

__all__ = ["bee_arguments", "options_from"]


def _seconds_or_auto(text: str) -> float | str:
    """`--timeout`: seconds, or `auto`."""
    return AUTO if text == AUTO else float(text)


def _replica_range(text: str) -> int | tuple[int, int]:
    """`--replicas`: N, or MIN:MAX (autoscaling)."""
    low, sep, high = text.partition(":")
    try:
        return (int(low), int(high)) if sep else int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"replicas must be N or MIN:MAX (integers), not {text!r}") from None


def _value_type(annotation: str) -> Callable[[str], Any]:
    return int if "int" in annotation else float if "float" in annotation else str


def _arguments() -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    out: list[tuple[tuple[str, ...], dict[str, Any]]] = []
    for f, opt in options_of(BeeSpec):
        given = {"dest": f.name, "default": argparse.SUPPRESS, "help": opt.help}
        flag = opt.flag(f.name)
        metavar = opt.metavar or f.name.upper()
        if opt.form == Form.SWITCH:
            out.append(((flag,), {**given, "action": "store_true"}))
        elif opt.form == Form.NEGATED:
            out.append(((flag,), {**given, "action": "store_false"}))
        elif opt.form == Form.PAIRS:
            out.append(((flag,), {**given, "nargs": "*", "metavar": metavar}))
        elif opt.form == Form.TIMEOUT:
            out.append(((flag,), {**given, "type": _seconds_or_auto, "metavar": f"{metavar}|auto"}))
            out.append(
                (("--no-timeout",), {**given, "action": "store_const", "const": None, "help": "no limit"})
            )
        elif opt.form == Form.WORDS:
            out.append(((flag,), {**given, "metavar": metavar}))
        elif opt.form == Form.RANGE:
            out.append(((flag,), {**given, "type": _replica_range, "metavar": metavar}))
        else:
            out.append(((flag,), {**given, "type": _value_type(str(f.type)), "metavar": metavar}))
    return out


def bee_arguments(fn: Any) -> Any:
    """Decorate the `%%bee` magic with one argument per option (in `BeeSpec`'s order)."""
    for args, kwargs in reversed(_arguments()):
        fn = argument(*args, **kwargs)(fn)
    return fn


def options_from(args: argparse.Namespace) -> BeeOptions:
    """The options given in a `%%bee` line, as `@swarm.bee` takes them."""
    given: dict[str, Any] = {}
    for f, opt in options_of(BeeSpec):
        if not hasattr(args, f.name):
            continue
        value = getattr(args, f.name)
        if opt.form == Form.WORDS:
            value = tuple(shlex.split(value))
        elif opt.form == Form.PAIRS:
            value = _pairs(value)
        elif opt.form == Form.RANGE and isinstance(value, tuple):
            given["min_replicas"], given["max_replicas"] = value
            continue
        given[f.name] = value
    return cast(BeeOptions, given)


def _pairs(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise BytewaxNBError(f"--env takes KEY=VALUE pairs, got {pair!r}")
        out[key] = value
    return out
