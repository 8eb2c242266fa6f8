"""The widget's front-end: its TypeScript unit tests, and the prebuilt extension that
`pip install` puts where JupyterLab finds it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import missing

import bytewax_nb

ROOT = Path(__file__).resolve().parent.parent
LABEXT = ROOT / "labextension"


def _need_node_modules() -> str:
    npm = shutil.which("npm")
    why = None
    if npm is None:
        why = "npm is not installed"
    elif not (LABEXT / "node_modules").is_dir():
        why = "labextension/node_modules is missing (pip install -e . runs npm install)"
    if why is not None:
        missing(why, "apt-get install nodejs npm, then pip install -e .")
    assert npm is not None
    return npm


@pytest.mark.slow
def test_the_front_end_unit_tests_pass() -> None:
    npm = _need_node_modules()
    env = {**os.environ, "NO_COLOR": "1"}
    run = subprocess.run(
        [npm, "test", "--silent"], cwd=LABEXT, capture_output=True, text=True, timeout=300, env=env
    )
    out = re.sub(r"\x1b\[[0-9;]*m", "", run.stdout + run.stderr)
    assert run.returncode == 0, out
    assert re.search(r"Tests\s+\d+ passed", out), out


def test_the_install_puts_the_prebuilt_extension_where_jupyterlab_finds_it() -> None:
    (entry,) = bytewax_nb._jupyter_labextension_paths()
    built = Path(bytewax_nb.__file__).parent / entry["src"]
    assert json.loads((built / "package.json").read_text())["name"] == entry["dest"]
    assert list((built / "static").glob("remoteEntry.*.js")), "the extension was not built"
    listed = subprocess.run(
        [sys.executable, "-m", "jupyter", "labextension", "list"], capture_output=True, text=True, timeout=120
    )
    plain = re.sub(r"\x1b\[[0-9;]*m", "", listed.stdout + listed.stderr)
    assert re.search(rf"{entry['dest']} v{bytewax_nb.__version__} enabled\s+OK", plain), plain


def test_python_npm_and_the_widget_share_one_version() -> None:
    source = json.loads((LABEXT / "package.json").read_text())["version"]
    assert bytewax_nb.__version__ == source
    written = (LABEXT / "src" / "version.ts").read_text()  # what the front-end registers
    assert f"export const VERSION = {json.dumps(source)};" in written


def test_the_widget_front_end_travels_in_the_package() -> None:
    """The anywidget's module is built into the package and bundles everything it runs:
    it imports nothing, from no CDN, so every front-end draws it offline."""
    import re

    from bytewax_nb.widget.swarmwidget import SwarmWidget

    static = Path(bytewax_nb.__file__).parent / "widget" / "static"
    module = (static / "swarm.js").read_text()
    assert str(SwarmWidget._esm) == module and str(SwarmWidget._css) == (static / "swarm.css").read_text()
    assert re.search(r"export\s*\{\s*\w+ as default\s*\}", module)  # an ES module with a default
    assert not re.search(r"\bimport\s*\(|\bimport\s*[{\w*][^;]*\bfrom\s*[\"']|^import\s", module, re.M)
    assert (static / "swarm.css").read_text().count(".react-flow") > 10
