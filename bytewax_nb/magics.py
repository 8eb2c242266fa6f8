"""Where the magics were before the package had rooms: `bytewax_nb.notebook.magics` now,
and `current_swarm` is `from bytewax_nb import current_swarm`. Old notebooks keep working,
with a DeprecationWarning that names the new place."""

from __future__ import annotations

import warnings
from typing import Any


def __getattr__(name: str) -> Any:
    from .notebook import magics

    value = getattr(magics, name)  # AttributeError for a name that never was
    where = "bytewax_nb" if name == "current_swarm" else "bytewax_nb.notebook.magics"
    warnings.warn(f"bytewax_nb.magics.{name} moved: import it from {where}", DeprecationWarning, stacklevel=2)
    return value
