"""The documentation's code samples run, so they cannot drift from the code.

Every ```python block of a page runs in one namespace, in order; every ```ipython
block runs as a cell of a real IPython shell with the extension loaded (the magics).
Shell blocks are not run here (CI runs the README's commands from a clean clone).
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from IPython.core.interactiveshell import InteractiveShell

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
_BLOCK = re.compile(r"^```(\w+)[^\n]*\n(.*?)^```", re.S | re.M)


def blocks(page: Path, language: str) -> list[str]:
    return [code for lang, code in _BLOCK.findall(page.read_text()) if lang == language]


@pytest.fixture
def no_leftovers() -> Iterator[None]:
    yield
    from bytewax_nb.notebook.magics import current_swarm
    from bytewax_nb.swarm import stop_all

    swarm = current_swarm()
    if swarm is not None:
        swarm.stop(drain_timeout=1)
    stop_all()
    leftovers = [c for c in psutil.Process().children(recursive=True) if c.status() != "zombie"]
    assert not leftovers, f"a sample left processes behind: {leftovers}"


def _pages_with(language: str) -> list[Any]:
    return [pytest.param(p, id=p.relative_to(ROOT).as_posix()) for p in PAGES if blocks(p, language)]


@pytest.mark.slow
@pytest.mark.parametrize("page", _pages_with("python"))
def test_the_python_samples_of_a_page_run(page: Path, no_leftovers: None, capsys: Any) -> None:
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    for i, code in enumerate(blocks(page, "python")):
        try:
            exec(compile(code, f"{page.name}[python {i + 1}]", "exec"), namespace)
        except Exception as exc:
            raise AssertionError(f"{page.name}, python sample {i + 1} failed:\n{code}") from exc


@pytest.mark.slow
@pytest.mark.parametrize("page", _pages_with("ipython"))
def test_the_notebook_samples_of_a_page_run(page: Path, no_leftovers: None) -> None:
    shell = InteractiveShell.instance()
    shell.run_cell("%load_ext bytewax_nb", store_history=False)
    for i, cell in enumerate(blocks(page, "ipython")):
        result = shell.run_cell(cell, store_history=True)
        error = result.error_before_exec or result.error_in_exec
        if error is not None:
            raise AssertionError(f"{page.name}, notebook sample {i + 1} failed:\n{cell}") from error


def test_every_page_is_in_the_site_and_no_page_points_outside_the_repository() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in (ROOT / "docs").glob("*.md"):
        assert page.name in nav, f"{page.name} is not in mkdocs.yml's nav"
    for page in [*PAGES, *(ROOT / "notebooks").glob("*.ipynb")]:
        for target in re.findall(r"\]\(([^)\s#]+)", page.read_text()):
            if re.match(r"[a-z]+:", target):  # https:, mailto:: the web, not the repository
                continue
            path = (page.parent / target).resolve()
            assert path.is_relative_to(ROOT), f"{page.name} points outside the repository: {target}"
            assert path.exists(), f"{page.name} links to {target}, which does not exist"


@pytest.mark.slow
def test_the_site_builds_in_strict_mode(tmp_path: Path) -> None:
    import subprocess
    import sys

    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert build.returncode == 0, build.stderr[-3000:]  # a broken link or reference fails it
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    assert "Register a bee" in api  # the API pages come from the docstrings
    config = (tmp_path / "site" / "configuration" / "index.html").read_text()
    assert "BYTEWAX_NB_ENCRYPT" in config  # the settings table is made from the code
