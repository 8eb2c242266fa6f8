"""JupyterLab's view of this machine's swarms: a Jupyter server extension serving the
lab extension's side panel (the swarms and deployed stacks, a swarm's graph in a tab,
stop and logs from the command palette).

Runs in the Jupyter server, not in a kernel: it owns no swarm, and sees each one as
the `bytewax-nb` command does (`elsewhere`), a stack as `Swarm.attach` does. Enabled by
the `jupyter_server_config.d` file the wheel installs.
"""

from __future__ import annotations

from typing import Any

__all__: list[str] = []


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "bytewax_nb.labserver"}]


def _load_jupyter_server_extension(server: Any) -> None:
    from .handlers import routes

    web_app = server.web_app
    web_app.add_handlers(".*$", routes(web_app.settings["base_url"]))
