"""The one version of bytewax-nb (Python package, npm package, widget module)."""

from __future__ import annotations

__all__ = ["VERSION"]


def _version() -> str:
    """The installed distribution's version (taken from the widget's package.json at
    build time, the one place it lives); a source tree without metadata reads that file."""
    from importlib import metadata

    try:
        return metadata.version("bytewax-nb")
    except metadata.PackageNotFoundError:
        import json
        import pathlib

        package = pathlib.Path(__file__).resolve().parents[1]
        for folder in (package, package.parent):  # built into the package, or the source checkout's
            candidate = folder / "labextension" / "package.json"
            if candidate.is_file():
                return str(json.loads(candidate.read_text())["version"])
        return "0+unknown"


VERSION = _version()
