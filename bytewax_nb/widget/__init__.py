"""The swarm's live graph: a Jupyter widget whose state is plain JSON made from a
swarm's topology and status (`graph`), synced to its front-end (`labextension/`).

Runs in a kernel. Imports `model`, ipywidgets and traitlets; it knows a swarm only by
what it asks of one (`view.Watched`), so the public API can offer it.
"""

from .swarmwidget import SwarmWidget

__all__ = ["SwarmWidget"]
