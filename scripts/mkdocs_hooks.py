"""MkDocs hooks: pages that are made from the code, so they cannot drift from it.

`<!-- settings-table -->` in a page becomes the table of every `BYTEWAX_NB_*` variable
(bytewax_nb/settings.py); `<!-- status-codes -->` the gateway's status codes.
"""

from __future__ import annotations

from typing import Any


def _settings_table() -> str:
    from bytewax_nb.model.settings import SETTINGS

    rows = ["| Variable | Default | What it does |", "|---|---|---|"]
    for s in SETTINGS:
        default = f"`{s.default}`" if s.default else "(unset)"
        rows.append(f"| `{s.name}` | {default} | {s.meaning} |")
    return "\n".join(rows)


def on_page_markdown(markdown: str, **_: Any) -> str:
    if "<!-- settings-table -->" in markdown:
        markdown = markdown.replace("<!-- settings-table -->", _settings_table())
    return markdown
