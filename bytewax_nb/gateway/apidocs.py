"""A gateway's interactive API page (`GET /docs`): Swagger UI over its `/openapi.json`.
Its assets are copied into the package when it is built (from npm's swagger-ui-dist),
so the page needs no network: a gateway on an air-gapped machine documents itself."""

from __future__ import annotations

from html import escape
from pathlib import Path

from aiohttp import web

__all__ = ["page", "asset"]

ASSETS = Path(__file__).with_name("apidocs")
_TYPES = {".js": "text/javascript", ".css": "text/css"}
_SERVED = ("swagger-ui-bundle.js", "swagger-ui.css")


def page(gateway: str) -> web.Response:
    if not (ASSETS / _SERVED[0]).exists():
        return web.json_response(
            {
                "error": "the API page's assets are not installed (the package's build copies them)",
                "request_id": None,
            },
            status=404,
        )
    title = escape(f"bytewax-nb gateway {gateway}")
    html = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<link rel="stylesheet" href="docs/swagger-ui.css"></head>
<body><div id="ui"></div>
<script src="docs/swagger-ui-bundle.js"></script>
<script>SwaggerUIBundle({{url: "openapi.json", dom_id: "#ui"}});</script>
</body></html>
"""
    return web.Response(text=html, content_type="text/html")


def asset(name: str) -> web.Response:
    """One of the page's two files (nothing else under the folder is served)."""
    if name not in _SERVED or not (ASSETS / name).exists():
        return web.json_response({"error": f"no asset {name!r}", "request_id": None}, status=404)
    return web.Response(
        body=(ASSETS / name).read_bytes(),
        content_type=_TYPES[Path(name).suffix],
        headers={"Cache-Control": "max-age=86400"},
    )
