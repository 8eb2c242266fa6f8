"""What `bytewax-nb deploy|export NOTEBOOK` runs in the notebook's kernel, after its cells.

The swarm is declared in the kernel (its bees are the kernel's functions; nothing of it
runs there), so the images are built and the stack deployed from there; the command
reads one line of JSON back.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..model.errors import BytewaxNBError

__all__ = ["MARK", "run"]

MARK = "bytewax-nb-result:"  # the line the command line reads back


def _swarm(name: str | None) -> Any:
    """The notebook's swarm: the one it made (with a gateway), or the one named."""
    from .. import swarm as swarm_module

    made = sorted(
        (s for s in swarm_module._MADE if s.topology.gateways and s.runtime != "stack"), key=lambda s: s.name
    )
    if name is not None:
        made = [s for s in made if s.name == name]
    if len(made) != 1:
        names = ", ".join(s.name for s in made) or "none"
        raise BytewaxNBError(
            f"the notebook must declare exactly one swarm with a gateway (found: {names}); "
            "name it with --swarm"
        )
    return made[0]


def run(action: str, stack: str, swarm: str | None, options: dict[str, Any]) -> None:
    """Deploy or export the notebook's swarm; print the result as one marked line."""
    from ..stack.deploy import deploy, export

    topology = _swarm(swarm).topology
    if action == "deploy":
        d = deploy(stack, topology, **options)
        result: dict[str, Any] = {"urls": d.urls, "images": d.images, "seconds": round(d.seconds, 1)}
    else:
        folder = options.pop("folder")
        result = {"folder": str(export(stack, topology, Path(folder), **options))}
    print(MARK + json.dumps(result), flush=True)
