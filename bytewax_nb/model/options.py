"""A bee's options, declared once: `BeeSpec`'s fields carry what each means, how `%%bee`
writes it, and whether fused bees must agree on it. The decorator's keywords, the magic's
arguments with their help, fusion's must-match rule and the docs' options table all
come from here (and tests hold the decorator's typed keywords to the same list)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

__all__ = ["Form", "Option", "default_of", "option", "options_of", "options_table"]


class Form(StrEnum):
    """How `%%bee` writes an option."""

    VALUE = "value"  # --batch-size 8
    SWITCH = "switch"  # --join
    NEGATED = "negated"  # --no-fuse (the option is on unless given)
    WORDS = "words"  # --requirements "numpy scikit-learn"
    PAIRS = "pairs"  # --env K=V K2=V2
    TIMEOUT = "timeout"  # --timeout S|auto, --no-timeout
    RANGE = "range"  # --replicas 2, or --replicas 1:8 (autoscaling: min and max)


@dataclass(frozen=True)
class Option:
    """What an option is for, as the docs and the magic's help say it."""

    help: str
    shared: bool = False  # fused bees share processes: they must agree on it (`fusion`)
    form: Form = Form.VALUE
    metavar: str = ""  # the magic's placeholder (default: the option's name, upper case)
    default_text: str = ""  # how the docs show the default, where repr would not say it

    def flag(self, name: str) -> str:
        """The `%%bee` flag: `--batch-size`, or `--no-fuse` for a negated one."""
        dashed = name.replace("_", "-")
        return f"--no-{dashed}" if self.form == Form.NEGATED else f"--{dashed}"


def option(
    default: Any = dataclasses.MISSING, help: str = "", *, factory: Callable[[], Any] | None = None, **kw: Any
) -> Any:
    """A field of `BeeSpec` that users set (see `Option`)."""
    meta = {"option": Option(help, **kw)}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta, repr=False)
    return dataclasses.field(default=default, metadata=meta)


def options_of(cls: type) -> Iterator[tuple[dataclasses.Field[Any], Option]]:
    """The option fields of a dataclass, in their order, with what each is for."""
    for f in dataclasses.fields(cls):
        opt = f.metadata.get("option")
        if isinstance(opt, Option):
            yield f, opt


def default_of(f: dataclasses.Field[Any]) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def options_table(cls: type) -> str:
    """The docs' table of options (Markdown): Python keyword, `%%bee` flag, default, meaning."""
    rows = ["| option | `%%bee` | default | meaning |", "|---|---|---|---|"]
    for f, opt in options_of(cls):
        default = opt.default_text or f"`{default_of(f)!r}`"
        flags = [opt.flag(f.name)] + (["--no-timeout"] if opt.form == Form.TIMEOUT else [])
        shown = ", ".join(f"`{flag}`" for flag in flags)
        rows.append(f"| `{f.name}` | {shown} | {default} | {opt.help} |")
    return "\n".join(rows)
